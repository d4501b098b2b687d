"""Commands on one model: ``verify``, ``calibrate``, ``describe``, ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cerberus.cli._app import (
    Checkpoint,
    Device,
    app,
    at_least,
    float_list,
    one_line,
)
from cerberus.errors import CerberusError


@app.command()
def verify(
    images: Annotated[list[Path], typer.Argument(help="Two person crops: A.jpg B.jpg.")],
    checkpoint: Checkpoint,
    fpr: Annotated[
        float | None,
        typer.Option(help="A calibrated FPR to decide at (default: the one calibrate chose)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Device = "auto",
) -> None:
    """Is this the same person? Similarity of two crops against the calibrated threshold."""
    import json

    from cerberus.search import load_model, verify

    if len(images) != 2:
        raise CerberusError(f"verify takes two images, got {len(images)}")
    net = load_model(checkpoint, device=device, num_workers=0)
    found = verify(net, images[0], images[1], fpr=fpr)
    similarity, same, said = found["similarity"], found["same_person"], found["text"]
    if as_json:
        found = {"images": [str(p) for p in images], **found}
        del found["text"]
        typer.echo(json.dumps(found, indent=2))
        return
    if same is None:
        typer.echo(f"similarity {similarity:.4f}; {said}")
        return
    sign = ">" if same else "<="
    answer = "same person" if same else "different"
    typer.echo(f"{answer}: similarity {similarity:.4f} {sign} {said}")


@app.command()
def calibrate(
    checkpoint: Checkpoint,
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset root (default: the training root).")
    ] = None,
    split: Annotated[
        str, typer.Option(help="Labelled images: test (query + gallery), query, gallery, train.")
    ] = "test",
    fpr: Annotated[float, typer.Option(help="The operating point verify / search use.")] = 1e-3,
    fprs: Annotated[str, typer.Option(help="Target FPRs reported, comma-separated.")] = (
        "1e-2,1e-3,1e-4"
    ),
    max_pairs: Annotated[
        int, typer.Option(help="Above this many pairs, a seeded sample (all same-identity pairs).")
    ] = 4_000_000,
    seed: Annotated[int, typer.Option(help="Seed of the pair sample.")] = 0,
    plot: Annotated[
        Path | None, typer.Option(help="ROC plot (PNG; default: beside the checkpoint).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the calibration as JSON.")] = None,
    store: Annotated[
        bool, typer.Option(help="Store the operating point in the checkpoint / weights pair.")
    ] = True,
    device: Device = "auto",
    batch_size: Annotated[int | None, typer.Option(help="Extraction batch size.")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers.")] = None,
) -> None:
    """ROC of same / different identity pairs; thresholds at target FPRs for verify / search."""

    from cerberus.evaluation.calibration import calibrate as run_calibration
    from cerberus.evaluation.calibration import describe_point, operating_point, store_calibration
    from cerberus.evaluation.evaluate import checkpoint_dataset
    from cerberus.evaluation.figures import roc_figure
    from cerberus.search import load_model

    at_least("--batch-size", batch_size, 1)
    at_least("--workers", workers, 0)
    at_least("--max-pairs", max_pairs, 2)
    targets = float_list(fprs, "--fprs")
    for option, value in [("--fpr", fpr)] + [("--fprs", f) for f in targets]:
        if not 0 < value < 1:
            raise CerberusError(f"{option} {value:g}: must be between 0 and 1 (exclusive)")
    net = load_model(checkpoint, device=device, batch_size=batch_size, num_workers=workers)
    dataset = checkpoint_dataset(net.config, net.schema, checkpoint, data)
    cal, (roc_fpr, roc_tpr) = run_calibration(
        net,
        dataset,
        split=split,
        fprs=targets,
        chosen_fpr=fpr,
        max_pairs=max_pairs,
        seed=seed,
        progress=True,
    )
    how = f"a seeded sample, seed {seed}" if cal["sampled"] else "all pairs"
    typer.echo(
        f"{split} split of {dataset.root}: {cal['num_images']} images, {cal['num_identities']} "
        f"identities; {cal['num_same_pairs']:,} same-identity and "
        f"{cal['num_different_pairs']:,} different-identity pairs ({how})"
    )
    held = cal["heldout"].get("points")
    typer.echo(
        f"{'target FPR':>10s} {'threshold':>9s} {'TPR':>6s} {'measured FPR':>12s}"
        + (f" {'held-out TPR':>12s} {'held-out FPR':>12s}" if held else "")
    )
    for k, p in enumerate(cal["points"]):
        note = "" if p["resolved"] else f"  (too few pairs: needs {1 / p['fpr_target']:,.0f})"
        h = f" {100 * held[k]['tpr']:11.1f}% {held[k]['fpr']:12.2e}" if held else ""
        typer.echo(
            f"{p['fpr_target']:10.0e} {p['threshold']:9.4f} {100 * p['tpr']:5.1f}% "
            f"{p['fpr']:12.2e}{h}{note}"
        )
    if held:
        sizes = " / ".join(map(str, cal["heldout"]["num_identities"]))
        typer.echo(
            "TPR / measured FPR: on the pairs the threshold was chosen on (in-sample); held-out: "
            f"{cal['heldout']['method']} ({sizes} identities, seed {seed})"
        )
    else:
        typer.echo(f"no held-out estimate: {cal['heldout']['skipped']}")
    typer.echo(f"ROC AUC {cal['auc_score']:.4f}")
    point = operating_point(cal)
    line = "same person if similarity > " + describe_point(point, cal)
    if store:
        store_calibration(checkpoint, cal)
        line += f"; stored in {checkpoint}"
    typer.echo(line)
    plot = plot or checkpoint.with_name(f"{checkpoint.stem}_roc_{split}.png")
    roc_figure(
        plot,
        roc_fpr,
        roc_tpr,
        cal["points"],
        chosen_fpr=fpr,
        title=f"Same person? ROC on {cal['num_same_pairs']:,} same / "
        f"{cal['num_different_pairs']:,} different pairs ({split} split), AUC "
        f"{cal['auc_score']:.4f}",
    )
    typer.echo(f"ROC plot: {plot}")
    if out is not None:
        from cerberus.files import atomic_write_json

        atomic_write_json(out, cal, "calibration")
        typer.echo(f"calibration written to {out}")


@app.command()
def describe(
    checkpoint: Checkpoint,
    images: Annotated[list[Path], typer.Argument(help="Person crops.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Device = "auto",
) -> None:
    """Predict the attributes of person crops (PAR): nearest SID prototype per group.

    Under each crop: how sure each group's prediction is (the probability of the chosen SID
    among the group's SIDs); "weak" below 0.5."""
    import json

    from cerberus.search import load_model

    net = load_model(checkpoint, device=device)
    found = net.describe(net.features_of_images(images))
    if as_json:
        typer.echo(json.dumps([{"image": str(p), **d} for p, d in zip(images, found)], indent=2))
        return
    for p, d in zip(images, found):
        typer.echo(f"{p}: {', '.join(d['phrases'])}")
        typer.echo(f"  how sure, per group: {certainty_line(d)}")


def certainty_line(found: dict) -> str:
    """``"head 0.93, upper body 0.41 (weak), ..."``: each group's probability of its SID."""
    from cerberus.attributes.schema import GROUP_NAMES

    return ", ".join(
        f"{GROUP_NAMES[g]} {p:.2f}" + (" (weak)" if g in found["weak"] else "")
        for g, p in found["certainty"].items()
    )


@app.command()
def export(
    checkpoint: Checkpoint,
    out: Annotated[
        Path, typer.Option("--out", help="ONNX file, or X.safetensors for a weights pair.")
    ],
    format: Annotated[
        str | None,
        typer.Option("--format", help="onnx or safetensors (default: from --out's suffix)."),
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option(help="safetensors: metrics JSON to record (e.g. from `cerberus eval --out`)."),
    ] = None,
    verify: Annotated[
        bool, typer.Option(help="onnx: compare with PyTorch; safetensors: reload and compare.")
    ] = True,
) -> None:
    """Export the embedding network to ONNX, or the model as a weights pair (safetensors + JSON).

    A weights pair (X.safetensors + X.json: config, schema, input size, mean / std, training
    data, metrics, sha256, calibration) is loaded by every command in place of a checkpoint,
    without pickles; its hash is checked on every load."""
    import torch

    from cerberus.inference.export import export_onnx, verify_onnx
    from cerberus.search import load_model

    kind = format or ("safetensors" if out.suffix in (".safetensors", ".json") else "onnx")
    if kind not in ("onnx", "safetensors"):
        raise CerberusError(f"--format {kind!r}: valid: onnx, safetensors")
    if kind == "safetensors":
        _export_weights(checkpoint, out, metrics, verify)
        return
    if metrics is not None:
        raise CerberusError("--metrics: only for --format safetensors")
    net = load_model(checkpoint, device="cpu")
    path = export_onnx(net.model, out, height=net.height, width=net.width, schema=net.schema.name)
    typer.echo(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if verify:
        x = torch.randn(2, 3, net.height, net.width, generator=torch.Generator().manual_seed(0))
        diff = verify_onnx(net.model, path, x)
        typer.echo(f"onnxruntime matches PyTorch: max abs difference {diff:.2e}")


def _export_weights(checkpoint: Path, out: Path, metrics: Path | None, verify: bool) -> None:
    import json

    from cerberus.inference.export import export_weights, verify_weights

    scores = None
    if metrics is not None:
        try:
            scores = json.loads(metrics.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise CerberusError(f"{metrics}: metrics file not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CerberusError(f"{metrics}: not readable JSON ({one_line(str(exc))})") from None
    weights, meta = export_weights(checkpoint, out, metrics=scores)
    typer.echo(
        f"exported {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {meta} "
        f"(sha256 {json.loads(meta.read_text())['sha256'][:16]}...)"
    )
    if verify:
        fingerprint = json.loads(meta.read_text())["fingerprint"]
        verify_weights(meta, fingerprint)
        typer.echo(f"reloaded: hash and model fingerprint {fingerprint[:12]} match")
