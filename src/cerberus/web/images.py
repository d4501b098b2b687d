"""What the server sends and decodes as images: gallery crops only from the folders a gallery
records, always as ``image/jpeg`` or ``image/png``; and the bound on pixels decoded at once.

A gallery item's stored path is served only when

1. resolved with every symlink followed, it lies under one of the gallery's image folders
   (:func:`image_folders`: the gallery folder, the ``roots`` its builder recorded, a crop
   folder's own source, a footage source's thumbnail folder); a gallery written before
   ``roots`` were recorded has no such list, and then any file may be served that
2. decodes as an image (any format Pillow reads) of at most ``max_pixels`` pixels.

A plain 8-bit JPEG or PNG is sent as its bytes; anything else (TIFF, GIF, WebP, 16-bit PNG,
an animated PNG) is decoded and sent as a PNG of its first frame. Nothing is typed by its
file name.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from cerberus.data.images import READ_ERRORS, to_rgb8
from cerberus.errors import CerberusError

MAX_SERVED_BYTES = 32 * 2**20
"""The largest gallery image file the server reads (a crop is a few kB)."""

PLAIN_MODES = {"JPEG": ("L", "RGB"), "PNG": ("1", "L", "LA", "P", "RGB", "RGBA")}
"""Formats and modes browsers show as they are (8 bits per channel)."""


class NotServed(CerberusError):
    """A gallery item's file that is not sent (outside the image folders, not an image)."""


def _resolved(path: str | Path) -> Path | None:
    try:
        return Path(path).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None


def image_folders(
    store: Any, meta: dict[str, Any], item: dict[str, Any] | None = None
) -> list[Path] | None:
    """The folders gallery images may be served from, resolved; ``None`` for a gallery written
    before ``roots`` were recorded (then any image is served, rule 2 of the module).

    They are: the gallery's own folder (a local gallery), every ``roots`` entry of its meta
    (the crop folder ``extract`` / ``index`` built it from, the thumbnail folder of
    ``ingest``), and for ``item`` (a :func:`~cerberus.search.rows.item_row`) its source when
    that is a folder (crops added later from another folder) and the thumbnail folder
    ``ingest`` names after its source and camera."""
    roots = meta.get("roots")
    if not isinstance(roots, list):
        return None
    found = [str(r) for r in roots if isinstance(r, str) and r]
    folder = getattr(store, "folder", None)
    if folder is not None:
        found.append(str(folder))
    if item is not None and item.get("source"):
        source = str(item["source"])
        if Path(source).is_dir() and item.get("frame") is None:
            found.append(source)
        if item.get("frame") is not None and item.get("path"):
            from cerberus.footage.ingest import thumbs_folder

            parent = Path(str(item["path"])).parent
            if parent.name == thumbs_folder(Path(), source, item.get("camera") or "").name:
                found.append(str(parent))
    return [r for r in (_resolved(f) for f in found) if r is not None]


def check_served_path(path: str | Path, folders: Sequence[Path] | None, what: str) -> Path:
    """``path`` resolved (symlinks followed); :class:`NotServed` when it is missing or, with
    ``folders`` given, lies under none of them. ``what`` names the item in the message."""
    real = _resolved(path)
    if real is None or not real.is_file():
        raise NotServed(f"the image of {what} is missing on the server")
    if folders is not None and not any(real.is_relative_to(f) for f in folders):
        raise NotServed(f"the image of {what} is outside the gallery's image folders; not served")
    return real


def served_image(data: bytes, max_pixels: int, what: str) -> tuple[bytes, str]:
    """A file's bytes as ``(bytes, media type)`` a browser shows: a plain 8-bit JPEG or PNG as
    it is, any other image Pillow reads as a PNG of its first frame (RGB, 8 bits); a file that
    is not an image, or has more than ``max_pixels`` pixels, is :class:`NotServed`."""
    from cerberus.web.uploads import pillow_limit

    try:
        with pillow_limit(max_pixels):
            image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise NotServed(f"the image of {what} has over {max_pixels} pixels; not served")
        image.load()
        plain = image.mode in PLAIN_MODES.get(image.format or "", ()) and not getattr(
            image, "is_animated", False
        )
        if plain:
            return data, f"image/{image.format.lower()}"
        out = io.BytesIO()
        to_rgb8(image).save(out, format="PNG")
        return out.getvalue(), "image/png"
    except NotServed:
        raise
    except Image.DecompressionBombError:
        raise NotServed(f"the image of {what} has over {max_pixels} pixels; not served") from None
    except (*READ_ERRORS, SyntaxError, Image.UnidentifiedImageError):
        raise NotServed(f"the file of {what} is not an image; not served") from None


def read_served(path: Path, what: str) -> bytes:
    """The bytes of a checked file, at most :data:`MAX_SERVED_BYTES`."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SERVED_BYTES + 1)
    except OSError:
        raise NotServed(f"the image of {what} cannot be read on the server") from None
    if len(data) > MAX_SERVED_BYTES:
        raise NotServed(f"the image of {what} is over {MAX_SERVED_BYTES} bytes; not served")
    return data


class PixelBudget:
    """At most ``total`` decoded pixels in flight at once, over every request: an upload is
    decoded only after it holds its ``width x height`` pixels of the budget, and holds them
    until its request is answered (the decoded image lives until then). One image larger than
    the budget waits until it is the only one, so any image under the server's pixel limit
    gets through.

    With the default of twice ``--max-pixels`` (2 x 4096 x 4096 RGB pixels: about 100 MB of
    decoded images), memory does not grow with the number of concurrent uploads.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise CerberusError(f"pixel budget {total}: must be at least 1")
        self.total = int(total)
        self.in_use = 0
        self.peak = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait until ``pixels`` fit (or nothing else is held), hold them for the block."""
        pixels = max(1, int(pixels))
        with self._cond:
            self._cond.wait_for(lambda: self.in_use == 0 or self.in_use + pixels <= self.total)
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= pixels
                self._cond.notify_all()

