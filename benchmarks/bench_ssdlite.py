"""Speed and recall of the SSDLite person detector on real frames, per tile schedule (full pass
alone, full pass + k round-robin tiles in one batch) and score threshold.

Speed: wall milliseconds per ``detect`` call (mean over ``--frames`` frames), per video frame
at the detection stride, and the CPU time per call summed over threads (``process_time``: on a
machine shared with other work, ``--threads 1`` CPU time is the cost on one free core).
Recall: the detector runs on every ``--stride``-th frame from frame 1 to the last annotated
frame of ``--annotations`` (the hand-made vtest.avi boxes,
``benchmarks/data/vtest_people.csv``; no tracker), and its boxes on the annotated frames are
matched one to one to the people at IoU >= 0.5 (the most pairs, then the highest IoU sum);
recall = matched / people not ignored; precision = matched / boxes, a box over an ignored person
(IoU >= 0.5 or at least half inside) counting neither way.

Usage: python benchmarks/bench_ssdlite.py [--video runs/vtest/vtest.avi] [--frames 40]
    [--threads 2] [--stride 2] [--annotations CSV] [--no-recall]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
from _common import markdown_table, print_machine, run_script

from cerberus.errors import CerberusError
from cerberus.footage.detect import iou_matrix
from cerberus.footage.detectors.ssdlite import SsdLiteDetector
from cerberus.footage.video import Frame, open_source

ANNOTATIONS = Path(__file__).parent / "data" / "vtest_people.csv"
SCHEDULES = [(0, 1, 0.3), (1, 2, 0.3), (1, 2, 0.2), (1, 1, 0.3), (4, 1, 0.3)]
"""``(tiles_per_frame, tile_every, min_score)`` measured for recall; the first two for speed."""
OLD = {"full_size": None, "box_shape": (1.0, 1.0)}
"""The 300x300 full pass and the detector's own box shapes, as docs/footage.md's schedule table
was measured (the default now is a 448-px pass with reshaped boxes: tune_vtest.py)."""


def read_frames(video: Path, count: int) -> list[Frame]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(Frame(len(frames) + 1, len(frames) / 10, float("nan"), bgr[..., ::-1]))
    if not frames:
        raise CerberusError(f"{video}: no frames read")
    return frames


def read_annotations(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``frame -> (people (n, 4), ignored (k, 4))`` boxes."""
    if not path.is_file():
        raise CerberusError(f"{path}: annotations not found (give --annotations or --no-recall)")
    out: dict[int, tuple[list, list]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            box = [float(row[k]) for k in ("left", "top", "right", "bottom")]
            people, ignored = out.setdefault(int(row["frame"]), ([], []))
            (ignored if row["ignore"] == "1" else people).append(box)
    return {
        f: (np.reshape(p, (-1, 4)), np.reshape(i, (-1, 4))) for f, (p, i) in sorted(out.items())
    }


def score_frame(boxes: np.ndarray, people: np.ndarray, ignored: np.ndarray) -> tuple[int, int]:
    """``(matched, counted boxes)`` of one frame (see the module doc)."""
    from scipy.optimize import linear_sum_assignment

    matched = 0
    free = np.ones(len(boxes), bool)
    if len(boxes) and len(people):
        iou = iou_matrix(boxes, people)
        ok = iou >= 0.5
        # a valid pair always beats any number of invalid ones: most pairs, then IoU sum
        cost = np.where(ok, 1.0 - iou, 2.0 * (min(iou.shape) + 1))
        rows, cols = linear_sum_assignment(cost)
        pairs = [(r, c) for r, c in zip(rows, cols) if ok[r, c]]
        matched = len(pairs)
        free[[r for r, _ in pairs]] = False
    if free.any() and len(ignored):
        left = boxes[free]
        w = np.minimum(left[:, None, 2], ignored[None, :, 2]) - np.maximum(
            left[:, None, 0], ignored[None, :, 0]
        )
        h = np.minimum(left[:, None, 3], ignored[None, :, 3]) - np.maximum(
            left[:, None, 1], ignored[None, :, 1]
        )
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        area = np.maximum((left[:, 2] - left[:, 0]) * (left[:, 3] - left[:, 1]), 1e-9)
        excused = ((iou_matrix(left, ignored) >= 0.5) | (inter / area[:, None] >= 0.5)).any(1)
        free[np.flatnonzero(free)[excused]] = False
    return matched, matched + int(free.sum())


def label(tiles: int, every: int) -> str:
    if not tiles:
        return "full pass"
    return f"full + {tiles} tile(s)" + (f" every {every} calls" if every > 1 else " every call")


def recall_rows(video: Path, annotations: Path, stride: int, threads: int) -> list[list]:
    truth = read_annotations(annotations)
    last = max(truth)
    rows = []
    for tiles, every, min_score in SCHEDULES:
        detector = SsdLiteDetector(
            tiles_per_frame=tiles, tile_every=every, score=min_score, threads=threads, **OLD
        )
        matched = counted = people = 0
        for frame in open_source(video).frames():
            if frame.number > last:
                break
            if (frame.number - 1) % stride:
                continue
            dets = detector.detect(frame)
            if frame.number in truth:
                p, ignored = truth[frame.number]
                m, c = score_frame(dets.boxes, p, ignored)
                matched, counted, people = matched + m, counted + c, people + len(p)
        rows.append(
            [
                label(tiles, every),
                min_score,
                f"{matched / max(people, 1):.3f}",
                f"{matched / max(counted, 1):.3f}",
                f"{matched} / {people}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=Path("runs/vtest/vtest.avi"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--annotations", type=Path, default=ANNOTATIONS)
    parser.add_argument("--no-recall", action="store_true")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    frames = read_frames(args.video, args.frames)
    print_machine()
    print(f"# load average before: {os.getloadavg()[0]:.2f}")
    if not args.no_recall:
        rows = recall_rows(args.video, args.annotations, args.stride, args.threads)
        print(f"# recall: every {args.stride}th frame detected; scored on the annotated frames")
        print(markdown_table(["schedule", "min score", "recall", "precision", "matched"], rows))
        print(f"# load average: {os.getloadavg()[0]:.2f}")
    if args.no_speed:
        return
    rows = []
    for tiles, every in sorted({(t, e) for t, e, _ in SCHEDULES}):
        detector = SsdLiteDetector(
            tiles_per_frame=tiles, tile_every=every, threads=args.threads, **OLD
        )
        for frame in frames[:3]:
            detector.detect(frame)  # warm-up
        times, cpu, found = [], [], 0
        for frame in frames:
            start, start_cpu = time.perf_counter(), time.process_time()
            found += len(detector.detect(frame))
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        ms = sum(times) / len(times) * 1000
        rows.append(
            [
                label(tiles, every),
                1 + tiles,
                f"{ms:.0f}",
                f"{ms / args.stride:.0f}",
                f"{sum(cpu) / len(cpu) * 1000:.0f}",
                f"{found / len(frames):.1f}",
            ]
        )
    print(
        markdown_table(
            [
                "schedule",
                "images per batch (max)",
                "ms per call (mean)",
                f"ms per video frame at stride {args.stride}",
                "CPU ms per call (mean, all threads)",
                "boxes per call",
            ],
            rows,
        )
    )
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    run_script(main)
