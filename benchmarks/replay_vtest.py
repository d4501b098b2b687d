"""Tracker settings on vtest.avi without a whole ingest each: the SSDLite detector's boxes on
every ``--stride``-th frame (its default tile turn, score >= 0.05) are computed once and cached
(``--cache``), then replayed through :class:`~cerberus.footage.track.BoxTracker` and
:class:`~cerberus.footage.track.PathBook` as :func:`cerberus.footage.ingest.detect_track_select`
does, and the paths of the confirmed tracks scored on the annotated frames by
``bench_vtest.score`` (recall, precision, tracks per person; no crops, no appearance links).
With the ingest's settings it gives the whole ingest's recall, precision and tracks per person.

    python benchmarks/replay_vtest.py runs/vtest/vtest.avi                   # today's default
    python benchmarks/replay_vtest.py runs/vtest/vtest.avi --score 0.3 --iou 0.3 --forecast

The greedy NMS of the detector keeps the same boxes at score >= t whether or not lower ones
were there, so one cache at 0.05 serves every ``--score`` from 0.05 up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import run_script  # noqa: E402
from bench_vtest import ANNOTATIONS, VIDEO, path_boxes, read_truth, score  # noqa: E402

from cerberus.errors import CerberusError  # noqa: E402

CACHE_SCORE = 0.05


def detector_boxes(video: Path, stride: int, cache: Path) -> dict[int, np.ndarray]:
    """Frame number -> ``(n, 5)`` boxes and scores (from the cache when it exists)."""
    if cache.exists():
        return _read(cache)
    from cerberus.footage.detectors.ssdlite import SsdLiteDetector
    from cerberus.footage.video import open_source

    # the default before the tuning set (docs/footage.md's tracker rows): 300x300 pass, tiles
    detector = SsdLiteDetector(score=CACHE_SCORE, full_size=None, tiles_per_frame=1,
                               box_shape=(1.0, 1.0))  # fmt: skip
    out = {}
    for frame in open_source(video).frames(stride):
        d = detector.detect(frame)
        out[frame.number] = np.concatenate([d.boxes, d.scores[:, None]], 1).reshape(-1, 5)
    cache.parent.mkdir(parents=True, exist_ok=True)
    frames = np.array(sorted(out), np.int64)
    np.savez(cache, frames=frames, counts=np.array([len(out[f]) for f in frames]),
             boxes=np.concatenate([out[f] for f in frames]).reshape(-1, 5))  # fmt: skip
    return out


def _read(cache: Path) -> dict[int, np.ndarray]:
    with np.load(cache) as z:
        frames, counts, boxes = z["frames"], z["counts"], z["boxes"]
    ends = np.cumsum(counts)
    return {int(f): boxes[e - c : e] for f, c, e in zip(frames, counts, ends)}


def replay(dets: dict[int, np.ndarray], args) -> tuple[dict[int, tuple], int]:
    """The paths ``track -> (frames, boxes, detected)`` of the tracks that end confirmed."""
    from cerberus.footage.detect import Detections
    from cerberus.footage.track import BoxTracker, PathBook

    steps = max(2, round(10.0 / args.stride))
    tracker = BoxTracker(max_age=steps, lost_age=max(steps, round(args.lost * 10.0 / args.stride)),
                         buffer=0.5 / steps, high_score=args.high, low_score=args.low,
                         iou_threshold=args.iou, low_iou=args.low_iou)  # fmt: skip
    book, paths = PathBook(interpolate=not args.forecast), {}

    def end(ids) -> None:
        for t in ids:
            got = book.take(t, end=True)
            if len(got[0]):
                paths[t] = got

    for number in sorted(dets):
        a = dets[number][dets[number][:, 4] >= args.score]
        update = tracker.update(Detections.of(a[:, :4], a[:, 4]))
        book.record(number, update)
        for t in update.dropped:
            book.drop(t)
        end(update.ended)
    end(tracker.close().ended)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("video", type=Path, nargs="?", default=VIDEO)
    p.add_argument("--annotations", type=Path, default=ANNOTATIONS)
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "vtest" / "ssdlite_boxes.npz")
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--score", type=float, default=0.1, help="the detector's cut")
    p.add_argument("--high", type=float, default=0.5, help="a box that may start a track")
    p.add_argument("--low", type=float, default=0.1, help="a box that may continue one")
    p.add_argument("--iou", type=float, default=0.2, help="stage-1 IoU gate")
    p.add_argument("--low-iou", type=float, default=0.5, help="stage-2 IoU gate")
    p.add_argument("--lost", type=float, default=3.0, help="seconds a lost track is kept")
    p.add_argument("--forecast", action="store_true", help="gaps: the filter's forecasts")
    args = p.parse_args()
    if args.score < CACHE_SCORE:
        raise CerberusError(f"--score {args.score}: the cache holds boxes from {CACHE_SCORE}")
    if not args.cache.exists() and not args.video.exists():
        raise CerberusError(f"{args.video}: no such video (give the path to vtest.avi)")
    truth = read_truth(args.annotations)
    paths = replay(detector_boxes(args.video, args.stride, args.cache), args)
    found = path_boxes(paths, truth.frame_numbers)
    s = score(truth, found)
    print(f"score {args.score} high {args.high} low {args.low} iou {args.iou} low_iou "
          f"{args.low_iou} lost {args.lost}s {'forecast' if args.forecast else 'line'}: "
          f"recall {s.recall:.3f} precision {s.precision:.3f} tracks/person "
          f"{s.tracks_per_person:.2f} ({len(paths)} tracks)")  # fmt: skip


if __name__ == "__main__":
    run_script(main)
