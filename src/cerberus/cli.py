"""The ``cerberus`` command line: parse, build, call. Errors become one red line and exit 2."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from cerberus.errors import CerberusError

app = typer.Typer(
    name="cerberus",
    help="Attribute-based person re-identification with semantic IDs: reID, APS and PAR.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Config overrides as section.key=value, e.g. optim.iterations=100."),
]


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (Market-1501 layout).")],
    train_ids: Annotated[int, typer.Option(help="Number of training identities.")] = 200,
    test_ids: Annotated[int, typer.Option(help="Number of test identities.")] = 200,
    cameras: Annotated[int, typer.Option(help="Number of cameras.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    sheet: Annotated[
        Path | None, typer.Option(help="Also save a contact sheet of identities (PNG).")
    ] = None,
) -> None:
    """Generate the built-in synthetic benchmark (Market-1501 folders + market_attribute.mat)."""
    from cerberus.data.synthetic import generate_synthetic, make_contact_sheet

    summary = generate_synthetic(
        out,
        num_train_ids=train_ids,
        num_test_ids=test_ids,
        num_cameras=cameras,
        seed=seed,
        num_workers=workers,
        overwrite=overwrite,
    )
    typer.echo(f"wrote synthetic benchmark to {out}: {summary}")
    if sheet is not None:
        make_contact_sheet(out, sheet)
        typer.echo(f"contact sheet: {sheet}")


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.")],
    overrides: Overrides = None,
    resume: Annotated[bool, typer.Option(help="Resume from output_dir/last.pt if present.")] = True,
) -> None:
    """Train a model. Resumes from the last checkpoint in train.output_dir unless --no-resume."""
    from cerberus.config import load_config
    from cerberus.engine import train as run_training

    cfg = load_config(config, overrides or [])
    result = run_training(cfg, resume=resume)
    terms = ", ".join(f"{k}={v:.4f}" for k, v in result.last_losses.items())
    typer.echo(
        f"trained to iteration {result.iterations} in {result.seconds:.1f}s; "
        f"checkpoint {result.checkpoint}; {terms}"
    )


@app.command("eval")
def evaluate(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint (last.pt).")],
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset root (default: the training root).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the metrics as JSON here.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    batch_size: Annotated[int | None, typer.Option(help="Extraction batch size.")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers.")] = None,
) -> None:
    """Evaluate reID, APS (full and partial queries) and PAR; one table, chance levels beside."""
    import json

    from cerberus.evaluation import evaluate_checkpoint, format_report

    metrics = evaluate_checkpoint(
        checkpoint,
        data_root=data,
        device=device,
        batch_size=batch_size,
        num_workers=workers,
        progress=True,
    )
    typer.echo(format_report(metrics))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2))
        typer.echo(f"metrics written to {out}")


@app.command()
def ablate(
    which: Annotated[str, typer.Argument(help="table6, table8 or unseen.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.")],
    out: Annotated[Path, typer.Option(help="Folder for the runs and the table.")],
    overrides: Overrides = None,
    ks: Annotated[str, typer.Option(help="unseen: numbers of unseen SIDs, comma-separated.")] = (
        "0,2,4"
    ),
) -> None:
    """Run a paper ablation (Table 6, Table 8 or Figure 7(b)) and print its Markdown table."""
    from cerberus.config import load_config
    from cerberus.experiments import run_table, run_unseen

    cfg = load_config(config, overrides or [])
    if which == "unseen":
        try:
            k_list = [int(k) for k in ks.split(",") if k.strip()]
        except ValueError:
            raise CerberusError(f"--ks {ks!r}: expected comma-separated integers") from None
        table = run_unseen(cfg, out, ks=k_list)
    else:
        table = run_table(which, cfg, out)
    typer.echo(table)


@app.command()
def info(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config (default: paper setting).")
    ] = None,
    overrides: Overrides = None,
    num_classes: Annotated[int, typer.Option(help="Training identities.")] = 751,
    dataset: Annotated[str, typer.Option(help="Schema: market1501 or dukemtmc.")] = "",
) -> None:
    """Print the model's parameter count and FLOPs at the configured input size."""
    from cerberus.attributes import get_schema
    from cerberus.config import load_config
    from cerberus.engine import model_from_config
    from cerberus.model import count_flops, count_parameters

    cfg = load_config(config, overrides or [])
    schema = get_schema(dataset or cfg.data.dataset)
    model = model_from_config(cfg.model, schema, num_classes, load_weights=False).eval()
    params = count_parameters(model)
    flops = count_flops(model, height=cfg.data.height, width=cfg.data.width)
    typer.echo(
        f"backbone {cfg.model.backbone}, d={cfg.model.dim}, input "
        f"{cfg.data.height}x{cfg.data.width}, schema {schema.name}"
    )
    for k, v in params.items():
        typer.echo(f"  {k:28s} {v / 1e6:8.2f} M")
    for k, v in flops.items():
        typer.echo(f"  {k:28s} {v / 1e9:8.2f} G")


def main() -> None:
    """Entry point: run the app; our own errors print as one red line with exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except CerberusError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
