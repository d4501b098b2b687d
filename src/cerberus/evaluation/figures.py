"""Figures drawn with Pillow and NumPy: ranked lists (method §5, as in Fig. 6 of the paper) and the
alignment module's heat maps and kept rows (method §2.3, as in Fig. 7(a)).

Layout (pixels, for the default 128x64 tile): every figure has a white ``MARGIN``; a gallery tile
sits in a coloured frame ``BORDER`` thick, frames are ``GAP`` apart, the query panel is
``SEPARATOR`` away from the gallery with a vertical line in the middle; every caption line is
``LINE_HEIGHT`` high, ``TEXT_PAD`` below what it describes; a title takes ``TITLE_HEIGHT``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from cerberus.data.datasets import camera_label, load_image
from cerberus.data.images import to_rgb8
from cerberus.data.transforms import build_transforms
from cerberus.errors import CerberusError
from cerberus.files import atomic_write

CORRECT_COLOUR = (0, 170, 0)
WRONG_COLOUR = (220, 0, 0)
UNKNOWN_COLOUR = (160, 160, 160)
QUERY_COLOUR = (0, 90, 200)
KEPT_COLOUR = (0, 220, 255)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
TEXT_BOX_FILL = (246, 244, 228)
SEPARATOR_COLOUR = (90, 90, 90)

MARGIN = 8
BORDER = 4
GAP = 6
SEPARATOR = 24
SEPARATOR_LINE = 2
LINE_HEIGHT = 14
TEXT_PAD = 4
TITLE_HEIGHT = 20
FONT_SIZE = 11
WORD_GAP = 5
TITLE_FONT_SIZE = 13
PAIR_GAP = 2
ALIGN_GAP = 12
KEPT_LINE = 2
OUTSIDE_DIM = 0.45
HEAT_ALPHA = 0.6
PER_ROW = 10
PREDICTED_HEADING = "predicted:"

ImageLike = str | os.PathLike | Image.Image


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's default font at ``size`` (Pillow >= 10.1), else the fixed-size bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 takes no size
        return ImageFont.load_default()


def _text_width(text: str, size: int = FONT_SIZE) -> int:
    """Width of ``text`` as :func:`_draw_text` draws it."""
    words = text.split(" ")
    return int(np.ceil(sum(_font(size).getlength(w) for w in words))) + WORD_GAP * (len(words) - 1)


def _draw_text(
    draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int = FONT_SIZE
) -> None:
    """Draw ``text`` word by word ``WORD_GAP`` apart (the default font's space is 2 px, which
    makes ``"#1 0.873"`` read as ``"#10.873"``)."""
    x, y = xy
    for word in text.split(" "):
        draw.text((x, y), word, fill=TEXT_COLOUR, font=_font(size))
        x += int(np.ceil(_font(size).getlength(word))) + WORD_GAP


def _check_tile(tile: tuple[int, int]) -> tuple[int, int]:
    if len(tile) != 2 or min(int(tile[0]), int(tile[1])) < 1:
        raise CerberusError(f"tile: expected (height, width) > 0, got {tuple(tile)}")
    return int(tile[0]), int(tile[1])


def _check_length(name: str, values: Sequence | None, n: int) -> None:
    if values is not None and len(values) != n:
        raise CerberusError(
            f"{name}: expected {n} values (one per ranked image), got {len(values)}"
        )


def _open(item: ImageLike) -> Image.Image:
    """An upright 8-bit RGB image from a path (errors name the file) or a PIL image."""
    if isinstance(item, Image.Image):
        return to_rgb8(item)
    return load_image(Path(item))


def _tile(item: ImageLike, tile: tuple[int, int]) -> Image.Image:
    height, width = tile
    return _open(item).resize((width, height), Image.Resampling.BILINEAR)


def save_png(image: Image.Image, out: str | os.PathLike) -> Path:
    """Write ``image`` to ``out`` as PNG atomically (:func:`cerberus.files.atomic_write`).

    The parent folder is created. Raises :class:`CerberusError` naming ``out`` on failure.
    """
    return atomic_write(out, lambda fh: image.save(fh, format="PNG"), "figure")


def stack_figures(out: str | os.PathLike, parts: Sequence[str | os.PathLike]) -> Path:
    """One PNG of ``parts`` one above the other, left-aligned on white (docs/index.md
    picture: the demo's reID and partial APS rank lists)."""
    images = []
    for part in parts:
        with Image.open(part) as image:
            images.append(image.convert("RGB"))
    if not images:
        raise CerberusError(f"{out}: no figures to stack")
    canvas = Image.new(
        "RGB", (max(i.width for i in images), sum(i.height for i in images)), "white"
    )
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    return save_png(canvas, out)


def _frame(draw: ImageDraw.ImageDraw, x: int, y: int, w: int, h: int, colour) -> None:
    """A ``BORDER``-thick frame whose outer corner is (x, y) and outer size w x h."""
    draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=BORDER)


def _centred_lines(draw, lines: Sequence[str], x: int, w: int, y: int) -> None:
    for i, line in enumerate(lines):
        lx = x + max(0, (w - _text_width(line)) // 2)
        _draw_text(draw, (lx, y + i * LINE_HEIGHT), line)


def _caption_height(lines: int) -> int:
    return TEXT_PAD + lines * LINE_HEIGHT if lines else 0


def _gallery_captions(n: int, scores, labels) -> list[list[str]]:
    captions = []
    for k in range(n):
        first = f"#{k + 1}" if scores is None else f"#{k + 1} {float(scores[k]):.3f}"
        captions.append([first] if labels is None else [first, str(labels[k])])
    return captions


def rank_list_figure(
    out: str | os.PathLike,
    ranked: Sequence[ImageLike],
    *,
    query_image: ImageLike | None = None,
    query_text: Sequence[str] = (),
    correct: Sequence[bool | None] | None = None,
    scores: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    title: str = "",
    tile: tuple[int, int] = (128, 64),
    per_row: int = PER_ROW,
) -> Path:
    """One ranked list as a PNG (method §5, like Fig. 6): the query, a separator, the gallery.

    Args:
        out: PNG to write (atomically; the folder is created).
        ranked: gallery images in rank order (paths or PIL images), typically 10.
        query_image: the reID query image, or ``None`` for an attribute query: the query panel
            is then a light text box with the ``query_text`` lines.
        query_text: lines under the query image (e.g. its predicted attributes) or in the box.
        correct: per ranked image True / False / None: a green / red / grey frame.
        scores: per ranked image a similarity, drawn as ``"#1 0.873"`` (else just ``"#1"``).
        labels: per ranked image a short string (e.g. ``"id 12 c3"``) under the score.
        title: a line at the top (nothing reserved when empty).
        tile: ``(height, width)`` every image is resized to.
        per_row: gallery images per row; a longer list wraps onto further rows (rank order
            left to right, then top to bottom), so a rank-500 list stays a readable page.

    Returns:
        ``out`` as a Path. The figure is ``2 * MARGIN + query_w + SEPARATOR + c * cell_w +
        (c - 1) * GAP`` wide with ``c = min(n, per_row)`` columns, where ``cell_w =
        max(tile_w + 2 * BORDER, widest caption + 2)`` and ``query_w`` is the same for the query
        panel and its text (widened to fit a long title). Rows of the gallery are ``GAP`` apart.

    Raises:
        CerberusError: an image that cannot be read (the message names it), lists whose length
            differs from ``ranked``, a bad tile, or an unwritable ``out``.
    """
    th, tw = _check_tile(tile)
    if per_row < 1:
        raise CerberusError(f"per_row: expected at least 1, got {per_row}")
    n = len(ranked)
    for name, values in (("correct", correct), ("scores", scores), ("labels", labels)):
        _check_length(name, values, n)
    query_text = [str(t) for t in query_text]
    query = None if query_image is None else _tile(query_image, (th, tw))
    gallery = [_tile(p, (th, tw)) for p in ranked]

    box_w, box_h = tw + 2 * BORDER, th + 2 * BORDER
    captions = _gallery_captions(n, scores, labels)
    widest = max((_text_width(s) for c in captions for s in c), default=0)
    cell_w = max(box_w, widest + 2)
    text_w = max((_text_width(s) for s in query_text), default=0)
    query_w = max(box_w, text_w + 2 * TEXT_PAD)
    if query is None:
        shown = query_text or ["(any attributes)"]
        query_box_h = max(box_h, 2 * TEXT_PAD + len(shown) * LINE_HEIGHT)
        query_cap = 0
    else:
        query_box_h, query_cap = box_h, _caption_height(len(query_text))
    top = MARGIN + (TITLE_HEIGHT if title else 0)
    gallery_x = MARGIN + query_w + SEPARATOR
    columns = min(n, per_row)
    rows = -(-n // per_row)  # ceil
    width = gallery_x + columns * cell_w + max(columns - 1, 0) * GAP + MARGIN
    if title:
        width = max(width, 2 * MARGIN + _text_width(title, TITLE_FONT_SIZE))
    gallery_cap = _caption_height(max((len(c) for c in captions), default=0))
    row_h = box_h + gallery_cap
    gallery_h = rows * row_h + max(rows - 1, 0) * GAP
    height = top + max(query_box_h + query_cap, gallery_h) + MARGIN

    fig = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(fig)
    if title:
        _draw_text(draw, (MARGIN, MARGIN + 2), title, TITLE_FONT_SIZE)
    if query is None:
        draw.rectangle(
            (MARGIN, top, MARGIN + query_w - 1, top + query_box_h - 1),
            fill=TEXT_BOX_FILL,
            outline=QUERY_COLOUR,
            width=1,
        )
        for i, line in enumerate(shown):
            y = top + TEXT_PAD + i * LINE_HEIGHT
            _draw_text(draw, (MARGIN + TEXT_PAD, y), line)
    else:
        qx = MARGIN + (query_w - box_w) // 2
        fig.paste(query, (qx + BORDER, top + BORDER))
        _frame(draw, qx, top, box_w, box_h, QUERY_COLOUR)
        _centred_lines(draw, query_text, MARGIN, query_w, top + box_h + TEXT_PAD)
    line_x = MARGIN + query_w + (SEPARATOR - SEPARATOR_LINE) // 2
    draw.rectangle(
        (line_x, top, line_x + SEPARATOR_LINE - 1, height - MARGIN - 1), fill=SEPARATOR_COLOUR
    )
    for k, img in enumerate(gallery):
        row, col = divmod(k, per_row)
        cell_x = gallery_x + col * (cell_w + GAP)
        y = top + row * (row_h + GAP)
        x = cell_x + (cell_w - box_w) // 2
        fig.paste(img, (x + BORDER, y + BORDER))
        ok = None if correct is None else correct[k]
        colour = UNKNOWN_COLOUR if ok is None else CORRECT_COLOUR if ok else WRONG_COLOUR
        _frame(draw, x, y, box_w, box_h, colour)
        _centred_lines(draw, captions[k], cell_x, cell_w, y + box_h + TEXT_PAD)
    return save_png(fig, out)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """A black -> red -> yellow -> white colour map.

    Args:
        values: array of any shape with values in [0, 1] (clipped).

    Returns:
        uint8 array of shape ``values.shape + (3,)``: red rises on [0, 1/3], green on
        [1/3, 2/3], blue on [2/3, 1].
    """
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    rgb = np.clip(3.0 * v - np.array([0.0, 1.0, 2.0], dtype=np.float32), 0.0, 1.0)
    return np.round(rgb * 255).astype(np.uint8)


def kept_pixel_rows(top: int, bottom: int, map_rows: int, tile_height: int) -> tuple[int, int]:
    """First and last image row covered by heat-map rows ``top..bottom`` (inclusive).

    Heat-map row r covers image rows ``[r * H // h, (r + 1) * H // h)``.
    """
    return top * tile_height // map_rows, (bottom + 1) * tile_height // map_rows - 1


def _normalise(m: np.ndarray) -> np.ndarray:
    m = np.nan_to_num(m.astype(np.float32))
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def _check_alignment_inputs(images, maps: np.ndarray, tops: np.ndarray, bottoms: np.ndarray):
    if maps.ndim != 3 or min(maps.shape, default=0) < 1:
        raise CerberusError(f"heat_maps: expected shape (N, h, w), got {maps.shape}")
    n, h = maps.shape[0], maps.shape[1]
    for name, v in (("images", images), ("tops", tops), ("bottoms", bottoms)):
        if len(v) != n:
            raise CerberusError(f"{name}: expected {n} values (one per heat map), got {len(v)}")
    for i, (t, b) in enumerate(zip(tops, bottoms)):
        if not 0 <= t <= b < h:
            raise CerberusError(f"image {i}: kept rows {t}..{b} are not within 0..{h - 1}")


def _alignment_pair(image: Image.Image, m: np.ndarray, top: int, bottom: int) -> Image.Image:
    """The crop with the kept rows boxed (outside dimmed) beside the heat map blended over it."""
    tw, th = image.size
    y0, y1 = kept_pixel_rows(top, bottom, m.shape[0], th)
    crop = np.asarray(image, dtype=np.float32)
    marked = crop * OUTSIDE_DIM
    marked[y0 : y1 + 1] = crop[y0 : y1 + 1]
    marked_img = Image.fromarray(np.round(marked).astype(np.uint8))
    ImageDraw.Draw(marked_img).rectangle((0, y0, tw - 1, y1), outline=KEPT_COLOUR, width=KEPT_LINE)
    up = Image.fromarray(_normalise(m)).resize((tw, th), Image.Resampling.BILINEAR)
    heat = heat_colours(np.asarray(up)).astype(np.float32)
    blend = np.round((1 - HEAT_ALPHA) * crop + HEAT_ALPHA * heat).astype(np.uint8)
    pair = Image.new("RGB", (2 * tw + PAIR_GAP, th), BACKGROUND)
    pair.paste(marked_img, (0, 0))
    pair.paste(Image.fromarray(blend), (tw + PAIR_GAP, 0))
    return pair


def rank_list_from_rows(
    out: str | os.PathLike,
    rows: Sequence[dict],
    *,
    query_image: ImageLike | None = None,
    query_text: Sequence[str] = (),
    title: str = "",
) -> Path:
    """:func:`rank_list_figure` of search results (:func:`cerberus.search.result_rows`): borders
    from ``correct``, the score and the identity / camera (when known) under each crop.

    With a ``query_image``, ``query_text`` is taken to be the model's predicted attributes of
    it and is headed ``PREDICTED_HEADING`` so that it does not read as ground truth; for an
    attribute query (no image) the lines are the query itself and are drawn as given.
    """
    if query_image is not None and query_text:
        query_text = [PREDICTED_HEADING, *query_text]

    def label(row: dict) -> str:
        parts = [] if row["pid"] is None else [f"id {row['pid']}"]
        camera = row.get("camera") or camera_label(row["camid"] if row["camid"] is not None else -1)
        return " ".join(parts + ([camera] if camera else []))

    return rank_list_figure(
        out,
        [r["path"] for r in rows],
        query_image=query_image,
        query_text=query_text,
        correct=[r["correct"] for r in rows],
        scores=[r["score"] for r in rows],
        labels=[label(r) for r in rows],
        title=title,
    )


ALIGNMENT_TITLE = (
    "Alignment module (method §2.3): where the local branch looks, which rows it keeps"
)


def alignment_legend(sigma: float | None) -> list[str]:
    """The legend lines of :func:`alignment_figure` (what the heat map, the box and sigma are)."""
    threshold = "sigma" if sigma is None else f"sigma = {sigma:g}"
    return [
        "Left of each pair: the crop; the rows the alignment keeps are boxed, the rest dimmed.",
        "Right: heat map = L2 norm of the local-branch feature map at each position "
        "(black low, white high; scaled per image).",
        f"Kept: the first to the last heat-map row whose peak exceeds {threshold} "
        "(the whole map when none does); they are stretched to full height.",
    ]


def _alignment_captions(name: str, m: np.ndarray, t: int, b: int, sigma: float | None):
    h, peak = m.shape[0], float(np.nanmax(m))
    if sigma is None:
        why = f"peak {peak:.2f}"
    elif peak > sigma:
        why = f"peak {peak:.2f} > sigma"
    else:
        why = f"peak {peak:.2f} <= sigma: all kept"
    return [name, f"rows {t}-{b} of {h} kept", why]


def alignment_figure(
    out: str | os.PathLike,
    images: Sequence[ImageLike],
    heat_maps: np.ndarray,
    tops: np.ndarray,
    bottoms: np.ndarray,
    *,
    tile: tuple[int, int] = (128, 64),
    sigma: float | None = None,
    names: Sequence[str] | None = None,
    title: str = ALIGNMENT_TITLE,
) -> Path:
    """The alignment module at work (method §2.3, like Fig. 7(a)), one column pair per image.

    At the top: ``title`` (nothing reserved when empty) and the :func:`alignment_legend` lines.
    Left of each pair: the crop with the kept rows boxed in ``KEPT_COLOUR`` and the rest dimmed.
    Right: the heat map, normalised to 0..1 per image, upsampled to the tile and blended over
    the crop with :func:`heat_colours`. Under each pair: the image's file name, ``"rows t-b of h
    kept"`` and the heat map's peak (against ``sigma`` when given).

    Args:
        out: PNG to write (atomically; the folder is created).
        images: N paths or PIL images.
        heat_maps: ``(N, h, w)`` heat maps ||F^l(p)||_2.
        tops, bottoms: ``(N,)`` first / last kept heat-map row (inclusive).
        tile: ``(height, width)`` every image is resized to.
        sigma: the alignment threshold the rows were kept with (named in the legend).
        names: one caption per image; default: the file name, ``"image i"`` for a PIL image.
        title: the line at the top.

    Returns:
        ``out`` as a Path; pairs are ``cell_w = max(2 * tile_w + PAIR_GAP, widest caption + 2)``
        apart by ``ALIGN_GAP``; the figure is ``2 * MARGIN + N * cell_w + (N - 1) * ALIGN_GAP``
        wide (widened to fit the title and legend) and ``2 * MARGIN + header + tile_h +
        TEXT_PAD + 3 * LINE_HEIGHT`` high with ``header`` = title + legend +
        ``TEXT_PAD``.

    Raises:
        CerberusError: an unreadable image (named), inconsistent shapes, rows out of range, a bad
            tile or an unwritable ``out``.
    """
    th, tw = _check_tile(tile)
    maps = np.asarray(heat_maps, dtype=np.float32)
    tops = np.asarray(tops).astype(np.int64).reshape(-1)
    bottoms = np.asarray(bottoms).astype(np.int64).reshape(-1)
    _check_alignment_inputs(images, maps, tops, bottoms)
    n = maps.shape[0]
    if names is None:
        names = [
            f"image {i}" if isinstance(im, Image.Image) else Path(im).name
            for i, im in enumerate(images)
        ]
    elif len(names) != n:
        raise CerberusError(f"names: expected {n} values (one per heat map), got {len(names)}")
    captions = [
        _alignment_captions(str(names[i]), maps[i], int(tops[i]), int(bottoms[i]), sigma)
        for i in range(n)
    ]
    legend = alignment_legend(sigma)
    pair_w = 2 * tw + PAIR_GAP
    cell_w = max(pair_w, max(_text_width(s) for c in captions for s in c) + 2)
    width = 2 * MARGIN + n * cell_w + (n - 1) * ALIGN_GAP
    width = max(width, 2 * MARGIN + max(_text_width(s) for s in legend))
    if title:
        width = max(width, 2 * MARGIN + _text_width(title, TITLE_FONT_SIZE))
    header = (TITLE_HEIGHT if title else 0) + len(legend) * LINE_HEIGHT + TEXT_PAD
    top = MARGIN + header
    height = top + th + TEXT_PAD + 3 * LINE_HEIGHT + MARGIN
    fig = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(fig)
    if title:
        _draw_text(draw, (MARGIN, MARGIN + 2), title, TITLE_FONT_SIZE)
    legend_y = MARGIN + (TITLE_HEIGHT if title else 0)
    for i, line in enumerate(legend):
        _draw_text(draw, (MARGIN, legend_y + i * LINE_HEIGHT), line)
    for i in range(n):
        cell_x = MARGIN + i * (cell_w + ALIGN_GAP)
        x = cell_x + (cell_w - pair_w) // 2
        t, b = int(tops[i]), int(bottoms[i])
        fig.paste(_alignment_pair(_tile(images[i], (th, tw)), maps[i], t, b), (x, top))
        _centred_lines(draw, captions[i], cell_x, cell_w, top + th + TEXT_PAD)
    return save_png(fig, out)


def model_alignment_maps(
    model: torch.nn.Module,
    paths: Sequence[ImageLike],
    *,
    height: int,
    width: int,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heat maps and kept rows of ``model``'s alignment module for some images (method §2.3).

    Images go through the test transform at ``height`` x ``width`` and
    :meth:`~cerberus.modeling.model.Cerberus.forward_local_maps`, in eval mode under
    ``torch.no_grad`` on the model's device; the model's train / eval mode is restored afterwards.

    Args:
        model: a :class:`~cerberus.modeling.model.Cerberus`.
        paths: N image paths (or PIL images).
        height, width: input size.
        batch_size: images per forward pass.

    Returns:
        ``(heat_maps, tops, bottoms)``: float32 ``(N, h, w)`` and int64 ``(N,)`` arrays, ready for
        :func:`alignment_figure`.
    """
    if len(paths) == 0:
        raise CerberusError("paths: no images given")
    transform = build_transforms(height=height, width=width, train=False)
    device = next(model.parameters()).device
    was_training = model.training
    maps, tops, bottoms = [], [], []
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(paths), batch_size):
                batch = [transform(_open(p)) for p in paths[start : start + batch_size]]
                res = model.forward_local_maps(torch.stack(batch).to(device))
                maps.append(res["heat_map"].float().cpu().numpy())
                tops.append(res["top"].cpu().numpy())
                bottoms.append(res["bottom"].cpu().numpy())
    finally:
        model.train(was_training)
    return (
        np.concatenate(maps).astype(np.float32),
        np.concatenate(tops).astype(np.int64),
        np.concatenate(bottoms).astype(np.int64),
    )


# --------------------------------------------------------------------------- ROC

ROC_SIZE = (560, 420)  # plot area, pixels
ROC_LEFT, ROC_BOTTOM = 48, 34  # room for the axis labels
ROC_CURVE_COLOUR = (0, 90, 200)
ROC_GRID_COLOUR = (225, 225, 225)
ROC_POINT_COLOUR = (220, 0, 0)
ROC_POINT_RADIUS = 4


def roc_figure(
    out: str | os.PathLike,
    fpr: np.ndarray,
    tpr: np.ndarray,
    points: Sequence[dict] = (),
    *,
    title: str = "",
    chosen_fpr: float | None = None,
) -> Path:
    """A ROC curve with a logarithmic FPR axis and its operating points, as a PNG.

    Args:
        fpr, tpr: the curve (:func:`cerberus.evaluation.metrics.verification.roc_curve`), shape
        ``(T,)``. points: operating points (``fpr_target``, ``threshold``, ``tpr``, ``fpr``), marked
            and labelled with their threshold and TPR; the one at ``chosen_fpr`` is labelled so.
        title: drawn above the plot.

    The FPR axis runs from the decade below the smallest non-zero FPR (or target) to 1; points
    measured at FPR 0 are drawn on the left edge.
    """
    fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
    if fpr.shape != tpr.shape or fpr.ndim != 1 or len(fpr) == 0:
        raise CerberusError(f"roc_figure: fpr {fpr.shape} and tpr {tpr.shape} must match (T,)")
    smallest = [f for f in fpr if f > 0] + [float(p["fpr_target"]) for p in points]
    low = int(np.floor(np.log10(min(smallest)))) if smallest else -4
    low = max(min(low, -1), -8)
    pw, ph = ROC_SIZE
    x0, y0 = MARGIN + ROC_LEFT, MARGIN + (TITLE_HEIGHT if title else 0)
    img = Image.new("RGB", (x0 + pw + MARGIN, y0 + ph + ROC_BOTTOM + MARGIN), BACKGROUND)
    draw = ImageDraw.Draw(img)

    def xy(f: float, t: float) -> tuple[float, float]:
        lf = np.log10(max(f, 10.0**low))
        return x0 + (lf - low) / -low * pw, y0 + (1 - t) * ph

    for e in range(low, 1):
        x, _ = xy(10.0**e, 0)
        draw.line((x, y0, x, y0 + ph), fill=ROC_GRID_COLOUR)
        label = f"1e{e}" if e else "1"
        _draw_text(draw, (int(x - _text_width(label) / 2), y0 + ph + TEXT_PAD), label)
    for k in range(6):
        _, y = xy(1, k / 5)
        draw.line((x0, y, x0 + pw, y), fill=ROC_GRID_COLOUR)
        label = f"{k / 5:.1f}"
        _draw_text(draw, (x0 - _text_width(label) - TEXT_PAD, int(y - LINE_HEIGHT / 2)), label)
    draw.rectangle((x0, y0, x0 + pw, y0 + ph), outline=SEPARATOR_COLOUR)
    name = "false-positive rate (different identities accepted), log scale"
    _draw_text(draw, (x0 + (pw - _text_width(name)) // 2, y0 + ph + TEXT_PAD + LINE_HEIGHT), name)
    _draw_text(draw, (MARGIN, y0 - LINE_HEIGHT if not title else y0 + 2), "TPR")
    if title:
        _draw_text(draw, (MARGIN, MARGIN), title, TITLE_FONT_SIZE)

    chance = np.logspace(low, 0, 64)
    draw.line([xy(f, f) for f in chance], fill=UNKNOWN_COLOUR, width=1)
    # one vertex per pixel column is enough; keep each column's highest TPR (a step curve)
    cols = np.round([xy(f, 0)[0] for f in fpr]).astype(int)
    order = np.lexsort((tpr, cols))
    last = np.r_[cols[order][1:] != cols[order][:-1], True]
    curve = [xy(f, t) for f, t in zip(fpr[order][last], tpr[order][last])]
    if len(curve) > 1:
        draw.line(curve, fill=ROC_CURVE_COLOUR, width=2)
    for p in points:
        x, y = xy(float(p["fpr"]) or float(p["fpr_target"]), float(p["tpr"]))
        r = ROC_POINT_RADIUS
        draw.ellipse((x - r, y - r, x + r, y + r), fill=ROC_POINT_COLOUR)
        chosen = chosen_fpr is not None and np.isclose(p["fpr_target"], chosen_fpr)
        text = f"FPR {p['fpr_target']:.0e}: TPR {100 * p['tpr']:.1f}%, threshold "
        text += f"{p['threshold']:.3f}" + (" (chosen)" if chosen else "")
        tx = int(min(x + 2 * r, x0 + pw - _text_width(text) - TEXT_PAD))
        _draw_text(draw, (max(tx, x0 + TEXT_PAD), int(y + r)), text)
    return save_png(img, out)
