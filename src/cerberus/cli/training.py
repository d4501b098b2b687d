"""Commands that train and measure: ``train``, ``eval``, ``ablate``, ``info``, ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cerberus.cli._app import (
    Overrides,
    app,
    at_least,
    int_list,
    one_line,
)
from cerberus.errors import CerberusError

CONFIG_HELP = (
    "YAML config file, or the name of a packaged one (synthetic, synthetic_quick, market1501, "
    "dukemtmc, ...), found from any folder."
)

@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help=CONFIG_HELP)],
    overrides: Overrides = None,
    resume: Annotated[bool, typer.Option(help="Resume from output_dir/last.pt if present.")] = True,
) -> None:
    """Train a model. Resumes from the last checkpoint in train.output_dir unless --no-resume.

    At the end the model is calibrated on the test split of its data (train.calibrate)."""
    from cerberus.config import load_config
    from cerberus.data.table import open_dataset
    from cerberus.evaluation.calibration import calibration_after_training
    from cerberus.evaluation.evaluate import periodic_evaluation
    from cerberus.training.engine import train as run_training

    cfg = load_config(config, overrides or [])
    dataset = open_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes, schema=cfg.data.schema
    )
    evaluate = periodic_evaluation(cfg, dataset) if cfg.train.eval_every else None
    finish = calibration_after_training(cfg, dataset) if cfg.train.calibrate else None
    result = run_training(
        cfg, resume=resume, dataset=dataset, on_evaluate=evaluate, on_finish=finish
    )
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

    from cerberus.evaluation.evaluate import evaluate_checkpoint, format_report

    at_least("--batch-size", batch_size, 1)
    at_least("--workers", workers, 0)
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
        from cerberus.files import atomic_write_json

        atomic_write_json(out, metrics, "metrics")
        typer.echo(f"metrics written to {out}")


@app.command()
def ablate(
    which: Annotated[
        str,
        typer.Argument(
            help="table6, table7, table8, semantic, unseen (Fig. 7b), conflict (Fig. 1b), "
            "sensitivity (Fig. 10) or silhouette (Fig. 9 over seeds)."
        ),
    ],
    config: Annotated[Path, typer.Option("--config", "-c", help=CONFIG_HELP)],
    out: Annotated[Path, typer.Option(help="Folder for the runs and the table.")],
    overrides: Overrides = None,
    ks: Annotated[str, typer.Option(help="unseen: numbers of unseen SIDs, comma-separated.")] = (
        "0,1,2,3,4,6"
    ),
    seeds: Annotated[
        str, typer.Option(help="Training seeds, comma-separated; cells are mean ± sd.")
    ] = "0,1,2",
    grid: Annotated[
        Path, typer.Option(help="sensitivity: the parameter grid (YAML, see the file).")
    ] = Path("configs/sensitivity.yaml"),
    split_seed: Annotated[int, typer.Option(help="sensitivity: seed of the validation split.")] = 0,
    keep_checkpoints: Annotated[
        bool, typer.Option(help="Keep every run's last.pt (off: deleted once evaluated).")
    ] = True,
    groups: Annotated[
        str, typer.Option(help="silhouette: the groups whose representation is scored, e.g. L,U.")
    ] = "L",
    ids: Annotated[int, typer.Option(help="silhouette: identities sharing the SID.")] = 10,
) -> None:
    """Run an ablation or a paper experiment over seeds; print its table (also written to --out)."""
    from cerberus.config import load_config
    from cerberus.experiments.ablations import ABLATIONS, run_conflict, run_table, run_unseen

    if which not in ABLATIONS:
        raise CerberusError(f"unknown ablation {which!r}; valid: {', '.join(ABLATIONS)}")
    cfg = load_config(config, overrides or [])
    seed_list = int_list(seeds, "--seeds")
    if which == "unseen":
        table = run_unseen(
            cfg, out, ks=int_list(ks, "--ks"), seeds=seed_list, keep_checkpoints=keep_checkpoints
        )
    elif which == "conflict":
        table = run_conflict(cfg, out, seeds=seed_list, keep_checkpoints=keep_checkpoints)
    elif which == "sensitivity":
        from cerberus.experiments.sensitivity import load_grid, run_sensitivity

        table = run_sensitivity(cfg, out, load_grid(grid), seeds=seed_list, split_seed=split_seed)
    elif which == "silhouette":
        from cerberus.experiments.silhouette import run_silhouette

        group_list = [g.strip() for g in groups.split(",") if g.strip()]
        table = run_silhouette(cfg, out, seeds=seed_list, groups=group_list, num_ids=ids)
    else:
        table = run_table(which, cfg, out, seeds=seed_list, keep_checkpoints=keep_checkpoints)
    typer.echo(table)


BENCHMARK_TRAIN_IDS = {"market1501": 751, "dukemtmc": 702}
"""Training identities of the real benchmarks: ``info``'s class count when no data is at hand."""


def _training_identities(cfg, schema_name: str, given: int | None) -> tuple[int, str]:
    """The ID classifiers' class count for ``info`` and where it comes from."""
    if given is not None:
        return given, "--num-classes"
    count = BENCHMARK_TRAIN_IDS.get(schema_name)
    if count is not None and cfg.data.dataset not in (schema_name, "table"):
        return count, f"the {schema_name} benchmark's; the configured data is {cfg.data.dataset}"
    from cerberus.data.table import open_dataset

    d = cfg.data
    try:
        data = open_dataset(d.root, d.dataset, attributes=d.attributes, schema=d.schema)
    except (CerberusError, OSError) as exc:
        why = one_line(str(exc))
        if count is None:
            raise CerberusError(
                f"give --num-classes: the configured data is not readable ({why})"
            ) from None
        return count, f"the {schema_name} benchmark's; data.root not readable: {why}"
    return data.num_train_ids, f"the training set of {cfg.data.root}"


@app.command()
def info(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help=CONFIG_HELP + " Default: the paper setting."),
    ] = None,
    overrides: Overrides = None,
    num_classes: Annotated[
        int | None,
        typer.Option(
            help="Training identities (default: the configured dataset's, when it is readable; "
            "else the benchmark's: Market-1501 751, DukeMTMC-reID 702)."
        ),
    ] = None,
    dataset: Annotated[
        str,
        typer.Option(help="Schema: a shipped name (market1501, dukemtmc, ...) or a .yaml path."),
    ] = "",
) -> None:
    """Print the model's parameter count and FLOPs at the configured input size."""
    from cerberus.attributes.schema_files import get_schema
    from cerberus.config import load_config
    from cerberus.data.table import resolve_schema
    from cerberus.modeling.model import count_flops, count_parameters
    from cerberus.training.checkpoints import model_from_config

    at_least("--num-classes", num_classes, 1)
    cfg = load_config(config, overrides or [])
    if dataset:
        schema = get_schema(dataset)
    elif cfg.data.dataset == "table":
        schema = resolve_schema(cfg.data.root, cfg.data.schema)
    else:
        schema = get_schema(cfg.data.dataset)
    num_classes, said = _training_identities(cfg, schema.name, num_classes)
    model = model_from_config(cfg.model, schema, num_classes, load_weights=False).eval()
    params = count_parameters(model)
    flops = count_flops(model, height=cfg.data.height, width=cfg.data.width)
    typer.echo(
        f"backbone {cfg.model.backbone}, d={cfg.model.dim}, input "
        f"{cfg.data.height}x{cfg.data.width}, schema {schema.name}"
    )
    typer.echo(f"ID classifiers for {num_classes} identities ({said})")
    for k, v in params.items():
        typer.echo(f"  {k:28s} {v / 1e6:8.2f} M")
    for k, v in flops.items():
        typer.echo(f"  {k:28s} {v / 1e9:8.2f} G")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the run, figures and report.md.")] = Path(
        "runs/demo"
    ),
    config: Annotated[Path, typer.Option("--config", "-c", help=CONFIG_HELP)] = Path(
        "configs/synthetic.yaml"
    ),
    overrides: Overrides = None,
    regenerate: Annotated[bool, typer.Option(help="Regenerate the synthetic data.")] = False,
) -> None:
    """Synthetic data -> train (CPU config) -> evaluate -> index -> figures -> report.md."""
    from cerberus.config import load_config
    from cerberus.experiments.demo import run_demo

    cfg = load_config(config, overrides or [])
    report = run_demo(cfg, out, regenerate=regenerate)
    typer.echo(f"report: {report}")
