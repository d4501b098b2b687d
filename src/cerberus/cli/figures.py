"""``cerberus visualize``: rank lists, alignment, attention, t-SNE."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cerberus.cli._app import (
    Checkpoint,
    Device,
    app,
    at_least,
)

visualize_app = typer.Typer(
    help="Figures: rank lists (Fig. 6), alignment (Fig. 7a), attention (Fig. 8), t-SNE (Fig. 9)."
)
app.add_typer(visualize_app, name="visualize")


@visualize_app.command("ranks")
def visualize_ranks(
    index: Annotated[
        str, typer.Option("--index", "--gallery", help="Gallery: index file, folder or Milvus URI.")
    ],
    images: Annotated[list[Path], typer.Argument(help="Query crops; one figure each.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNGs.")],
    checkpoint: Annotated[Path | None, typer.Option(help="Model (default: the index's).")] = None,
    k: Annotated[int, typer.Option("--top-k", "-k", help="Ranks shown.")] = 10,
    device: Device = "auto",
) -> None:
    """Rank-k lists of query crops, correct matches green, wrong red, attributes under query."""
    from cerberus.evaluation.figures import rank_list_from_rows
    from cerberus.search import Gallery

    at_least("--top-k (-k)", k, 1)
    gallery = Gallery.open(index, checkpoint, device=device)
    for image, found in zip(images, gallery.by_images(images, k)):
        path = rank_list_from_rows(
            out / f"ranks_{image.stem}.png",
            found.rows,
            query_image=image,
            query_text=found.text,
            title=f"reID: {image.name}",
        )
        typer.echo(f"figure: {path}")


@visualize_app.command("alignment")
def visualize_alignment(
    checkpoint: Checkpoint,
    images: Annotated[list[Path], typer.Argument(help="Person crops.")],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    device: Device = "cpu",
) -> None:
    """Alignment heat maps and the rows the alignment module keeps, per crop."""
    from cerberus.evaluation.figures import alignment_figure, model_alignment_maps
    from cerberus.search import load_model

    net = load_model(checkpoint, device=device)
    heat, tops, bottoms = model_alignment_maps(
        net.model, images, height=net.height, width=net.width
    )
    path = alignment_figure(out, images, heat, tops, bottoms, sigma=net.model.align_sigma)
    typer.echo(f"figure: {path}")


@visualize_app.command("attention")
def visualize_attention(
    checkpoint: Checkpoint,
    images: Annotated[list[Path], typer.Argument(help="Person crops; one row each.")],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    device: Device = "cpu",
) -> None:
    """Grad-CAM of the five representations (head, upper, lower, identity, carrying), Fig. 8.

    Under each map: the values of the SID whose prototype the map explains (the prediction).
    """
    from cerberus.attributes.schema import GROUPS
    from cerberus.evaluation.explain import attention_figure, grad_cam_maps
    from cerberus.search import load_model

    net = load_model(checkpoint, device=device)
    maps, sids = grad_cam_maps(net.model, images, height=net.height, width=net.width)
    codecs = [net.schema.codecs[g] for g in GROUPS]
    captions = [
        ["/".join(c.describe(int(s)).values()) for c, s in zip(codecs, row)] for row in sids
    ]
    path = attention_figure(out, images, maps, captions=captions)
    typer.echo(f"figure: {path}")


@visualize_app.command("tsne")
def visualize_tsne(
    checkpoint: Checkpoint,
    compare: Annotated[
        Path, typer.Option(help="A second checkpoint, e.g. the m = 0 ablation, shown beside.")
    ],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    group: Annotated[str, typer.Option(help="Group whose representation is shown.")] = "L",
    sid: Annotated[
        int | None, typer.Option(help="The shared SID (default: the most shared one).")
    ] = None,
    ids: Annotated[int, typer.Option(help="Number of test identities.")] = 10,
    data: Annotated[
        Path | None, typer.Option(help="Dataset root (default: the checkpoint's).")
    ] = None,
    label: Annotated[str, typer.Option(help="Caption of --checkpoint.")] = "model",
    compare_label: Annotated[str, typer.Option(help="Caption of --compare.")] = "ablation",
    seed: Annotated[int, typer.Option(help="Seed of the identity draw and of t-SNE.")] = 0,
    device: Device = "cpu",
) -> None:
    """t-SNE of one group's representation over identities sharing a SID, two models (Fig. 9)."""
    from cerberus.evaluation.evaluate import checkpoint_dataset
    from cerberus.evaluation.explain import tsne_compare
    from cerberus.training.checkpoints import read_checkpoint

    at_least("--ids", ids, 2)
    ckpt = read_checkpoint(checkpoint)
    dataset = checkpoint_dataset(ckpt.config, ckpt.schema, checkpoint, data)
    found = tsne_compare(
        out, [(label, checkpoint), (compare_label, compare)], dataset, group,
        num_ids=ids, sid=sid, seed=seed, device=device,
    )  # fmt: skip
    scores = ", ".join(f"{k} {v:.3f}" for k, v in found["silhouette"].items())
    typer.echo(
        f"SID {group}:{found['sid']}: {len(found['pids'])} identities, {found['num_images']} "
        f"images; identity silhouette (cosine): {scores}"
    )
    typer.echo(f"figure: {found['figure']}")
