"""The ``cerberus`` command line: parse, build, call. Errors become one red line and exit 2."""

from __future__ import annotations

import logging
import os
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

_DEBUG = {"on": False}


def _debugging() -> bool:
    return _DEBUG["on"] or os.environ.get("CERBERUS_DEBUG", "") not in ("", "0")


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")
    ] = False,
) -> None:
    """Attribute-based person re-identification with semantic IDs: reID, APS and PAR."""
    _DEBUG["on"] = debug


def _at_least(option: str, value: int | None, least: int) -> None:
    """Refuse a numeric option below ``least`` (``None``: the option was not given)."""
    if value is not None and value < least:
        raise CerberusError(f"{option} {value}: must be at least {least}")


Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Config overrides as section.key=value, e.g. optim.iterations=100."),
]


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    data_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="market: Market-1501 folders + market_attribute.mat; table: the same crops "
            "with images.csv, attributes.csv and schema.yaml (README: Your own data).",
        ),
    ] = "market",
    camera_column: Annotated[
        bool,
        typer.Option(
            "--camera-column/--no-camera-column",
            help="table: write the camera_id column (--no-camera-column: cameras unknown).",
        ),
    ] = True,
    train_ids: Annotated[int, typer.Option(help="Number of training identities.")] = 200,
    test_ids: Annotated[int, typer.Option(help="Number of test identities.")] = 200,
    cameras: Annotated[int, typer.Option(help="Number of cameras.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    sheet: Annotated[
        Path | None, typer.Option(help="Also save a contact sheet of identities (PNG).")
    ] = None,
    value_sheet: Annotated[
        Path | None,
        typer.Option(help="Also save a sheet with one row per attribute value (PNG)."),
    ] = None,
) -> None:
    """Generate the built-in synthetic benchmark (Market-1501 layout, or a table dataset)."""
    from cerberus.data.synthetic import generate_synthetic, make_contact_sheet, make_value_sheet

    _at_least("--workers", workers, 1)
    if data_format not in ("market", "table"):
        raise CerberusError(f"--format {data_format!r}: must be market or table")
    if not camera_column and data_format != "table":
        raise CerberusError("--no-camera-column needs --format table (Market names hold cameras)")
    summary = generate_synthetic(
        out,
        num_train_ids=train_ids,
        num_test_ids=test_ids,
        num_cameras=cameras,
        seed=seed,
        num_workers=workers,
        overwrite=overwrite,
    )
    if data_format == "table":
        from cerberus.data.datasets import read_dataset
        from cerberus.data.table import write_table_dataset

        if sheet is not None or value_sheet is not None:
            make_sheets = (sheet, value_sheet)
            for path, make in zip(make_sheets, (make_contact_sheet, make_value_sheet)):
                if path is not None:
                    make(out, path)
                    typer.echo(f"sheet: {path}")
        write_table_dataset(read_dataset(out, "market1501"), out, cameras=camera_column)
        (out / "market_attribute.mat").unlink()
        typer.echo(f"wrote synthetic table dataset to {out}: {summary}")
        typer.echo(f"check it with: cerberus check-data {out}")
        return
    typer.echo(f"wrote synthetic benchmark to {out}: {summary}")
    if sheet is not None:
        make_contact_sheet(out, sheet)
        typer.echo(f"contact sheet: {sheet}")
    if value_sheet is not None:
        make_value_sheet(out, value_sheet)
        typer.echo(f"value sheet: {value_sheet}")


@app.command("check-data")
def check_data(
    root: Annotated[
        Path, typer.Argument(help="Table dataset folder (images.csv, attributes.csv).")
    ],
    schema: Annotated[
        str | None,
        typer.Option(help="Schema: a shipped name or a .yaml path (default: DIR/schema.yaml)."),
    ] = None,
) -> None:
    """Check a table dataset: print its summary, or the file and line of every problem."""
    from cerberus.data.table import check_table_dataset, table_summary

    found = check_table_dataset(root, schema)
    if found.problems:
        for problem in found.problems:
            typer.echo(str(problem))
        many = len(found.problems)
        raise CerberusError(f"{root}: {many} problem{'s' if many > 1 else ''} (listed above)")
    assert found.dataset is not None
    typer.echo(table_summary(found.dataset, found.camera_labels, found.extra_attribute_ids))
    typer.echo("ok")


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.")],
    overrides: Overrides = None,
    resume: Annotated[bool, typer.Option(help="Resume from output_dir/last.pt if present.")] = True,
) -> None:
    """Train a model. Resumes from the last checkpoint in train.output_dir unless --no-resume."""
    from cerberus.config import load_config
    from cerberus.data.table import open_dataset
    from cerberus.engine import train as run_training
    from cerberus.evaluation import periodic_evaluation

    cfg = load_config(config, overrides or [])
    dataset = open_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes, schema=cfg.data.schema
    )
    evaluate = periodic_evaluation(cfg, dataset) if cfg.train.eval_every else None
    result = run_training(cfg, resume=resume, dataset=dataset, on_evaluate=evaluate)
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

    _at_least("--batch-size", batch_size, 1)
    _at_least("--workers", workers, 0)
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
        from cerberus.files import atomic_write

        text = json.dumps(metrics, indent=2)
        atomic_write(out, lambda fh: fh.write(text.encode()), "metrics")
        typer.echo(f"metrics written to {out}")


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise CerberusError(f"{option} {text!r}: expected comma-separated integers") from None


def _float_list(text: str, option: str) -> list[float]:
    try:
        return [float(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise CerberusError(f"{option} {text!r}: expected comma-separated numbers") from None


@app.command()
def ablate(
    which: Annotated[
        str,
        typer.Argument(
            help="table6, table7, table8, semantic, unseen (Fig. 7b), conflict (Fig. 1b) or "
            "sensitivity (Fig. 10)."
        ),
    ],
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.")],
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
) -> None:
    """Run an ablation or a paper experiment over seeds; print its table (also written to --out)."""
    from cerberus.config import load_config
    from cerberus.experiments import ABLATIONS, run_conflict, run_table, run_unseen

    if which not in ABLATIONS:
        raise CerberusError(f"unknown ablation {which!r}; valid: {', '.join(ABLATIONS)}")
    cfg = load_config(config, overrides or [])
    seed_list = _int_list(seeds, "--seeds")
    if which == "unseen":
        table = run_unseen(
            cfg, out, ks=_int_list(ks, "--ks"), seeds=seed_list, keep_checkpoints=keep_checkpoints
        )
    elif which == "conflict":
        table = run_conflict(cfg, out, seeds=seed_list, keep_checkpoints=keep_checkpoints)
    elif which == "sensitivity":
        from cerberus.sensitivity import load_grid, run_sensitivity

        table = run_sensitivity(cfg, out, load_grid(grid), seeds=seed_list, split_seed=split_seed)
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
        why = _one_line(str(exc))
        if count is None:
            raise CerberusError(
                f"give --num-classes: the configured data is not readable ({why})"
            ) from None
        return count, f"the {schema_name} benchmark's; data.root not readable: {why}"
    return data.num_train_ids, f"the training set of {cfg.data.root}"


@app.command()
def info(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config (default: paper setting).")
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
    from cerberus.attributes import get_schema
    from cerberus.checkpoints import model_from_config
    from cerberus.config import load_config
    from cerberus.data.table import resolve_schema
    from cerberus.model import count_flops, count_parameters

    _at_least("--num-classes", num_classes, 1)
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


# --------------------------------------------------------------------------- user tools

Checkpoint = Annotated[
    Path,
    typer.Option(
        "--checkpoint",
        help="Trained checkpoint (last.pt) or weights pair (X.safetensors / X.json).",
    ),
]
Device = Annotated[str, typer.Option(help="cpu, cuda or auto.")]


def _attribute_table(path: Path, schema):
    """Both splits of a Lin-style attribute file as one table (their identities are disjoint)."""
    import numpy as np

    from cerberus.attributes import AttributeTable, load_attribute_mat

    tables = load_attribute_mat(path, schema).values()
    return AttributeTable(
        schema,
        np.concatenate([t.ids for t in tables]),
        np.concatenate([t.values for t in tables]),
    )


@app.command()
def extract(
    checkpoint: Checkpoint,
    out: Annotated[Path, typer.Option("--out", help="Features file to write (.npz).")],
    images: Annotated[
        Path | None, typer.Option("--images", help="Folder of person crops (recursive).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Instead of --images: a table dataset folder (images.csv); see --split."
        ),
    ] = None,
    split: Annotated[
        str, typer.Option(help="With --data: the split to extract (train, query, gallery).")
    ] = "gallery",
    attributes: Annotated[
        Path | None,
        typer.Option(help="Lin-style .mat file: store the identities' attributes as truth."),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option(help="Skip unreadable images (logged by name) instead of stopping.")
    ] = False,
    device: Device = "auto",
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers.")] = None,
) -> None:
    """Extract the five part features of every crop in a folder (or of one split of a table
    dataset, with its identities, cameras and attributes) into a features file."""
    from cerberus.features import UNKNOWN
    from cerberus.inference import InferenceModel

    _at_least("--batch-size", batch_size, 1)
    _at_least("--workers", workers, 0)
    if (images is None) == (data is None):
        raise CerberusError("give exactly one of --images (a folder) or --data (a table dataset)")
    if data is not None and attributes is not None:
        raise CerberusError("--attributes is for --images; a table dataset has its attributes")
    if data is not None and split not in ("train", "query", "gallery"):
        raise CerberusError(f"--split {split!r}: must be train, query or gallery")
    net = InferenceModel.from_checkpoint(
        checkpoint, device=device, batch_size=batch_size, num_workers=workers
    )
    if data is not None:
        from cerberus.data.table import SCHEMA_FILE, read_table_dataset

        own = (data / SCHEMA_FILE).is_file()
        dataset = read_table_dataset(data, None if own else net.schema)
        feats = net.extract_images(
            getattr(dataset, split), skip_bad=skip_bad, progress=True, desc=split
        )
    else:
        table = _attribute_table(attributes, net.schema) if attributes else None
        feats = net.extract_folder(images, attributes=table, skip_bad=skip_bad, progress=True)
    path = feats.save(out)
    named = feats.pids != UNKNOWN
    known = int((named & (feats.pids > 0)).sum())
    others = int((named & (feats.pids <= 0)).sum())  # Market: 0 distractor, -1 junk
    typer.echo(
        f"{len(feats.paths)} images -> {path} (features {feats.features.shape[1:]}, "
        f"{known} with identities"
        + (" from the table" if data is not None else " from their names")
        + (f", {others} distractor / junk crops" if others else "")
        + ")"
    )


@app.command("index")
def build_index(
    features: Annotated[Path, typer.Option("--features", help="Features file from extract.")],
    out: Annotated[Path, typer.Option("--out", help="Index file to write (.npz).")],
    kind: Annotated[
        str, typer.Option(help="flat (exact); ivf, ivf-sq8 or hnsw (approximate, for millions).")
    ] = "flat",
    nlist: Annotated[int | None, typer.Option(help="ivf*: cells (default sqrt(N)).")] = None,
    nprobe: Annotated[int, typer.Option(help="ivf*: cells searched per query.")] = 16,
    hnsw_m: Annotated[int, typer.Option(help="hnsw: links per node.")] = 32,
    ef_search: Annotated[int, typer.Option(help="hnsw: search depth.")] = 128,
) -> None:
    """Build a gallery index (faiss, inner product = mean part cosine) for reID and APS."""
    import time

    from cerberus.features import FeatureSet
    from cerberus.index import GalleryIndex

    feats = FeatureSet.load(features)
    t = time.perf_counter()
    index = GalleryIndex.build(
        feats, kind=kind, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search
    )
    seconds = time.perf_counter() - t
    path = index.save(out)
    line = f"{kind} index of {len(index)} vectors (dim {index.index.d}) -> {path}"
    line += f" in {seconds:.2f}s"
    if "recall_at_10" in index.meta:
        line += f"; recall@10 vs exact search {index.meta['recall_at_10']:.4f}"
    typer.echo(line)


def _index_model(gallery, index: Path, checkpoint: Path | None, device: str):
    """The model that embeds image queries: ``checkpoint``, else the one the index names."""
    from cerberus.inference import InferenceModel

    ckpt = checkpoint or Path(gallery.meta.get("checkpoint") or "")
    if not str(ckpt) or not ckpt.is_file():
        raise CerberusError(
            f"{index}: the checkpoint it was built with ({ckpt}) is not found; give --checkpoint"
        )
    return InferenceModel.from_checkpoint(ckpt, device=device)


@app.command()
def search(
    index: Annotated[Path, typer.Option("--index", help="Index file from `cerberus index`.")],
    image: Annotated[Path | None, typer.Option(help="reID: a query crop.")] = None,
    attrs: Annotated[
        str | None,
        typer.Option(help='APS: e.g. "gender=female, upper.color=red, backpack=yes".'),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Model for image queries (default: the one the index was built with)."),
    ] = None,
    k: Annotated[int, typer.Option("--top-k", "-k", help="Results to return.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    figure: Annotated[Path | None, typer.Option(help="Also draw the ranked list (PNG).")] = None,
    fpr: Annotated[
        float | None,
        typer.Option(help="reID: the calibrated FPR whose threshold says same / different."),
    ] = None,
    device: Device = "auto",
) -> None:
    """Search a gallery index by image (reID) or by attributes (APS, any subset).

    reID results say "same person" or "different" at the threshold `cerberus calibrate` stored
    with the model (its chosen FPR, or --fpr)."""
    import json

    from cerberus.index import GalleryIndex, result_rows, search_images
    from cerberus.scoring import parse_attribute_query

    _at_least("--top-k (-k)", k, 1)
    if (image is None) == (attrs is None):
        raise CerberusError("give exactly one of --image (reID) or --attrs (APS)")
    gallery = GalleryIndex.load(index)
    point, said = None, ""  # the calibrated operating point (reID only)
    if image is not None:
        net = _index_model(gallery, index, checkpoint, device)
        ((rows, query_text),) = search_images(gallery, net, [image], k)
        query: dict = {"image": str(image)}
        point, said = _operating_point(net, fpr)
        for r in rows:
            r["same_person"] = None if point is None else r["score"] > point["threshold"]
    else:
        aq = parse_attribute_query(attrs, gallery.schema)
        rows = result_rows(gallery, gallery.search_attributes(aq, k), attribute_query=aq)
        query_text = aq.describe(gallery.schema)
        query = {"attributes": dict(zip(aq.given, query_text)), "groups": list(aq.groups)}
    if as_json:
        out = {"query": query, "results": rows}
        if image is not None:
            out["operating_point"] = point
        typer.echo(json.dumps(out, indent=2))
    else:
        same = " same     " if image is not None else ""
        typer.echo(f"{'rank':>4s} {'score':>7s} {'id':>6s} {'cam':>4s} {'ok':>3s} {same} path")
        for r in rows:
            ok = {True: "yes", False: "no", None: "-"}[r["correct"]]
            pid = "-" if r["pid"] is None else str(r["pid"])
            cam = "-" if r["camid"] is None else f"c{r['camid'] + 1}"
            verdict = {True: "same     ", False: "different", None: "-        "}
            same = f" {verdict[r['same_person']]}" if image is not None else ""
            typer.echo(
                f"{r['rank']:4d} {r['score']:7.4f} {pid:>6s} {cam:>4s} {ok:>3s}{same}  {r['path']}"
            )
        if image is not None:
            typer.echo(said if point is None else f"same person if score > {said}")
    if figure is not None:
        from cerberus.visualize import rank_list_from_rows

        title = f"reID: {image.name}" if image is not None else f"APS: {attrs}"
        rank_list_from_rows(figure, rows, query_image=image, query_text=query_text, title=title)
        if not as_json:
            typer.echo(f"figure: {figure}")


def _operating_point(net, fpr: float | None) -> tuple[dict | None, str]:
    """The model's calibrated point (chosen FPR or ``fpr``) and what it is, or ``None`` and how
    to calibrate."""
    from cerberus.calibration import describe_point, operating_point

    if net.calibration is None:
        if fpr is not None:
            raise CerberusError(f"--fpr {fpr:g}: {net.checkpoint} has no calibration")
        return None, (
            f"no calibrated threshold for {net.checkpoint}: run `cerberus calibrate "
            f"--checkpoint {net.checkpoint}` to say same person / different"
        )
    point = operating_point(net.calibration, fpr)
    return point, describe_point(point, net.calibration)


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

    from cerberus.inference import InferenceModel, embed_features

    if len(images) != 2:
        raise CerberusError(f"verify takes two images, got {len(images)}")
    net = InferenceModel.from_checkpoint(checkpoint, device=device, num_workers=0)
    a, b = embed_features(net.features(images)).astype("float64")
    similarity = float(a @ b)
    point, said = _operating_point(net, fpr)
    same = None if point is None else similarity > point["threshold"]
    if as_json:
        found = {"images": [str(p) for p in images], "similarity": similarity}
        typer.echo(json.dumps({**found, "same_person": same, "operating_point": point}, indent=2))
        return
    if point is None:
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
    import json

    from cerberus.calibration import calibrate as run_calibration
    from cerberus.calibration import describe_point, operating_point, store_calibration
    from cerberus.evaluation import checkpoint_dataset
    from cerberus.inference import InferenceModel
    from cerberus.visualize import roc_figure

    _at_least("--batch-size", batch_size, 1)
    _at_least("--workers", workers, 0)
    _at_least("--max-pairs", max_pairs, 2)
    targets = _float_list(fprs, "--fprs")
    for option, value in [("--fpr", fpr)] + [("--fprs", f) for f in targets]:
        if not 0 < value < 1:
            raise CerberusError(f"{option} {value:g}: must be between 0 and 1 (exclusive)")
    net = InferenceModel.from_checkpoint(
        checkpoint, device=device, batch_size=batch_size, num_workers=workers
    )
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
    typer.echo(f"{'target FPR':>10s} {'threshold':>9s} {'TPR':>6s} {'measured FPR':>12s}")
    for p in cal["points"]:
        note = "" if p["resolved"] else f"  (too few pairs: needs {1 / p['fpr_target']:,.0f})"
        typer.echo(
            f"{p['fpr_target']:10.0e} {p['threshold']:9.4f} {100 * p['tpr']:5.1f}% "
            f"{p['fpr']:12.2e}{note}"
        )
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
        from cerberus.files import atomic_write

        text = json.dumps(cal, indent=2)
        atomic_write(out, lambda fh: fh.write(text.encode()), "calibration")
        typer.echo(f"calibration written to {out}")


@app.command()
def describe(
    checkpoint: Checkpoint,
    images: Annotated[list[Path], typer.Argument(help="Person crops.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Device = "auto",
) -> None:
    """Predict the attributes of person crops (PAR): nearest SID prototype per group."""
    import json

    from cerberus.inference import InferenceModel

    net = InferenceModel.from_checkpoint(checkpoint, device=device)
    found = net.describe(net.features(images))
    if as_json:
        typer.echo(json.dumps([{"image": str(p), **d} for p, d in zip(images, found)], indent=2))
        return
    for p, d in zip(images, found):
        typer.echo(f"{p}: {', '.join(d['phrases'])}")


@app.command()
def serve(
    index: Annotated[Path, typer.Option("--index", help="Index file from `cerberus index`.")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Model for photo queries (default: the one the index was built with)."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 opens it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_image_mb: Annotated[float, typer.Option(help="Largest upload, in MiB.")] = 8.0,
    max_pixels: Annotated[int, typer.Option(help="Largest upload, width x height.")] = 4096 * 4096,
    device: Device = "auto",
) -> None:
    """Serve the person-search page and its JSON API (search by photo or description)."""
    from cerberus.index import GalleryIndex
    from cerberus.serve import check_serve_options, create_app, run_server

    limits = check_serve_options(port, max_image_mb, max_pixels)
    gallery = GalleryIndex.load(index)
    served = create_app(gallery, _index_model(gallery, index, checkpoint, device), limits=limits)
    typer.echo(f"serving {len(gallery)} gallery crops on http://{host}:{port}/ (Ctrl-C stops)")
    run_server(served, host=host, port=port)


visualize_app = typer.Typer(
    help="Figures: rank lists (Fig. 6), alignment (Fig. 7a), attention (Fig. 8), t-SNE (Fig. 9)."
)
app.add_typer(visualize_app, name="visualize")


@visualize_app.command("ranks")
def visualize_ranks(
    index: Annotated[Path, typer.Option("--index", help="Gallery index.")],
    images: Annotated[list[Path], typer.Argument(help="Query crops; one figure each.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNGs.")],
    checkpoint: Annotated[Path | None, typer.Option(help="Model (default: the index's).")] = None,
    k: Annotated[int, typer.Option("--top-k", "-k", help="Ranks shown.")] = 10,
    device: Device = "auto",
) -> None:
    """Rank-k lists of query crops, correct matches green, wrong red, attributes under query."""
    from cerberus.index import GalleryIndex, search_images
    from cerberus.visualize import rank_list_from_rows

    _at_least("--top-k (-k)", k, 1)
    gallery = GalleryIndex.load(index)
    net = _index_model(gallery, index, checkpoint, device)
    for image, (rows, said) in zip(images, search_images(gallery, net, images, k)):
        path = rank_list_from_rows(
            out / f"ranks_{image.stem}.png",
            rows,
            query_image=image,
            query_text=said,
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
    from cerberus.inference import InferenceModel
    from cerberus.visualize import alignment_figure, model_alignment_maps

    net = InferenceModel.from_checkpoint(checkpoint, device=device)
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
    from cerberus.attributes import GROUPS
    from cerberus.explain import attention_figure, grad_cam_maps
    from cerberus.inference import InferenceModel

    net = InferenceModel.from_checkpoint(checkpoint, device=device)
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
    from cerberus.attributes import schema_from_meta
    from cerberus.checkpoints import checkpoint_config, load_checkpoint
    from cerberus.evaluation import checkpoint_dataset
    from cerberus.explain import tsne_compare

    _at_least("--ids", ids, 2)
    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state, checkpoint)
    trained = schema_from_meta(state["meta"]["schema"], str(checkpoint))
    dataset = checkpoint_dataset(cfg, trained, checkpoint, data)
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

    from cerberus.export import export_onnx, verify_onnx
    from cerberus.inference import InferenceModel

    kind = format or ("safetensors" if out.suffix in (".safetensors", ".json") else "onnx")
    if kind not in ("onnx", "safetensors"):
        raise CerberusError(f"--format {kind!r}: valid: onnx, safetensors")
    if kind == "safetensors":
        _export_weights(checkpoint, out, metrics, verify)
        return
    if metrics is not None:
        raise CerberusError("--metrics: only for --format safetensors")
    net = InferenceModel.from_checkpoint(checkpoint, device="cpu")
    path = export_onnx(net.model, out, height=net.height, width=net.width, schema=net.schema.name)
    typer.echo(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if verify:
        x = torch.randn(2, 3, net.height, net.width, generator=torch.Generator().manual_seed(0))
        diff = verify_onnx(net.model, path, x)
        typer.echo(f"onnxruntime matches PyTorch: max abs difference {diff:.2e}")


def _export_weights(checkpoint: Path, out: Path, metrics: Path | None, verify: bool) -> None:
    import json

    from cerberus.export import export_weights, verify_weights

    scores = None
    if metrics is not None:
        try:
            scores = json.loads(metrics.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise CerberusError(f"{metrics}: metrics file not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CerberusError(f"{metrics}: not readable JSON ({_one_line(str(exc))})") from None
    weights, meta = export_weights(checkpoint, out, metrics=scores)
    typer.echo(
        f"exported {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {meta} "
        f"(sha256 {json.loads(meta.read_text())['sha256'][:16]}...)"
    )
    if verify:
        fingerprint = json.loads(meta.read_text())["fingerprint"]
        verify_weights(meta, fingerprint)
        typer.echo(f"reloaded: hash and model fingerprint {fingerprint[:12]} match")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the run, figures and report.md.")] = Path(
        "runs/demo"
    ),
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config.")] = Path(
        "configs/synthetic.yaml"
    ),
    overrides: Overrides = None,
    regenerate: Annotated[bool, typer.Option(help="Regenerate the synthetic data.")] = False,
) -> None:
    """Synthetic data -> train (CPU config) -> evaluate -> index -> figures -> report.md."""
    from cerberus.config import load_config
    from cerberus.demo import run_demo

    cfg = load_config(config, overrides or [])
    report = run_demo(cfg, out, regenerate=regenerate)
    typer.echo(f"report: {report}")


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever ``sys.stderr`` is now (tests and progress bars replace it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging() -> None:
    """INFO lines of the ``cerberus`` loggers; other libraries keep their own (quiet) levels."""
    log = logging.getLogger("cerberus")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def _one_line(text: str) -> str:
    """The message itself: a DataLoader worker's error arrives wrapped in its traceback."""
    text = text.strip()
    if "Original Traceback" in text:
        last = [x for x in text.splitlines() if x.strip()][-1]
        name, sep, message = last.partition(": ")
        text = message if sep and " " not in name else last
    return " ".join(text.split()) or "(no message)"


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app; errors print as one red line.

    Exit code 2: bad input or an environment problem (our own :class:`CerberusError`, an
    ``OSError`` such as a read-only folder); 1: an unexpected error, whose traceback is shown
    with ``--debug`` or ``CERBERUS_DEBUG=1``.
    """
    _configure_logging()
    try:
        app()
    except CerberusError as exc:
        _fail(_one_line(str(exc)))
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        sys.exit(130)
    except OSError as exc:
        if _debugging():
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(where + _one_line(exc.strerror or str(exc)))
    except Exception as exc:
        if _debugging():
            raise
        text = _one_line(str(exc)) if str(exc).strip() else ""
        _fail(
            f"unexpected {type(exc).__name__}{': ' if text else ''}{text[:300]} "
            "(a bug: rerun with --debug or CERBERUS_DEBUG=1 for the traceback)",
            code=1,
        )


if __name__ == "__main__":
    main()
