"""The page's inputs checked before anything is searched: upload limits (:class:`Limits`), the
``serve`` command's numbers, and an uploaded image decoded under the server's pixel limit; bad
input is a :class:`BadRequest` with its HTTP status."""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from cerberus.data.images import READ_ERRORS, to_rgb8
from cerberus.errors import CerberusError
from cerberus.web.images import PixelBudget

_pillow_lock = threading.Lock()

IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF")
"""Upload formats the server decodes (Pillow names); anything else is "not an image"."""


@dataclass(frozen=True)
class Limits:
    """What one request may send: image bytes and pixels (width x height)."""

    max_bytes: int = 8 * 2**20
    max_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise CerberusError(f"image limits must be positive, got {self}")


def check_serve_options(port: int, max_image_mb: float, max_pixels: int) -> Limits:
    """The ``serve`` command's numbers checked before anything is loaded: ``--port`` in
    1-65535, ``--max-image-mb`` finite and positive, ``--max-pixels`` at least 1; returns the
    upload :class:`Limits` they give."""
    if not 1 <= port <= 65535:
        raise CerberusError(f"--port {port}: must be between 1 and 65535")
    if not (math.isfinite(max_image_mb) and max_image_mb > 0):
        raise CerberusError(f"--max-image-mb {max_image_mb}: must be a finite number above 0")
    if max_image_mb * 2**20 < 1:
        raise CerberusError(f"--max-image-mb {max_image_mb}: must allow at least one byte")
    if max_pixels < 1:
        raise CerberusError(f"--max-pixels {max_pixels}: must be at least 1")
    return Limits(max_bytes=int(max_image_mb * 2**20), max_pixels=max_pixels)


class BadRequest(CerberusError):
    """Bad input with the HTTP status to answer it with (400 unless told)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, limits: Limits) -> Image.Image:
    """An uploaded file's bytes -> an RGB image, or :class:`BadRequest` saying what is wrong.

    Checked in order: empty, over ``limits.max_bytes``, not an image of :data:`IMAGE_FORMATS`,
    over ``limits.max_pixels`` (read from the header, before decoding), truncated or damaged.
    """
    with decoded(data, limits) as image:
        return image


@contextmanager
def decoded(
    data: bytes, limits: Limits, budget: PixelBudget | None = None
) -> Iterator[Image.Image]:
    """:func:`decode_image` as a block: with ``budget``, the image's ``width x height`` pixels
    are held from before its decode until the block ends (the request that reads the image is
    answered), so at most ``budget.total`` decoded pixels are in flight over all requests."""
    if not data:
        raise BadRequest("the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise BadRequest(f"image larger than the limit of {limits.max_bytes} bytes", 413)
    try:
        img = _open_image(data, limits.max_pixels)
    except Image.DecompressionBombError:
        raise BadRequest(f"image over the limit of {limits.max_pixels} pixels", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise BadRequest(f"not an image ({', '.join(IMAGE_FORMATS)} accepted)") from None
    width, height = img.size
    if width * height > limits.max_pixels:
        raise BadRequest(
            f"image of {width}x{height} = {width * height} pixels, over the limit of "
            f"{limits.max_pixels}",
            413,
        )
    with nullcontext() if budget is None else budget.hold(width * height):
        try:
            image = to_rgb8(img)
        except READ_ERRORS as exc:
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise BadRequest(f"truncated or damaged {img.format} image ({reason})") from None
        yield image


@contextmanager
def pillow_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, about 89 megapixels by
    default) set to the server's ``max_pixels`` while the block runs, then put back: the
    server's ``--max-pixels`` is the one limit that applies to a query, in the upload's decode
    and when the model reads the decoded query again. One block at a time (a lock)."""
    with _pillow_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open_image(data: bytes, max_pixels: int) -> Image.Image:
    """``Image.open`` (the header only) under :func:`pillow_limit`."""
    with pillow_limit(max_pixels):
        return Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
