"""Which backend a gallery address names, and opening / creating it (method §9.1).

- a folder (anything else): the embedded :class:`~cerberus.store.local.LocalStore`;
- ``milvus:REST`` (``REST`` passed on, e.g. ``milvus:gallery.db`` or
  ``milvus:http://host:19530``), an ``http(s)://`` / ``tcp://`` URI, or a ``*.db`` file (a Milvus
  Lite file): :class:`cerberus.store.milvus.MilvusStore` (imported only then).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from cerberus.store.base import GalleryInfo, GalleryStore, StoreError

MILVUS_PREFIX = "milvus:"
URI_SCHEMES = ("http://", "https://", "tcp://", "grpc://")


def backend_of(target: str | Path) -> tuple[str, str]:
    """``("local" | "milvus", address)``: the backend ``target`` names and the address to give
    it (the ``milvus:`` prefix removed)."""
    text = str(target).strip()
    if not text:
        raise StoreError("gallery: no folder or URI given")
    if text.lower().startswith(MILVUS_PREFIX):
        rest = text[len(MILVUS_PREFIX) :]
        if not rest:
            raise StoreError(f"gallery {text!r}: give the Milvus Lite file or URI after milvus:")
        return "milvus", rest
    if text.lower().startswith(URI_SCHEMES) or text.lower().endswith(".db"):
        return "milvus", text
    return "local", text


def _milvus():
    try:
        return importlib.import_module("cerberus.store.milvus").MilvusStore
    except ImportError as e:
        raise StoreError(
            f"the Milvus backend is not available ({e}): pip install pymilvus milvus-lite"
        ) from None


def open_store(target: str | Path, *, collection: str | None = None, **options) -> GalleryStore:
    """The existing gallery at ``target`` (a folder, a Milvus Lite file or a Milvus URI);
    ``options`` go to the backend (e.g. ``exact_limit`` for a local one)."""
    kind, address = backend_of(target)
    if kind == "milvus":
        extra = {} if collection is None else {"collection": collection}
        return _milvus().open(address, **extra, **options)
    from cerberus.store.local import LocalStore

    return LocalStore.open(address, **options)


def create_store(
    target: str | Path, info: GalleryInfo, *, collection: str | None = None, **options
) -> GalleryStore:
    """A new empty gallery at ``target`` holding vectors of ``info.dim``."""
    kind, address = backend_of(target)
    if kind == "milvus":
        extra = {} if collection is None else {"collection": collection}
        return _milvus().create(address, info, **extra, **options)
    from cerberus.store.local import LocalStore

    return LocalStore.create(address, info, **options)
