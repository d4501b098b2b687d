"""Which backend a gallery address names, opening / creating it, and the one "open or create
the gallery for this model" (method §9.1).

- ``X.npz``: an index file (``cerberus index --out``), read-only
  (:class:`~cerberus.store.npz.NpzStore`);
- ``milvus:REST`` (``REST`` passed on, e.g. ``milvus:gallery.db`` or
  ``milvus:http://host:19530``), an ``http(s)://`` / ``tcp://`` URI, or a ``*.db`` file (a Milvus
  Lite file): :class:`cerberus.store.milvus.MilvusStore` (imported only then);
- a folder (anything else): the embedded :class:`~cerberus.store.local.LocalStore`.

A gallery holds one model's vectors: :func:`check_same_model` is the one fingerprint check,
:func:`info_of_model` / :func:`info_of_features` the :class:`GalleryInfo` of a new gallery.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cerberus.store.base import GalleryInfo, GalleryStore, StoreError

if TYPE_CHECKING:
    from cerberus.inference.embed import InferenceModel
    from cerberus.inference.features import FeatureSet

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


def _is_npz(target: str | Path) -> bool:
    return str(target).strip().endswith(".npz")


def open_store(target: str | Path, *, collection: str | None = None, **options) -> GalleryStore:
    """The existing gallery at ``target``: an ``.npz`` index file (read-only), a Milvus Lite
    file or URI, else a gallery folder; ``options`` go to the backend (e.g. ``exact_limit`` for a
    local one). A missing gallery or a file that is none is refused with one line."""
    if _is_npz(target):
        from cerberus.store.npz import NpzStore

        return NpzStore.load(str(target).strip())
    kind, address = backend_of(target)
    if kind == "milvus":
        extra = {} if collection is None else {"collection": collection}
        return _milvus().open(address, **extra, **options)
    from cerberus.store.local import LocalStore

    folder = Path(address)
    if folder.is_file():
        raise StoreError(
            f"{folder}: not a gallery (a gallery folder, a Milvus URI or an .npz index file)"
        )
    if not folder.exists():
        raise StoreError(f"{folder}: no gallery there (build one with `cerberus index --gallery`)")
    return LocalStore.open(address, **options)


def create_store(
    target: str | Path, info: GalleryInfo, *, collection: str | None = None, **options
) -> GalleryStore:
    """A new empty gallery at ``target`` holding vectors of ``info.dim`` (an ``.npz`` index
    file is refused: ``cerberus index --out`` writes those)."""
    if _is_npz(target):
        raise StoreError(
            f"{target}: an index file is written by `cerberus index --out`; give a folder "
            "to create a gallery that grows"
        )
    kind, address = backend_of(target)
    if kind == "milvus":
        extra = {} if collection is None else {"collection": collection}
        return _milvus().create(address, info, **extra, **options)
    from cerberus.store.local import LocalStore

    return LocalStore.create(address, info, **options)


def existing_store(target: str | Path) -> GalleryStore | None:
    """The gallery at ``target`` if there is one (``None``: nothing there yet, e.g. an empty
    or missing folder, a Milvus address without the collection)."""
    if _is_npz(target):  # a missing one is not created: create_store says why
        return open_store(target) if Path(str(target).strip()).exists() else None
    kind, address = backend_of(target)
    if kind == "local":
        folder = Path(address)
        if not folder.is_file() and not (folder.exists() and any(folder.iterdir())):
            return None
        return open_store(target)
    try:
        return open_store(target)
    except StoreError:  # no gallery there yet
        return None


def check_same_model(store: GalleryStore, info: GalleryInfo, where: str) -> None:
    """The one fingerprint check: refuse vectors (queries or items) of another model (or
    dimension) than the gallery's, one line naming ``where`` and both models."""
    have = store.info
    if have.fingerprint != info.fingerprint or have.dim != info.dim:
        raise StoreError(
            f"{where}: model {info.fingerprint[:12]} (dim {info.dim}) is not the model this "
            f"gallery was built with ({have.fingerprint[:12]}, dim {have.dim}, "
            f"{have.checkpoint or 'unknown checkpoint'}); use a gallery of that model or "
            "rebuild the index with this model"
        )


def open_or_create(
    target: str | Path | GalleryStore, info: GalleryInfo, *, where: str | None = None
) -> GalleryStore:
    """The gallery at ``target`` (or ``target`` itself, a store already open) for the model of
    ``info``: opened and checked (:func:`check_same_model`, ``where`` naming the gallery by
    default) when it exists, else created with ``info``."""
    if not isinstance(target, str | Path):
        store = target
    else:
        store = existing_store(target)
        if store is None:
            try:
                return create_store(target, info)
            except StoreError:
                store = existing_store(target)  # another process created it meanwhile
                if store is None:
                    raise
    name = where or f"gallery {getattr(store, 'name', target)}"
    try:
        check_same_model(store, info, name)
    except StoreError:
        if isinstance(target, str | Path):
            store.close()
        raise
    return store


def info_of_model(net: InferenceModel) -> GalleryInfo:
    """The :class:`GalleryInfo` of a gallery built with ``net`` (its fingerprint, checkpoint,
    schema, SID prototypes; dimension 5 d)."""
    protos = net.prototypes
    d = next(iter(protos.values())).shape[1]
    return GalleryInfo(
        dim=5 * d,
        fingerprint=net.fingerprint,
        schema=net.schema.to_dict(),
        prototypes=protos,
        checkpoint=str(net.checkpoint),
    )


def image_roots(paths: Sequence[str | Path]) -> list[str]:
    """The folder crops are served from (``meta["roots"]`` of a gallery built from crops in
    place): the deepest folder holding every one of ``paths``, absolute; ``[]`` for none."""
    parents = {str(Path(p).absolute().parent) for p in paths if str(p)}
    return [os.path.commonpath(sorted(parents))] if parents else []


def info_of_features(features: FeatureSet) -> GalleryInfo:
    """The :class:`GalleryInfo` of a features file: its model, schema, prototypes, dimension
    (``(N, 5, d)`` features: 5 d), camera labels and image ``roots`` (:func:`image_roots`:
    the server sends crops from there only)."""
    meta: dict[str, Any] = {"roots": image_roots(features.paths)}
    if features.meta.get("camera_labels"):
        meta["camera_labels"] = list(features.meta["camera_labels"])
    schema = features.meta.get("schema")
    if not isinstance(schema, dict):
        schema = features.schema.to_dict()
    return GalleryInfo(
        dim=int(features.features.shape[1] * features.features.shape[2]),
        fingerprint=str(features.meta.get("fingerprint", "")),
        schema=schema,
        prototypes={g: p.astype("float32") for g, p in features.prototypes.items()},
        checkpoint=str(features.meta.get("checkpoint") or ""),
        meta=meta,
    )
