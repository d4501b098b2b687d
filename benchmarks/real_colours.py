"""Colours of the labelled real people (vtest.avi) beside the synthetic renderer's palette.

For each labelled value of ``upper`` and ``lower`` (benchmarks/data/vtest_attributes.csv): the
median over its crops of each crop's median RGB in a central band (x 35-65% of the width; y
25-45% of the height for the upper body, 60-80% for the lower), and its HSV (h in turns, s and v
in [0, 1]); then the renderer's RGB for the same names (cerberus.data.synthetic.render).
Shows whether the colour a name has in the synthetic people is the colour a real camera gives
that name.

    python benchmarks/real_colours.py --video runs/vtest/vtest.avi
"""

from __future__ import annotations

import argparse
import colorsys
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, run_script  # noqa: E402
from bench_real_par import LABELS, UNSURE, VIDEO, crop_frames, read_labels  # noqa: E402

BANDS = {"upper": (0.25, 0.45), "lower": (0.60, 0.80)}


def band_median(crop: np.ndarray, top: float, bottom: float) -> np.ndarray:
    """The median RGB ``(3,)`` of ``crop`` ``(h, w, 3)`` over x in [0.35 w, 0.65 w), y in
    [top h, bottom h)."""
    h, w = crop.shape[:2]
    band = crop[int(h * top) : max(int(h * bottom), int(h * top) + 1),
                int(w * 0.35) : max(int(w * 0.65), int(w * 0.35) + 1)]  # fmt: skip
    return np.median(band.reshape(-1, 3), axis=0)


def hsv(rgb: np.ndarray | tuple[int, int, int]) -> str:
    h, s, v = colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=float) / 255))
    return f"{h:.2f} / {s:.2f} / {v:.2f}"


def main() -> None:
    from cerberus.data.synthetic.attributes import SCHEMA
    from cerberus.data.synthetic.render import LOWER_RGB, UPPER_RGB

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--video", type=Path, default=VIDEO)
    args = ap.parse_args()
    rows = read_labels(args.labels)
    crops = crop_frames(args.video, rows)
    palettes = {"upper": UPPER_RGB, "lower": LOWER_RGB}
    table = []
    for column, (top, bottom) in BANDS.items():
        values = [a.values for a in SCHEMA.attributes if a.name == f"{column}.color"][0]
        per_value: dict[str, list[np.ndarray]] = {}
        for r, c in zip(rows, crops):
            if r[column] != UNSURE:
                per_value.setdefault(r[column], []).append(band_median(c, top, bottom))
        for value, medians in sorted(per_value.items()):
            real = np.median(medians, axis=0)
            synth = palettes[column][values.index(value)] if value in values else None
            table.append(
                [column, value, len(medians), tuple(int(round(v)) for v in real), hsv(real),
                 synth or "-", hsv(synth) if synth else "-"]
            )  # fmt: skip
    headers = ["body part", "label", "crops", "real RGB (median)", "real h / s / v",
               "renderer RGB", "renderer h / s / v"]  # fmt: skip
    print(markdown_table(headers, table))


if __name__ == "__main__":
    run_script(main)
