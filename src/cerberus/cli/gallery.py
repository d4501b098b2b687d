"""Commands on a gallery that grows (method §9): ``gallery info | remove | compact | check |
convert``, ``timeline`` ("where else was this person?") and ``tracks`` (a footage gallery's
tracks and their paths)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cerberus.cli._app import Device, Exact, Nprobe, app, at_least, nprobe_of
from cerberus.errors import CerberusError

gallery_app = typer.Typer(
    help="Look into, shrink or convert a gallery (a folder, a Milvus URI, an .npz index).",
    no_args_is_help=True,
)
app.add_typer(gallery_app, name="gallery")

Target = Annotated[str, typer.Argument(help="Gallery: a folder, a Milvus URI or an .npz index.")]


@gallery_app.command("info")
def info(
    gallery: Target,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts, cameras, sources and time span of a gallery, and the model it was built with."""
    from cerberus.search import Gallery

    facts = Gallery.open(gallery, model=False).summary()
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    span = facts["span"]
    typer.echo(
        f"{gallery}: {facts['count']} crops, dim {facts['dim']}, schema {facts['schema']}"
        + (" (read-only .npz index)" if facts["read_only"] else "")
    )
    typer.echo(f"model: {facts['checkpoint'] or '-'} ({facts['fingerprint'][:12]})")
    typer.echo(f"time: {span[0]} .. {span[1]}" if span else "time: unknown for every crop")
    if span and facts["undated"]:
        typer.echo(f"      ({facts['undated']} crops without a time)")
    cams = ", ".join(f"{c} ({n})" for c, n in facts["cameras"].items())
    typer.echo(f"cameras: {cams or 'none known'}")
    typer.echo(f"sources ({len(facts['sources'])}):")
    for s in facts["sources"]:
        typer.echo(f"  {s['name']}: {s['count']} crops" + ("" if s["complete"] else " (adding)"))
    typer.echo(index_line(facts.get("index")))


def index_line(index: dict | None) -> str:
    """``gallery info``'s line on the approximate index and the recall measured with it."""
    if index is None:
        return "index: none (every search is exact)"
    if "kind" in index:  # an .npz index file: recall@10 measured by `cerberus index`
        cells = f", {index['nlist']} cells, nprobe {index['nprobe']}" if index["nlist"] else ""
        r10 = index.get("recall_at_10")
        said = "not measured" if r10 is None else f"{r10:.3f}"
        return f"index: {index['kind']} of {index['items']} crops{cells}; recall@10 {said}"
    r = index.get("recall")
    head = f"index: IVF-SQ8 of {index['items']} crops, {index['nlist'] or '?'} cells"
    if r is None:
        return head + "; recall not measured yet (measured at the next large search)"
    asked, described = r["queries"], r.get("description")
    if described and described.get("path"):  # descriptions from the SID columns, checked
        how = (
            "from the SID columns" if described["reached"]
            else f"searched exactly (the SID columns fell short of {r['target']})"
        )  # fmt: skip
        said = [_setting(r, f"on {asked['photo']} gallery crops", r["target"]),
                f"descriptions {how}: recall@10 {described['recall_at_10']:.3f} on "
                f"{asked['description']}"]
    else:  # no prototypes, or measured before the kinds were told apart: one setting
        both = f"{asked['photo']} gallery crops + {asked['description']} descriptions"
        said = [_setting(r, f"on {both}", r["target"])]
    return (
        f"{head}; " + "; ".join(said) + f" (measured on {r['measured_on']} crops)"
        + ("; due to be measured again (the gallery changed by a tenth): in the background "
           "at the next search" if index.get("due") else "")
    )  # fmt: skip


def _setting(s: dict, asked: str, target: float) -> str:
    """One measured setting of ``gallery info``: the recall@10 reached and the cells probed for
    it, unfiltered and (``cover``) filtered, or that searches are exact."""
    if s["nprobe"] is None:
        return f"no setting reached recall@10 {target} {asked}: searches are exact"
    filtered = _covers(s["cover"])
    if s.get("bitmap_below"):  # the id-bitmap path was timed faster for these filters
        filtered += f"; under {s['bitmap_below']:.0%} of the gallery by the id bitmap (faster)"
    got = f"recall@10 {s['recall_at_10']:.3f} at nprobe {s['nprobe']}"
    return f"{got} {asked} (filtered: {filtered})"


def _covers(cover) -> str:
    """The id-bitmap path's coverage factors per filter share (one factor: an older index)."""
    if not isinstance(cover, dict):
        return "exact" if cover is None else f"cover x{cover:g}"
    if not cover:
        return "every cell holding a passing item"
    parts = [
        f"{'exact' if c is None else f'x{c:g}'} at {float(f):.3g}"
        for f, c in sorted(cover.items(), key=lambda fc: -float(fc[0]))
    ]
    return "cover " + ", ".join(parts)


@gallery_app.command("remove")
def remove(
    gallery: Target,
    source: Annotated[str | None, typer.Option(help="Remove every crop of this source.")] = None,
    camera: Annotated[str | None, typer.Option(help="Remove every crop of this camera.")] = None,
) -> None:
    """Remove every crop of one source or of one camera."""
    from cerberus.search import open_store

    if (source is None) == (camera is None):
        raise CerberusError("give exactly one of --source or --camera")
    store = open_store(gallery)
    if camera is not None and camera not in store.cameras():
        known = ", ".join(store.cameras()) or "none"
        raise CerberusError(f"--camera {camera}: not in {gallery} (it has: {known})")
    names = {s.name for s in store.sources()}
    if source is not None and source not in names:
        resolved = str(Path(source).expanduser().resolve())  # files and folders: absolute
        if resolved not in names:
            raise CerberusError(
                f"--source {source}: not in {gallery} (see `cerberus gallery info`)"
            )
        source = resolved
    gone = store.remove(source=source, camera=camera)
    typer.echo(f"removed {gone} crops from {gallery}; it holds {store.count()}")
    store.close()


@gallery_app.command("compact")
def compact(gallery: Target) -> None:
    """Build (or retrain) a local gallery's approximate index and drop removed crops' vectors:
    after large adds, so that no search has to build it (minutes at a million crops)."""
    import time

    from cerberus.search import open_store

    store = open_store(gallery)
    try:
        if not hasattr(store, "build_index"):
            raise CerberusError(f"{gallery}: only a local gallery folder keeps its own index")
        t = time.perf_counter()
        dropped = store.compact()
        store.build_index()  # a no-op up to exact_limit crops: those are searched exactly
        total = store.count()
        did = (
            f"{total} crops indexed"
            if total > store.exact_limit
            else f"{total} crops, no index needed (searched exactly up to {store.exact_limit})"
        )
        typer.echo(
            f"{gallery}: {did}, {dropped} removed rows dropped in {time.perf_counter() - t:.1f} s"
        )
    finally:
        store.close()


@gallery_app.command("check")
def check(gallery: Target) -> None:
    """Verify a local gallery: its database, and every vector segment's file, shape and
    checksum. Each fault is one line naming the file; exit code 2 when there is any."""
    from cerberus.search import open_store

    store = open_store(gallery)
    try:
        if not hasattr(store, "check"):
            raise CerberusError(
                f"{gallery}: `gallery check` verifies a local gallery folder (an .npz index is "
                "checked whole when opened; Milvus checks its own files)"
            )
        faults, facts = store.check()
    finally:
        store.close()
    for line in faults:
        typer.echo(line)
    unchecked = (
        f" ({facts['unchecked']} written before checksums: shapes checked only)"
        if facts["unchecked"]
        else ""
    )
    said = f"{facts['items']} crops in {facts['segments']} vector segments{unchecked}"
    if faults:
        typer.echo(f"{gallery}: {len(faults)} damaged or missing files; {said}", err=True)
        raise typer.Exit(2)
    typer.echo(f"{gallery}: sound; {said}")


@gallery_app.command("convert")
def convert(
    index: Annotated[Path, typer.Argument(help="An .npz index file from `cerberus index --out`.")],
    out: Annotated[str, typer.Option("--out", help="New gallery: a folder or a Milvus URI.")],
) -> None:
    """Copy an .npz index into a gallery that grows (vectors, identities, cameras, attributes)."""
    from cerberus.search import convert as convert_index

    if index.suffix != ".npz":
        raise CerberusError(f"{index}: not an .npz index file")
    store = convert_index(index, out)
    typer.echo(f"{index} -> {out}: {store.count()} crops, {len(store.sources())} sources")
    store.close()


@app.command()
def timeline(
    gallery: Annotated[
        str, typer.Option("--gallery", "--index", help="Gallery: folder, Milvus URI or .npz.")
    ],
    item: Annotated[int, typer.Option("--item", help="The gallery item (a result's id).")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Model for the threshold (default: the one the gallery was built with)."),
    ] = None,
    camera: Annotated[
        list[str] | None, typer.Option("--camera", help="Only these cameras (repeat).")
    ] = None,
    after: Annotated[str | None, typer.Option(help="Only at or after (ISO-8601).")] = None,
    before: Annotated[str | None, typer.Option(help="Only before (ISO-8601).")] = None,
    min_score: Annotated[
        float | None,
        typer.Option(help="Keep crops above this score (default: the calibrated threshold)."),
    ] = None,
    k: Annotated[
        int,
        typer.Option(
            "--top-k", "-k", help="Uncalibrated: crops searched for candidates below the default."
        ),
    ] = 100,
    fpr: Annotated[float | None, typer.Option(help="The calibrated FPR to judge at.")] = None,
    per_item: Annotated[
        bool, typer.Option(help="Query with the item's own vector, not its track's mean.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Device = "auto",
    exact: Exact = False,
    nprobe: Nprobe = None,
) -> None:
    """Where else was this person? Sightings of a gallery item's person, by time.

    Every camera is searched with the item's track (or the item); the crops judged the same
    person are grouped per track. A model without a calibration: the item's own track and the
    crops above the default threshold, then the rest of the top k apart, as candidates."""
    from cerberus.search import Gallery

    at_least("--top-k (-k)", k, 1)
    probes = nprobe_of(nprobe)
    opened = Gallery.open(gallery, checkpoint, device=device, model=min_score is None)
    where = opened.where(cameras=camera, after=after, before=before)
    found = opened.timeline(
        item, where=where, min_score=min_score, k=k, per_item=per_item, fpr=fpr,
        exact=exact, nprobe=probes,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    q = found["query"]
    typer.echo(
        f"item {q['id']} ({q['camera'] or '-'}, {q['time'] or 'no time'}; {q['vector']}); "
        f"{found['rule']}"
    )
    header = f"{'start':25s} {'end':25s} {'camera':>8s} {'score':>7s} {'crops':>5s} item"
    typer.echo(header)
    for s in found["sightings"]:
        mark = (
            ("  <- the query's track" if s["track"] is not None else "  <- the query")
            if s["query"]
            else ""
        )
        typer.echo(_sighting_line(s) + mark)
    if found["candidates"]:
        typer.echo(
            f"candidates: {len(found['candidates'])} more groups of the top {k} crops, at or "
            f"below {found['threshold']:g}: check them by eye, they are not sightings"
        )
        typer.echo(header)
        for s in found["candidates"]:
            typer.echo(_sighting_line(s))


def _sighting_line(s: dict) -> str:
    return (
        f"{s['start'] or '-':25s} {s['end'] or '-':25s} {s['camera'] or '-':>8s} "
        f"{s['score']:7.4f} {s['count']:5d} {s['item']}"
    )


@app.command()
def tracks(
    gallery: Annotated[
        str, typer.Option("--gallery", "--index", help="Gallery: folder, Milvus URI or .npz.")
    ],
    source: Annotated[
        str | None, typer.Option(help="Only the tracks of this source (a video, a stream).")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print JSON, each track with its path: [[frame, l, t, r, b]]."),
    ] = False,
) -> None:
    """The tracks of a gallery made from footage: per track its camera, first and last frame
    and time, crops and the number of boxes of its path (with --json: the path itself)."""
    from cerberus.search import Gallery

    opened = Gallery.open(gallery, model=False)
    try:
        found = opened.tracks(source)
    finally:
        opened.store.close()
    if as_json:
        typer.echo(json.dumps(found))
        return
    if not found:
        typer.echo(f"{gallery}: no tracks" + (f" of {source}" if source else ""))
        return

    def tenths(iso: str | None) -> str:
        """An ISO time to a tenth of a second (a frame at 10 fps), ``-`` when unknown."""
        if iso is None:
            return "-"
        whole, dot, rest = iso.partition(".")
        return whole + dot + rest[:1] + rest[6:] if dot else iso

    cam = max(6, *(len(t["camera"] or "-") for t in found))
    head = (
        f"{'track':>6s} {'camera':<{cam}s} {'first':>7s} {'last':>7s} {'start':27s} {'end':27s} "
        f"{'boxes':>6s} {'detected':>8s} crops"
    )
    shown = None
    for t in found:
        if t["source"] != shown:
            shown = t["source"]
            typer.echo(f"{shown}:")
            typer.echo(head)
        frames = [("-" if x is None else str(x)) for x in (t["first_frame"], t["last_frame"])]
        crops = ",".join(str(i) for i in t["crops"]) or "-"
        typer.echo(
            f"{t['track']:6d} {t['camera'] or '-':<{cam}s} {frames[0]:>7s} {frames[1]:>7s} "
            f"{tenths(t['start']):27s} {tenths(t['end']):27s} {t['boxes']:6d} {t['detected']:8d} "
            f"{crops}"
        )
