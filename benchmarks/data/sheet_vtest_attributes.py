"""Draw every labelled crop of vtest_attributes.csv with its person and labels, to check them.

    python benchmarks/data/sheet_vtest_attributes.py runs/vtest/vtest.avi --out sheet.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import run_script  # noqa: E402
from bench_real_par import LABELS, crop_frames, read_labels  # noqa: E402


def main() -> None:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--columns", type=int, default=13)
    args = ap.parse_args()
    rows = read_labels(args.labels)
    crops = crop_frames(args.video, rows)
    h, w, cols = 180, 84, args.columns
    lines = (len(rows) + cols - 1) // cols
    sheet = np.full((lines * (h + 30), cols * (w + 4), 3), 255, np.uint8)
    for n, (r, crop) in enumerate(zip(rows, crops)):
        scale = min(h / crop.shape[0], w / crop.shape[1])
        size = (int(crop.shape[1] * scale), int(crop.shape[0] * scale))
        small = cv2.resize(crop[:, :, ::-1], size, interpolation=cv2.INTER_CUBIC)
        y, x = (n // cols) * (h + 30), (n % cols) * (w + 4)
        sheet[y : y + size[1], x : x + size[0]] = small
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(sheet, f"{r['person']} f{r['frame']}", (x, y + h + 12), font, 0.35, 0, 1)
        text = f"{r['gender'][0]} {r['upper'][:4]} {r['lower'][:4]}"
        cv2.putText(sheet, text, (x, y + h + 25), font, 0.35, (0, 0, 200), 1)
    cv2.imwrite(str(args.out), sheet)
    print(f"{len(rows)} crops -> {args.out}")


if __name__ == "__main__":
    run_script(main)
