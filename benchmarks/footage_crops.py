"""Crops of synthetic footage's ground-truth boxes, named as Market-1501 crops, for
``cerberus extract`` (``bench_recall.py --kind model`` embeds them with a model).

``cerberus synth footage --frames`` writes MOTChallenge sequences (``camN/img1/000001.jpg``,
``camN/gt/gt.txt``: frame, id, left, top, width, height, conf, class, visibility); every box at
least ``--min-height`` pixels tall and ``--min-visibility`` visible is cut out and saved as
``{id:04d}_c{N}s1_{frame:06d}_00.jpg``.

    cerberus synth footage --out F --cameras 4 --seconds 120 --people 60 --frames --no-video
    python benchmarks/footage_crops.py F crops/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import run_script
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("footage", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--min-height", type=int, default=40)
    parser.add_argument("--min-visibility", type=float, default=0.5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for cam in sorted(args.footage.glob("cam*/gt/gt.txt")):
        seq = cam.parent.parent
        number = int(seq.name[3:])
        gt = np.loadtxt(cam, delimiter=",", ndmin=2)
        keep = (gt[:, 5] >= args.min_height) & (gt[:, 8] >= args.min_visibility)
        for frame in np.unique(gt[keep, 0]).astype(int):
            image = Image.open(seq / "img1" / f"{frame:06d}.jpg").convert("RGB")
            for row in gt[keep & (gt[:, 0] == frame)]:
                left, top, w, h = (float(x) for x in row[2:6])
                right, bottom = min(image.width, left + w), min(image.height, top + h)
                box = (max(0, left), max(0, top), right, bottom)
                name = f"{int(row[1]):04d}_c{number}s1_{frame:06d}_00.jpg"
                image.crop(tuple(round(x) for x in box)).save(args.out / name, quality=95)
                written += 1
    print(f"{written} crops written to {args.out}")


if __name__ == "__main__":
    run_script(main)
