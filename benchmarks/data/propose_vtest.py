"""Box proposals for annotating vtest.avi by eye (the starting point of vtest_people.csv, not
the annotation itself): OpenCV's MOG2 background subtraction over the whole video (moving
blobs) and OpenCV's HOG people detector at upscale 1.5 on the annotated frames. Proposals are
linked across the annotated frames by nearest box centre to suggest identities. The output is a
CSV in the annotation's columns, which a person then corrects by eye (render_vtest.py draws it).

    python benchmarks/data/propose_vtest.py runs/vtest/vtest.avi --out proposals.csv
    python benchmarks/data/propose_vtest.py runs/vtest/vtest.avi --frames 451,741,10 --out tune.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import run_script  # noqa: E402

from cerberus.footage.video import open_source  # noqa: E402


def hog_boxes(hog, grey: np.ndarray, upscale: float = 1.5) -> list[list[float]]:
    big = cv2.resize(grey, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)
    rects, weights = hog.detectMultiScale(big, winStride=(8, 8), padding=(8, 8), scale=1.05)
    out = []
    for (x, y, w, h), s in zip(rects, np.asarray(weights).reshape(-1)):
        if s < 0.3:
            continue
        cx, cy = (x + w / 2) / upscale, (y + h / 2) / upscale
        hw, hh = w / upscale * 0.3, h / upscale * 0.42  # the window shrunk to the person
        out.append([cx - hw, cy - hh, cx + hw, cy + hh, float(s)])
    return nms(out)


def nms(boxes: list[list[float]], iou_max: float = 0.4) -> list[list[float]]:
    boxes = sorted(boxes, key=lambda b: -b[4])
    kept: list[list[float]] = []
    for b in boxes:
        if all(iou(b, k) < iou_max for k in kept):
            kept.append(b)
    return kept


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def blob_boxes(mask: np.ndarray) -> list[list[float]]:
    mask = (mask > 200).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return [
        [float(x), float(y), float(x + w), float(y + h), 0.0]
        for x, y, w, h, area in stats[1:count]
        if h >= 25 and area >= 150
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", default="101,391,10", help="first,last,step (the scored set)")
    args = ap.parse_args()
    first, last, step = (int(v) for v in args.frames.split(","))
    frames = list(range(first, last + 1, step))
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    mog = cv2.createBackgroundSubtractorMOG2(history=300, varThreshold=16, detectShadows=True)
    rows = []
    tracks: list[tuple[int, list[float]]] = []  # (id, last box)
    next_id = 1
    for frame in open_source(args.video).frames():
        if frame.number > frames[-1]:
            break
        grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        mask = mog.apply(grey)
        if frame.number not in frames:
            continue
        boxes = hog_boxes(hog, grey)
        for blob in blob_boxes(mask):
            if all(iou(blob, b) < 0.2 for b in boxes):
                boxes.append(blob)
        linked = []
        for b in boxes:
            c = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
            best, dist = None, 40.0
            for tid, last in tracks:
                d = np.hypot(*(c - [(last[0] + last[2]) / 2, (last[1] + last[3]) / 2]))
                if d < dist and tid not in [t for t, _ in linked]:
                    best, dist = tid, d
            if best is None:
                best, next_id = next_id, next_id + 1
            linked.append((best, b))
        tracks = [t for t in tracks if t[0] not in [i for i, _ in linked]] + linked
        for tid, b in linked:
            rows.append([frame.number, tid, *(int(round(v)) for v in b[:4]), 0])
        print(f"frame {frame.number}: {len(linked)} proposals", flush=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "person", "left", "top", "right", "bottom", "ignore"])
        w.writerows(rows)


if __name__ == "__main__":
    run_script(main)
