"""Draw the vtest.avi annotations (or proposals) on their frames, to check them by eye.

Each annotated frame is written as a PNG: the boxes with their person id (ignored people in
grey with an ``i``), a grid every 50 px labelled with its pixel coordinate and ticks every 10 px,
optionally cropped (``--crop left,top,right,bottom``) and enlarged (``--scale``). Frames are
decoded with the project's reader (:func:`cerberus.footage.video.open_source`), so frame N here
is frame N of a gallery made from the video. ``--pairs`` draws each frame beside the next
annotated one (to check that ids follow people).

    python benchmarks/data/render_vtest.py runs/vtest/vtest.avi --out runs/vtest/overlays
    python benchmarks/data/render_vtest.py runs/vtest/vtest.avi --frames 101,111 --crop 0,0,400,330
    python benchmarks/data/render_vtest.py runs/vtest/vtest.avi --also found.csv  # bench_vtest.py
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import run_script  # noqa: E402

from cerberus.errors import CerberusError  # noqa: E402
from cerberus.footage.video import open_source  # noqa: E402

HERE = Path(__file__).resolve().parent
COLOURS = [
    (255, 0, 0), (0, 90, 255), (255, 0, 255), (0, 200, 200), (255, 140, 0), (140, 0, 255),
    (0, 160, 0), (255, 255, 0), (120, 60, 0), (255, 120, 180),
]  # fmt: skip


def read_boxes(path: Path) -> dict[int, list[tuple[int, int, int, int, int, int]]]:
    """frame -> [(person, left, top, right, bottom, ignore), ...] from an annotation CSV."""
    out: dict[int, list] = defaultdict(list)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            out[int(row["frame"])].append(
                tuple(int(row[k]) for k in ("person", "left", "top", "right", "bottom", "ignore"))
            )
    return out


def draw(image: np.ndarray, boxes, crop, scale: float, title: str, also=()) -> Image.Image:
    """The frame ``(H, W, 3)`` RGB cropped to ``crop``, enlarged by ``scale``, boxes and grid;
    ``also``: more boxes (e.g. a detector's) drawn thin in white, labelled below."""
    x0, y0, x1, y1 = crop
    im = Image.fromarray(image[y0:y1, x0:x1]).resize(
        (round((x1 - x0) * scale), round((y1 - y0) * scale)), Image.BICUBIC
    )
    d = ImageDraw.Draw(im)
    W, H = im.size
    for x in range((x0 // 10 + 1) * 10, x1, 10):
        sx = (x - x0) * scale
        if x % 50 == 0:
            d.line([(sx, 0), (sx, H)], fill=(255, 255, 255), width=1)
            d.text((sx + 2, 2), str(x), fill=(255, 255, 255))
        else:
            d.line([(sx, 0), (sx, 6)], fill=(255, 255, 255))
            d.line([(sx, H - 6), (sx, H)], fill=(255, 255, 255))
    for y in range((y0 // 10 + 1) * 10, y1, 10):
        sy = (y - y0) * scale
        if y % 50 == 0:
            d.line([(0, sy), (W, sy)], fill=(255, 255, 255), width=1)
            d.text((2, sy + 2), str(y), fill=(255, 255, 255))
        else:
            d.line([(0, sy), (6, sy)], fill=(255, 255, 255))
            d.line([(W - 6, sy), (W, sy)], fill=(255, 255, 255))
    for person, left, top, right, bottom, ignore in boxes:
        colour = (160, 160, 160) if ignore else COLOURS[person % len(COLOURS)]
        box = [(left - x0) * scale, (top - y0) * scale, (right - x0) * scale, (bottom - y0) * scale]
        d.rectangle(box, outline=colour, width=2)
        label = f"{person}{'i' if ignore else ''}"
        d.rectangle([box[0], box[1] - 11, box[0] + 7 * len(label) + 3, box[1]], fill=(0, 0, 0))
        d.text((box[0] + 2, box[1] - 11), label, fill=colour)
    for person, left, top, right, bottom, _ in also:
        box = [(left - x0) * scale, (top - y0) * scale, (right - x0) * scale, (bottom - y0) * scale]
        d.rectangle(box, outline=(255, 255, 255), width=1)
        d.text((box[0] + 2, box[3] + 1), str(person), fill=(255, 255, 255))
    d.text((W - 80, H - 16), title, fill=(255, 255, 0))
    return im


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path, nargs="?", default=ROOT / "runs/vtest/vtest.avi")
    ap.add_argument("--boxes", type=Path, default=HERE / "vtest_people.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/vtest/overlays")
    ap.add_argument("--frames", default="", help="comma-separated frame numbers (default: all)")
    ap.add_argument("--crop", default="", help="left,top,right,bottom in pixels (default: all)")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--pairs", action="store_true", help="each frame beside the next one")
    ap.add_argument("--also", type=Path, default=None, help="more boxes (same CSV columns)")
    args = ap.parse_args()
    boxes = read_boxes(args.boxes)
    also = read_boxes(args.also) if args.also else {}
    wanted = sorted(int(f) for f in args.frames.split(",") if f) or sorted(boxes)
    order = sorted(boxes)
    need = set(wanted)
    if args.pairs:  # each frame's next annotated frame too
        need |= {order[order.index(f) + 1] for f in wanted if f in order[:-1]}
    images = {}
    for frame in open_source(args.video).frames():
        if frame.number in need:
            images[frame.number] = frame.image
        if frame.number >= max(need):
            break
    if need - set(images):
        raise CerberusError(f"{args.video}: has no frame {min(need - set(images))}")
    args.out.mkdir(parents=True, exist_ok=True)
    for number in wanted:
        image = images[number]
        crop = [int(v) for v in args.crop.split(",")] if args.crop else [0, 0, *image.shape[1::-1]]
        im = draw(image, boxes[number], crop, args.scale, f"frame {number}", also.get(number, ()))
        if args.pairs and number in order[:-1]:
            nxt = order[order.index(number) + 1]
            im2 = draw(images[nxt], boxes[nxt], crop, args.scale, f"frame {nxt}", also.get(nxt, ()))
            both = Image.new("RGB", (im.width, im.height * 2 + 4), (0, 0, 0))
            both.paste(im, (0, 0))
            both.paste(im2, (0, im.height + 4))
            im = both
        im.save(args.out / f"{number:04d}{'_pair' if args.pairs else ''}.png")
    print(f"{len(wanted)} overlay(s) in {args.out}")


if __name__ == "__main__":
    run_script(main)
