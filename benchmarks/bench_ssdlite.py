"""Speed of the SSDLite person detector on real frames: milliseconds per ``detect`` call for
tile schedules (full pass alone, full pass + k tiles in one batch), and per video frame at a
detection stride.

Usage: python benchmarks/bench_ssdlite.py [--video /work/data/vtest.avi] [--frames 40]
    [--threads 2] [--stride 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import markdown_table, median, print_machine, run_script

from cerberus.errors import CerberusError
from cerberus.footage.detectors.ssdlite import SsdLiteDetector
from cerberus.footage.video import Frame


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=Path("/work/data/vtest.avi"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stride", type=int, default=2)
    args = parser.parse_args()
    frames = read_frames(args.video, args.frames)
    print_machine()
    print(f"# load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    for tiles in (0, 1, 2, 4):
        detector = SsdLiteDetector(tiles_per_frame=tiles, threads=args.threads)
        for frame in frames[:3]:
            detector.detect(frame)  # warm-up
        times, found = [], 0
        for frame in frames:
            start = time.perf_counter()
            found += len(detector.detect(frame))
            times.append(time.perf_counter() - start)
        ms = median(times) * 1000
        rows.append(
            [
                f"full + {tiles} tile(s)",
                1 + tiles,
                f"{ms:.0f}",
                f"{ms / args.stride:.0f}",
                f"{found / len(frames):.1f}",
            ]
        )
    print(
        markdown_table(
            [
                "schedule",
                "images per batch",
                "ms per call (median)",
                f"ms per video frame at stride {args.stride}",
                "boxes per call",
            ],
            rows,
        )
    )
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    run_script(main)
