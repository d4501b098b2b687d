"""Choose SSDLite and tracker settings on vtest.avi from cached detector passes, scored on the
tuning annotations (``benchmarks/data/vtest_people_tune.csv``, frames 451-741, and
``vtest_people_tune_early.csv``, frames 1-91) by default, so that the scored set
(``vtest_people.csv``, frames 101-391) is kept for the final figures.

The detector's boxes are computed once per frame for the full 300x300 pass and for every
window of a tile grid (``--grids``; score >= 0.05, each pass after the graph's own NMS) and
cached (``--cache``). A setting is then replayed without running the network again: on every
``--stride``-th frame the schedule's passes are taken from the cache and merged exactly as
:meth:`~cerberus.footage.detectors.ssdlite.SsdLiteDetector.merge` does (edge cut, NMS, box
reshape), fed to :class:`~cerberus.footage.track.BoxTracker` and
:class:`~cerberus.footage.track.PathBook` as the ingest does, and the paths of the confirmed
tracks scored by ``bench_vtest.score`` (recall, precision, tracks per person). Replayed with
the ingest's settings it gives the whole ingest's recall, precision and tracks per person
(crops and appearance links aside); the time a schedule costs is measured by the whole ingest
(``bench_vtest.py``), not here.

    python benchmarks/tune_vtest.py runs/vtest/vtest.avi             # the default
    python benchmarks/tune_vtest.py --full-size 300x300 --tiles 1 --box-scale 1,1 --high 0.5
    python benchmarks/tune_vtest.py --box-scale 1,1 --fit-shape      # the box-shape fit
    python benchmarks/tune_vtest.py --cross-iou 0.3 --cover-iou 0.6  # tried, off by default

``--fit-shape`` pairs the detector's own boxes (default schedule, every annotated frame, score
>= ``--score``) with the annotated people (Hungarian on IoU >= 0.3) and prints the median
ratio of the hand-drawn width and height to the detector's, and the median centre offsets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import run_script  # noqa: E402
from bench_vtest import (  # noqa: E402
    VIDEO,
    FrameBoxes,
    iou_matrix,
    match,
    path_boxes,
    read_truths,
    score,
)

from cerberus.errors import CerberusError  # noqa: E402

CACHE_SCORE = 0.05
TUNE = [ROOT / "benchmarks" / "data" / f"vtest_people_tune{part}.csv" for part in ("", "_early")]


def _numbers(text: str, kind=float) -> tuple:
    return tuple(kind(v) for v in text.split(","))


class PassCache:
    """The cached passes: for frame ``f`` and window ``w`` (0: the whole frame, then the
    windows of each grid in ``grids`` row by row), ``(boxes (n, 4), scores (n,))``."""

    def __init__(self, rows: np.ndarray, grids: tuple[int, ...], size: tuple[int, int]) -> None:
        self.grids, self.size = grids, size
        self.by: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        order = np.lexsort((rows[:, 1], rows[:, 0]))
        rows = rows[order]
        keys = rows[:, :2].astype(np.int64)
        cut = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
        for part in np.split(rows, cut):
            if len(part):
                self.by[(int(part[0, 0]), int(part[0, 1]))] = (part[:, 2:6], part[:, 6])
        self.frames = sorted({f for f, _ in self.by} | set(range(1, int(rows[:, 0].max()) + 1)))

    def get(self, frame: int, window: int) -> tuple[np.ndarray, np.ndarray]:
        return self.by.get((frame, window), (np.zeros((0, 4), np.float32), np.zeros(0)))

    def windows(self, grid: int) -> tuple[int, list[tuple[int, ...]]]:
        """The first window index of ``grid``'s tiles and the tiles."""
        from cerberus.footage.detectors.ssdlite import tile_windows

        first = 1
        for g in self.grids:
            if g == grid:
                return first, tile_windows(*self.size, g, 0.25)
            first += g * g
        raise CerberusError(f"--grid {grid}: not cached (cached grids: {self.grids})")


def build_cache(video: Path, grids: tuple[int, ...], cache: Path) -> PassCache:
    """Run every pass on every frame once and save them (``frame, window, box, score`` rows)."""
    from cerberus.footage.detectors.ssdlite import SsdLiteDetector, tile_windows
    from cerberus.footage.video import open_source

    detector = SsdLiteDetector(score=CACHE_SCORE)
    rows, size = [], None
    for frame in open_source(video).frames():
        h, w = frame.image.shape[:2]
        size = (w, h)
        windows = [(0, 0, w, h)] + [t for g in grids for t in tile_windows(w, h, g, 0.25)]
        for k, (b, s) in enumerate(detector.passes(frame.image, windows)):
            for box, sc in zip(b, s):
                rows.append([frame.number, k, *box, sc])
        if frame.number % 100 == 0:
            print(f"cached frame {frame.number}", flush=True)
    a = np.asarray(rows, np.float32).reshape(-1, 7)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, rows=a, grids=np.asarray(grids), size=np.asarray(size))
    return PassCache(a, grids, size)


def load_cache(video: Path, grids: tuple[int, ...], cache: Path) -> PassCache:
    if cache.exists():
        with np.load(cache) as z:
            got = tuple(int(g) for g in z["grids"])
            if set(grids) <= set(got):
                return PassCache(z["rows"], got, tuple(int(v) for v in z["size"]))
    if not video.exists():
        raise CerberusError(f"{video}: no such video (give the path to vtest.avi)")
    return build_cache(video, grids, cache)


def _cached_rows(video: Path, stride: int, path: Path, windows, size=(300, 300)) -> np.ndarray:
    """``(m, 7)`` rows ``[frame, k, left, top, right, bottom, score]``: the network's boxes in
    the ``k``-th window (from 1) of ``windows(width, height)`` on every ``stride``-th frame, at
    input ``size`` ``(height, width)`` (default: the trained 300x300); run once, then read
    from ``path``."""
    if not path.exists():
        from cerberus.footage.detectors.ssdlite import SsdLiteDetector
        from cerberus.footage.video import open_source

        detector = SsdLiteDetector(score=CACHE_SCORE)
        rows = []
        for frame in open_source(video).frames(stride):
            h, w = frame.image.shape[:2]
            for k, (b, s) in enumerate(detector.passes(frame.image, windows(w, h), size)):
                rows += [[frame.number, k + 1, *box, sc] for box, sc in zip(b, s)]
        np.savez(path, rows=np.asarray(rows, np.float32).reshape(-1, 7))
    with np.load(path) as z:
        return z["rows"]


def _grouped(rows: np.ndarray, key) -> dict:
    """``key(row) -> (boxes (n, 4), scores (n,))`` of the rows sharing that key."""
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r[2:])
    return {k: (np.asarray(v)[:, :4], np.asarray(v)[:, 4]) for k, v in out.items()}


def full_passes(video: Path, size: tuple[int, int], stride: int, folder: Path) -> dict:
    """Frame -> the full frame's pass at input ``size`` ``(height, width)`` on every
    ``stride``-th frame (cached in ``folder``)."""
    path = folder / f"ssdlite_full_{size[0]}x{size[1]}_stride{stride}.npz"
    rows = _cached_rows(video, stride, path, lambda w, h: [(0, 0, w, h)], size)
    return _grouped(rows, lambda r: int(r[0]))


def tile_passes(video: Path, grid: int, stride: int, folder: Path) -> dict:
    """``(frame, k) -> (boxes, scores)``: the ``k``-th tile (from 1) of a ``grid x grid`` at
    the trained 300x300 on every ``stride``-th frame (cached in ``folder``)."""
    from cerberus.footage.detectors.ssdlite import tile_windows

    path = folder / f"ssdlite_tiles_grid{grid}_stride{stride}.npz"
    rows = _cached_rows(video, stride, path, lambda w, h: tile_windows(w, h, grid, 0.25))
    return _grouped(rows, lambda r: (int(r[0]), int(r[1])))


def detections(cache: PassCache, args):
    """Frame number -> :class:`~cerberus.footage.detect.Detections` of the schedule in
    ``args`` (stride, tiles per call, tile every, grid, score, box scale)."""
    from cerberus.footage.detectors.ssdlite import SsdLiteDetector

    merger = SsdLiteDetector.__new__(SsdLiteDetector)  # merge() needs only these fields
    merger.score, merger.merge_iou, merger.edge_margin = args.score, 0.5, 4.0
    merger.box_shape, merger.tile_score = args.box_scale, args.tile_score or args.score
    merger.cross_iou = args.cross_iou
    weak = args.tile_rule == "weak" and args.tiles
    if weak:
        from cerberus.footage.detectors.ssdlite import tile_windows, weak_tiles

        first, tiles = 1, tile_windows(*cache.size, args.grid, 0.25)
        looks = tile_passes(args.video, args.grid, args.stride, args.cache.parent)
    else:
        first, tiles = cache.windows(args.grid) if args.tiles else (1, [])
    out, turn, searched = {}, 0, 0
    width, height = cache.size
    nothing = (np.zeros((0, 4), np.float32), np.zeros(0))
    for call, number in enumerate(range(1, cache.frames[-1] + 1, args.stride)):
        chosen: list[int] = []
        if weak:
            whole = cache.get(number, 0) if args.full is None else args.full.get(number, nothing)
            keep = whole[1] >= args.score
            if call % args.tile_every == 0:
                chosen = weak_tiles(whole[0][keep], whole[1][keep], tiles, args.weak, args.tiles)
            results = [whole] + [looks.get((number, first + i), nothing) for i in chosen]
            out[number] = merger.merge(results, [tiles[i] for i in chosen], width, height)
            searched += len(chosen)
            continue
        if args.tiles and call % args.tile_every == 0:
            chosen = [(turn + i) % len(tiles) for i in range(args.tiles)]
            turn = (turn + args.tiles) % len(tiles)
        whole = cache.get(number, 0) if args.full is None else args.full.get(
            number, (np.zeros((0, 4), np.float32), np.zeros(0)))
        results = [whole] + [cache.get(number, first + i) for i in chosen]
        out[number] = merger.merge(results, [tiles[i] for i in chosen], width, height)
        searched += len(chosen)
    args.tiles_per_call = searched / max(1, len(out))  # printed with the scores
    return out


def replay(dets: dict, args) -> dict[int, tuple]:
    """The paths ``track -> (frames, boxes, detected)`` of the tracks that end confirmed."""
    from cerberus.footage.track import BoxTracker, PathBook

    steps = max(2, round(10.0 / args.stride))
    tracker = BoxTracker(
        max_age=steps, lost_age=max(steps, round(args.lost * 10.0 / args.stride)),
        buffer=0.5 / steps, high_score=args.high, low_score=args.low,
        iou_threshold=args.iou, low_iou=args.low_iou, min_hits=args.min_hits,
    )  # fmt: skip
    gap = max(1, round(args.max_gap * 10.0)) if args.max_gap else None
    book, paths = PathBook(max_gap=gap, cover_iou=args.cover_iou or None), {}

    def end(ids) -> None:
        for t in ids:
            got = book.take(t, end=True)
            if len(got[0]):
                paths[t] = got

    for number in sorted(dets):
        update = tracker.update(dets[number])
        book.record(number, update)
        for t in update.dropped:
            book.drop(t)
        end(update.ended)
    end(tracker.close().ended)
    return paths


def fit_shape(truth, dets: dict) -> None:
    """Median hand / detector width and height ratios and centre offsets over pairs at IoU
    >= 0.3 (detector boxes as given, i.e. before any ``--box-scale`` when it is 1,1)."""
    rw, rh, dx, dy = [], [], [], []
    for f in truth.frame_numbers:
        rows = truth.at(f)
        keep = rows[~truth.ignore[rows]]
        d = dets.get(f)
        if d is None or not len(d):
            continue
        hand = truth.boxes[keep]
        for r, c in match(iou_matrix(hand, d.boxes), 0.3):
            h, b = hand[r], d.boxes[c].astype(np.float64)
            wb, hb = b[2] - b[0], b[3] - b[1]
            rw.append((h[2] - h[0]) / wb)
            rh.append((h[3] - h[1]) / hb)
            dx.append(((h[0] + h[2]) - (b[0] + b[2])) / 2 / wb)
            dy.append(((h[1] + h[3]) - (b[1] + b[3])) / 2 / hb)
    q = [25, 50, 75]
    print(f"{len(rw)} pairs at IoU >= 0.3; quartiles (25/50/75 %):")
    print("  hand width / detector width  ", np.round(np.percentile(rw, q), 3))
    print("  hand height / detector height", np.round(np.percentile(rh, q), 3))
    print("  centre offset x / det width  ", np.round(np.percentile(dx, q), 3))
    print("  centre offset y / det height ", np.round(np.percentile(dy, q), 3))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("video", type=Path, nargs="?", default=VIDEO)
    p.add_argument("--annotations", type=Path, nargs="+", default=TUNE,
                   help="annotation files (default: both tuning sets, frames 1-91, 451-741)")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "vtest" / "ssdlite_passes.npz")
    p.add_argument("--grids", type=lambda t: _numbers(t, int), default=(2,),
                   help="tile grids to cache, e.g. 2 or 2,3")  # fmt: skip
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--tiles", type=int, default=1, help="tiles per call beside the full pass")
    p.add_argument("--tile-every", type=int, default=2)
    p.add_argument("--grid", type=int, default=3)
    p.add_argument("--tile-rule", choices=("turn", "weak"), default="weak",
                   help="turn: tiles in turn; weak: where the full pass has weak or "
                        "overlapping boxes (tiles at stride --stride, cached)")
    p.add_argument("--weak", type=float, default=0.5, help="weak_score of --tile-rule weak")
    p.add_argument("--tile-score", type=float, default=0.4, help="a tile box's score (0: --score)")
    p.add_argument("--cross-iou", type=float, default=None,
                   help="a full-pass box and a tile box overlapping more are merged (ssdlite's "
                        "cross_iou; default: 0.5, as within a pass)")  # fmt: skip
    p.add_argument("--score", type=float, default=0.1, help="the detector's cut")
    p.add_argument("--box-scale", type=_numbers, default=(0.85, 1.0, 0.09, 0.03),
                   help="sx,sy[,dx,dy]: width, height factors, centre shifts (of w, h)")
    p.add_argument("--scale-after", action="store_true",
                   help="track the detector's boxes, reshape the path boxes after")
    p.add_argument("--full-size", default="336x448", help="the full pass's input HxW")
    p.add_argument("--high", type=float, default=0.2, help="a box that may start a track")
    p.add_argument("--low", type=float, default=0.1, help="a box that may continue one")
    p.add_argument("--iou", type=float, default=0.2, help="stage-1 IoU gate")
    p.add_argument("--low-iou", type=float, default=0.5, help="stage-2 IoU gate")
    p.add_argument("--lost", type=float, default=3.0, help="seconds a lost track is kept")
    p.add_argument("--max-gap", type=float, default=1.0,
                   help="seconds: a longer gap in a path is left empty (ssdlite's path_gap; "
                        "0: every gap filled)")  # fmt: skip
    p.add_argument("--cover-iou", type=float, default=0.0,
                   help="a gap's path box overlapping another track's detected box at this IoU "
                        "or more is left out (ssdlite's path_cover; 0: kept)")  # fmt: skip
    p.add_argument("--min-hits", type=int, default=3, help="matches before a track is confirmed")
    p.add_argument("--raw", type=float, default=None,
                   help="score the detector's boxes at this score and up (no tracker)")
    p.add_argument("--fit-shape", action="store_true", help="fit the box shape, no tracker")
    p.add_argument("--label", default="")
    args = p.parse_args()
    if args.score < CACHE_SCORE:
        raise CerberusError(f"--score {args.score}: the cache holds boxes from {CACHE_SCORE}")
    truth = read_truths(args.annotations)
    names = "+".join(a.name for a in args.annotations)
    turns = args.grid if args.tile_rule == "turn" else args.grids[0]  # weak: its own cache
    cache = load_cache(args.video, tuple(sorted(set(args.grids) | {turns})), args.cache)
    args.full = None
    if args.full_size != "300x300":
        size = tuple(int(v) for v in args.full_size.split("x"))
        args.full = full_passes(args.video, size, args.stride, args.cache.parent)
    dets = detections(cache, args)
    if args.fit_shape:
        fit_shape(truth, dets)
        return
    if args.raw is not None:
        found = {}
        for f in truth.frame_numbers:
            d = dets[f]
            keep = d.scores >= args.raw
            found[f] = FrameBoxes(-np.arange(1, int(keep.sum()) + 1), d.boxes[keep].astype(float))
        s = score(truth, found)
        print(f"{args.label or 'raw'} [{names}]: detector alone >= {args.raw}: "
              f"recall {s.recall:.3f} precision {s.precision:.3f} ({s.boxes} boxes)")
        return
    if args.scale_after:
        from cerberus.footage.detectors.ssdlite import reshape_boxes

        shape, args.box_scale = args.box_scale, (1.0, 1.0, 0.0, 0.0)
        dets = detections(cache, args)
    paths = replay(dets, args)
    if args.scale_after:
        paths = {t: (f, reshape_boxes(b, shape), d) for t, (f, b, d) in paths.items()}
    s = score(truth, path_boxes(paths, truth.frame_numbers))
    print(f"{args.label or 'setting'} [{names}]: recall {s.recall:.3f} "
          f"precision {s.precision:.3f} tracks/person {s.tracks_per_person:.2f} "
          f"({len(paths)} tracks, {s.boxes} boxes; "
          f"tiles searched per call {args.tiles_per_call:.2f})")  # fmt: skip


if __name__ == "__main__":
    run_script(main)
