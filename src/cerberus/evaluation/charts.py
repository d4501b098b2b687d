"""Line charts drawn with Pillow: metric curves over the values of one parameter (Fig. 10).

Values are placed at equally spaced x positions in the order given (the paper's Fig. 10 plots
each parameter's grid values side by side, not on a numeric axis); each curve is a polyline
with a marker per value and, where a spread is given, an error bar of +- that spread.
Pillow, not matplotlib: matplotlib is not a dependency (the ``figures`` extra is
scikit-learn only), and these few lines and markers need no more.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cerberus.errors import CerberusError
from cerberus.evaluation.figures import _draw_text, _text_width, save_png

CURVE_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))
PLOT_WIDTH, PLOT_HEIGHT = 420, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 30, 58
TICK = 4


def _nice_range(values: np.ndarray) -> tuple[float, float, float]:
    """``(low, high, step)``: a y range covering ``values`` with some room, both ends
    multiples of a round tick step (1, 2, 5, 10, 20 or 50) giving at most 8 ticks."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = max(1.0, 0.05 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    for step in (1.0, 2.0, 5.0, 10.0, 20.0, 50.0):
        if (np.ceil(hi / step) - np.floor(lo / step)) <= 7:
            break
    return float(np.floor(lo / step) * step), float(np.ceil(hi / step) * step), step


def line_chart(
    out: str | os.PathLike,
    x_labels: Sequence[str],
    curves: dict[str, tuple[Sequence[float], Sequence[float] | None]],
    *,
    title: str,
    x_title: str,
    y_title: str = "%",
    marked: int | None = None,
) -> Path:
    """Write a PNG line chart of named curves over categorical x values.

    Args:
        out: the PNG file.
        x_labels: the x values as text, length n (equally spaced, in this order).
        curves: ``{name: (means (n,), spreads (n,) or None)}``; NaN means are skipped.
        title: figure title; ``x_title`` / ``y_title`` the axis titles.
        marked: index of an x value to mark (the default configuration), drawn underlined.

    Returns:
        The written path.
    """
    n = len(x_labels)
    if n < 1 or not curves:
        raise CerberusError("line_chart: needs at least one x value and one curve")
    for name, (means, spreads) in curves.items():
        if len(means) != n or (spreads is not None and len(spreads) != n):
            raise CerberusError(f"line_chart: curve {name!r} needs {n} values")
    allv = []
    for means, spreads in curves.values():
        m = np.asarray(means, dtype=np.float64)
        s = np.zeros(n) if spreads is None else np.nan_to_num(np.asarray(spreads, np.float64))
        allv += [m - s, m + s]
    y0, y1, step = _nice_range(np.concatenate(allv))
    legend_h = 14 * len(curves)
    w, h = LEFT + PLOT_WIDTH + RIGHT, TOP + PLOT_HEIGHT + BOTTOM + legend_h
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    _draw_text(draw, (max(4, (w - _text_width(title, 13)) // 2), 6), title, 13)

    def px(i: int) -> float:
        return LEFT + (i + 0.5) * PLOT_WIDTH / n

    def py(v: float) -> float:
        return TOP + (y1 - v) / (y1 - y0) * PLOT_HEIGHT

    draw.rectangle((LEFT, TOP, LEFT + PLOT_WIDTH, TOP + PLOT_HEIGHT), outline=(0, 0, 0))
    for k in range(int(round((y1 - y0) / step)) + 1):
        v = y0 + k * step
        y = py(v)
        draw.line((LEFT - TICK, y, LEFT, y), fill=(0, 0, 0))
        draw.line((LEFT + 1, y, LEFT + PLOT_WIDTH - 1, y), fill=(232, 232, 232))
        label = f"{v:.0f}"
        _draw_text(draw, (LEFT - TICK - 2 - _text_width(label), int(y) - 6), label)
    for i, label in enumerate(x_labels):
        x = px(i)
        draw.line((x, TOP + PLOT_HEIGHT, x, TOP + PLOT_HEIGHT + TICK), fill=(0, 0, 0))
        lx, ly = int(x - _text_width(label) / 2), TOP + PLOT_HEIGHT + TICK + 2
        _draw_text(draw, (lx, ly), label)
        if i == marked:
            draw.line((lx, ly + 13, lx + _text_width(label), ly + 13), fill=(0, 0, 0))
    _draw_text(
        draw,
        (LEFT + (PLOT_WIDTH - _text_width(x_title)) // 2, TOP + PLOT_HEIGHT + 22),
        x_title,
    )
    _draw_text(draw, (4, TOP - 16), y_title)
    for c, (name, (means, spreads)) in enumerate(curves.items()):
        colour = CURVE_COLOURS[c % len(CURVE_COLOURS)]
        pts = [(px(i), py(float(m))) for i, m in enumerate(means) if np.isfinite(m)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for i, m in enumerate(means):
            if not np.isfinite(m):
                continue
            x, y = px(i), py(float(m))
            if spreads is not None and np.isfinite(spreads[i]) and spreads[i] > 0:
                lo, hi = py(float(m) - float(spreads[i])), py(float(m) + float(spreads[i]))
                draw.line((x, lo, x, hi), fill=colour, width=1)
                draw.line((x - 3, lo, x + 3, lo), fill=colour)
                draw.line((x - 3, hi, x + 3, hi), fill=colour)
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        ly = TOP + PLOT_HEIGHT + 40 + 14 * c
        draw.line((LEFT, ly + 6, LEFT + 18, ly + 6), fill=colour, width=2)
        _draw_text(draw, (LEFT + 24, ly), name)
    return save_png(img, out)
