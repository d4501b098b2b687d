"""The one image reader: a file, bytes or a PIL image -> an upright 8-bit RGB PIL image.

Every place that reads an image (training and evaluation datasets, extraction, the CLI, the
figures, the web server's uploads) goes through :func:`open_image` / :func:`to_rgb8`, so a crop
gives the same pixels whichever way it comes in:

- the EXIF orientation tag (phone photos) is applied, so a photo stored sideways with a tag is
  read upright, as image viewers and browsers show it;
- high-bit-depth images are scaled to 8 bits instead of clipped: 16-bit grayscale (``I;16``,
  ``I;16B``, ``I;16L``, ``I;16N``) and 32-bit integer (``I``) pixels are divided by 257
  (0..65535 -> 0..255; an ``I`` image with values outside that range is min-max scaled), float
  (``F``) pixels in 0..1 are multiplied by 255 (outside 0..1: min-max scaled). Pillow reads
  16-bit RGB PNG files as 8-bit RGB itself;
- everything else is converted to RGB by Pillow (palette, grayscale, CMYK; alpha is dropped).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cerberus.errors import CerberusError

ImageSource = str | os.PathLike | bytes | Image.Image
"""What :func:`open_image` reads: a path, the bytes of an image file, or a PIL image."""

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
EXIF_ORIENTATION = 0x0112
"""The EXIF tag that says how a photo was turned (1: upright)."""

READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
"""What Pillow raises for a file it cannot decode (truncated, damaged, not an image, a bomb)."""


def _scaled(pixels: np.ndarray, full_scale: float) -> Image.Image:
    """An ``L`` image of ``pixels`` (2-D) mapped to 0..255: ``/ full_scale`` when the values
    lie in ``0..full_scale``, else min-max scaled (a constant image -> 0)."""
    x = pixels.astype(np.float64)
    finite = np.isfinite(x)
    x[~finite] = 0.0
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo >= 0 and hi <= full_scale:
        x = x / full_scale
    else:
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return Image.fromarray(np.round(x * 255).astype(np.uint8), mode="L")


def to_rgb8(img: Image.Image) -> Image.Image:
    """``img`` upright (its EXIF orientation applied) as an 8-bit RGB image (see module doc).

    Raises:
        OSError / ValueError: what Pillow raises for an image it cannot decode.
    """
    img.load()
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:  # turn only what is turned (no copy else)
        img = ImageOps.exif_transpose(img)
    if img.mode in SIXTEEN_BIT_MODES:
        return _scaled(np.asarray(img), 65535.0).convert("RGB")
    if img.mode == "I":
        return _scaled(np.asarray(img), 65535.0).convert("RGB")
    if img.mode == "F":
        return _scaled(np.asarray(img), 1.0).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def open_image(source: ImageSource, *, formats: tuple[str, ...] | None = None) -> Image.Image:
    """An image as upright 8-bit RGB (:func:`to_rgb8`), or :class:`CerberusError` naming the
    file and why it cannot be read.

    Args:
        source: a path, the bytes of an image file, or a PIL image.
        formats: the Pillow formats accepted (``None``: any Pillow reads).
    """
    if isinstance(source, Image.Image):
        return to_rgb8(source)
    name = "image bytes" if isinstance(source, bytes) else str(source)
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
        with Image.open(stream, formats=formats) as img:
            return to_rgb8(img)
    except READ_ERRORS as exc:
        raise CerberusError(f"{name}: unreadable image ({exc.__class__.__name__}: {exc})") from None
