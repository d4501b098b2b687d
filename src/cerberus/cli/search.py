"""Commands over a gallery: ``extract``, ``index``, ``search``, ``serve`` (the ``gallery``
family and ``timeline`` are in :mod:`cerberus.cli.gallery`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cerberus.cli._app import (
    Checkpoint,
    Device,
    Exact,
    Nprobe,
    app,
    at_least,
    nprobe_of,
)
from cerberus.errors import CerberusError

GalleryTarget = Annotated[
    str | None,
    typer.Option(
        "--gallery",
        help="Add to this gallery: a folder (created when missing) or a Milvus URI; no rebuild.",
    ),
]
Camera = Annotated[
    str | None,
    typer.Option(help="With --gallery: camera of crops whose file names do not tell it."),
]
Start = Annotated[
    str | None,
    typer.Option(help="With --gallery: time of the crops, ISO-8601 with a zone (else unknown)."),
]
Replace = Annotated[
    bool, typer.Option(help="With --gallery: replace a source already in the gallery.")
]


def _check_adding(out, gallery, camera, start, replace) -> None:
    """One of --out / --gallery; --camera / --start / --replace only with --gallery; --start a
    time with a zone (checked before any work)."""
    from cerberus.search import to_utc_seconds

    if out is None and gallery is None:
        raise CerberusError("give --out (a file) or --gallery (a gallery to add to)")
    if gallery is None:
        for option, value in (("--camera", camera), ("--start", start), ("--replace", replace)):
            if value:
                raise CerberusError(f"{option} is for adding to a gallery: give --gallery")
    if start is not None:
        to_utc_seconds(start, "--start")
    if camera is not None:
        from cerberus.search import check_names

        check_names([camera], "--camera", "adding to a gallery")


def _add(gallery: str, feats, camera, start, replace) -> None:
    from cerberus.search import add_features

    if camera is not None:
        _warn_named_cameras(feats, camera)
    store, ids = add_features(gallery, feats, camera=camera, start=start, replace=replace)
    sources = sorted({s for s in store.get(ids[:1], vectors=False).source}) if len(ids) else []
    typer.echo(
        f"{len(ids)} crops added to {gallery} (source {', '.join(sources) or '-'}); "
        f"it holds {store.count()} crops from {len(store.cameras())} cameras"
    )
    store.close()


def _warn_named_cameras(feats, camera: str) -> None:
    """One warning line when crops' file names give their cameras (benchmark style ``c3``):
    those keep their own camera and ``--camera`` applies only to the others (docs/galleries.md)."""
    from cerberus.inference.features import camera_label

    labels = feats.meta.get("camera_labels", ())
    named = sorted({camera_label(int(c), labels) or "" for c in feats.camids} - {""})
    if not named:
        return
    others = sum(not camera_label(int(c), labels) for c in feats.camids)
    shown = ", ".join(named[:5]) + (", ..." if len(named) > 5 else "")
    typer.echo(
        f"WARNING --camera {camera}: {len(feats.camids) - others} of {len(feats.camids)} crops "
        f"take their camera from their file names ({shown}); --camera applies to the "
        f"{others} others",
        err=True,
    )


def _attribute_table(path: Path, schema):
    """Both splits of a Lin-style attribute file as one table (their identities are disjoint)."""
    import numpy as np

    from cerberus.attributes.mat import load_attribute_mat
    from cerberus.attributes.table import AttributeTable

    tables = load_attribute_mat(path, schema).values()
    return AttributeTable(
        schema,
        np.concatenate([t.ids for t in tables]),
        np.concatenate([t.values for t in tables]),
    )


@app.command()
def extract(
    checkpoint: Checkpoint,
    out: Annotated[
        Path | None, typer.Option("--out", help="Features file to write (.npz).")
    ] = None,
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
    gallery: GalleryTarget = None,
    camera: Camera = None,
    start: Start = None,
    replace: Replace = False,
) -> None:
    """Extract the five part features of every crop in a folder (or of one split of a table
    dataset, with its identities, cameras and attributes) into a features file.

    With --gallery, the crops are also (or instead) added to a gallery that grows."""
    from cerberus.inference.features import UNKNOWN
    from cerberus.search import load_model

    _check_adding(out, gallery, camera, start, replace)
    at_least("--batch-size", batch_size, 1)
    at_least("--workers", workers, 0)
    if (images is None) == (data is None):
        raise CerberusError("give exactly one of --images (a folder) or --data (a table dataset)")
    if data is not None and attributes is not None:
        raise CerberusError("--attributes is for --images; a table dataset has its attributes")
    if data is not None and split not in ("train", "query", "gallery"):
        raise CerberusError(f"--split {split!r}: must be train, query or gallery")
    net = load_model(checkpoint, device=device, batch_size=batch_size, num_workers=workers)
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
    if gallery is not None:
        _add(gallery, feats, camera, start, replace)
        if out is None:
            return
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
    out: Annotated[Path | None, typer.Option("--out", help="Index file to write (.npz).")] = None,
    kind: Annotated[
        str, typer.Option(help="flat (exact); ivf, ivf-sq8 or hnsw (approximate, for millions).")
    ] = "flat",
    nlist: Annotated[int | None, typer.Option(help="ivf*: cells (default sqrt(N)).")] = None,
    nprobe: Annotated[int, typer.Option(help="ivf*: cells searched per query.")] = 16,
    hnsw_m: Annotated[int, typer.Option(help="hnsw: links per node.")] = 32,
    ef_search: Annotated[int, typer.Option(help="hnsw: search depth.")] = 128,
    gallery: GalleryTarget = None,
    camera: Camera = None,
    start: Start = None,
    replace: Replace = False,
) -> None:
    """Build an index file for reID and APS, or add features to a gallery (--gallery).

    The index is faiss, inner product = mean part cosine; a gallery grows without a rebuild."""
    import time

    from cerberus.inference.features import FeatureSet
    from cerberus.search import build_index

    _check_adding(out, gallery, camera, start, replace)
    if gallery is not None and out is not None:
        raise CerberusError("give one of --out (an index file) or --gallery (a gallery)")
    feats = FeatureSet.load(features)
    if gallery is not None:
        if kind != "flat":
            raise CerberusError(f"--kind {kind} is for --out; a gallery keeps its own index")
        _add(gallery, feats, camera, start, replace)
        return
    t = time.perf_counter()
    store = build_index(
        feats, kind=kind, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search
    )
    seconds = time.perf_counter() - t
    path = store.save(out)
    line = f"{kind} index of {store.count()} vectors (dim {store.info.dim}) -> {path}"
    line += f" in {seconds:.2f}s"
    meta = store.index.meta
    if "recall_at_10" in meta:
        line += f"; recall@10 vs exact search {meta['recall_at_10']:.4f}"
    typer.echo(line)


@app.command()
def search(
    index: Annotated[
        str,
        typer.Option(
            "--index", "--gallery", help="Gallery: a folder, a Milvus URI or an .npz index file."
        ),
    ],
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
    camera: Annotated[
        list[str] | None, typer.Option("--camera", help="Only these cameras (repeat the option).")
    ] = None,
    after: Annotated[
        str | None, typer.Option(help="Only crops at or after this time (ISO-8601 with a zone).")
    ] = None,
    before: Annotated[
        str | None, typer.Option(help="Only crops before this time (ISO-8601 with a zone).")
    ] = None,
    per_track: Annotated[
        bool, typer.Option("--per-track", help="One row per track (its best crop).")
    ] = False,
    track_score: Annotated[
        str, typer.Option(help="--per-track: a track's score, max or top3 (mean of its best 3).")
    ] = "max",
    exact: Exact = False,
    nprobe: Nprobe = None,
) -> None:
    """Search a gallery by image (reID) or by attributes (APS, any subset).

    Filters: --camera (repeat), --after / --before; --per-track gives one row per track.
    --exact never uses the approximate index; --nprobe sets the cells it probes.

    reID results say "same person" or "different" at the threshold `cerberus calibrate` stored
    with the model (its chosen FPR, or --fpr)."""
    import json

    from cerberus.search import TRACK_SCORES, Gallery

    at_least("--top-k (-k)", k, 1)
    probes = nprobe_of(nprobe)
    if (image is None) == (attrs is None):
        raise CerberusError("give exactly one of --image (reID) or --attrs (APS)")
    if track_score not in TRACK_SCORES:
        raise CerberusError(f"--track-score {track_score!r}: must be {' or '.join(TRACK_SCORES)}")
    gallery = Gallery.open(index, checkpoint, device=device, model=image is not None)
    where = gallery.where(cameras=camera, after=after, before=before)
    options = {"where": where, "per_track": per_track, "track_score": track_score}
    options.update(exact=exact, nprobe=probes)
    if image is not None:
        found = gallery.by_image(image, k, fpr=fpr, **options)
        query: dict = {"image": str(image)}
    else:
        found = gallery.by_attributes(attrs, k, **options)
        query = found.query
    rows, query_text, verdicts = found.rows, found.text, found.verdicts
    point = None if verdicts is None else verdicts.point
    if as_json:
        out = {"query": query, "results": rows}
        if verdicts is not None:
            out["operating_point"] = point
            out["calibrated_on"] = verdicts.calibrated_on
        typer.echo(json.dumps(out, indent=2))
    else:
        same = " same     " if image is not None else ""
        cw = max([4] + [len(r["camera"] or "-") for r in rows])  # long camera names stay aligned
        # item: the gallery item (what `timeline --item` takes); person: its annotated identity
        iw = max([4] + [len(str(r["id"])) for r in rows])
        typer.echo(
            f"{'rank':>4s} {'score':>7s} {'item':>{iw}s} {'person':>6s} {'cam':>{cw}s} "
            f"{'ok':>3s} {same} path"
        )
        for r in rows:
            ok = {True: "yes", False: "no", None: "-"}[r["correct"]]
            pid = "-" if r["pid"] is None else str(r["pid"])
            cam = r["camera"] or "-"
            verdict = {True: "same     ", False: "different", None: "-        "}
            same = f" {verdict[r['same_person']]}" if image is not None else ""
            head = (
                f"{r['rank']:4d} {r['score']:7.4f} {r['id']:>{iw}d} {pid:>6s} {cam:>{cw}s} "
                f"{ok:>3s}{same}"
            )
            typer.echo(f"{head}  {r['path']}" + _when(r))
        if verdicts is not None:
            said = verdicts.text
            typer.echo(said if point is None else f"same person if score > {said}")
    if figure is not None:
        from cerberus.evaluation.figures import rank_list_from_rows

        title = f"reID: {image.name}" if image is not None else f"APS: {attrs}"
        rank_list_from_rows(figure, rows, query_image=image, query_text=query_text, title=title)
        if not as_json:
            typer.echo(f"figure: {figure}")


def _when(row: dict) -> str:
    """`` at TIME`` / `` track 3: 12 crops, START .. END`` when a row knows them."""
    if "count" in row:
        span = row["span"]
        when = f", {span[0]} .. {span[1]}" if span else ""
        track = "" if row["track"] is None else f" track {row['track']}:"
        crops = f"{row['count']} crop{'' if row['count'] == 1 else 's'}"
        return f"  {track} {crops}{when}"
    return f"  at {row['time']}" if row.get("time") else ""


@app.command()
def serve(
    index: Annotated[
        str,
        typer.Option(
            "--index", "--gallery", help="Gallery: a folder, a Milvus URI or an .npz index file."
        ),
    ],
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
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Also answer requests naming this host (repeat); 127.0.0.1, localhost, [::1] "
            "and --host always.",
        ),
    ] = None,
    device: Device = "auto",
) -> None:
    """Serve the person-search page and its JSON API (search by photo or description).

    Only requests whose Host header names this machine, --host or an --allowed-host are
    answered (a web page elsewhere cannot read the gallery through a browser)."""
    from cerberus.search import Gallery
    from cerberus.web.app import check_serve_options, create_app, run_server
    from cerberus.web.hosts import allowed_hosts

    limits = check_serve_options(port, max_image_mb, max_pixels)
    hosts = allowed_hosts(host, allowed_host or ())
    gallery = Gallery.open(index, checkpoint, device=device)
    served = create_app(gallery, limits=limits, hosts=hosts)  # all loaded and checked first
    said = f"serving {len(gallery)} gallery crops on http://{host}:{port}/ (Ctrl-C stops)"
    run_server(served, host=host, port=port, announce=said)  # said once the port is bound
