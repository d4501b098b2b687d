"""Which store a gallery argument names (method §9.1): an ``.npz`` index file (read-only), a
gallery folder (the local backend) or a Milvus URI; and the :class:`GalleryInfo` of a model's
features, for a gallery created by its first add."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cerberus.errors import CerberusError
from cerberus.inference.features import FeatureSet
from cerberus.store import GalleryInfo, GalleryStore, StoreError
from cerberus.store.npz import NpzStore
from cerberus.store.open import backend_of
from cerberus.store.open import create_store as create_backend
from cerberus.store.open import open_store as open_backend


def is_milvus(target: str | Path) -> bool:
    """A Milvus server URI or a Milvus Lite file (``*.db``), as the store layer tells them."""
    return backend_of(target)[0] == "milvus"


def open_store(target: str | Path, *, create: GalleryInfo | None = None) -> GalleryStore:
    """The store ``target`` names: ``X.npz`` (an index file, read-only), a Milvus URI or
    Lite file (``*.db``), else a gallery folder. With ``create``, a gallery that does not exist
    yet is created with that info (an ``.npz`` never is)."""
    text = str(target)
    if text.endswith(".npz"):
        if create is not None and not Path(text).exists():
            raise StoreError(
                f"{text}: an index file is written by `cerberus index --out`; give a folder "
                "to create a gallery that grows"
            )
        return NpzStore.load(text)
    kind, address = backend_of(text)
    if kind == "milvus":
        if create is None:
            return open_backend(text)
        try:
            return open_backend(text)
        except StoreError:
            return create_backend(text, create)
    folder = Path(address)
    if folder.is_file():
        raise StoreError(
            f"{folder}: not a gallery (a gallery folder, a Milvus URI or an .npz index file)"
        )
    if create is not None and not (folder.exists() and any(folder.iterdir())):
        return create_backend(folder, create)
    if not folder.exists():
        raise StoreError(f"{folder}: no gallery there (build one with `cerberus index --gallery`)")
    return open_backend(folder)


def info_of_features(features: FeatureSet) -> GalleryInfo:
    """The gallery facts of a features file: its model, schema, prototypes, dimension."""
    meta: dict[str, Any] = {}
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


def check_same_model(store: GalleryStore, info: GalleryInfo, where: str) -> None:
    """Refuse adding vectors of another model (or dimension) than the gallery's."""
    have = store.info
    if have.fingerprint != info.fingerprint or have.dim != info.dim:
        raise CerberusError(
            f"{where}: made by model {info.fingerprint[:12]} (dim {info.dim}), the gallery "
            f"holds model {have.fingerprint[:12]} (dim {have.dim}, "
            f"{have.checkpoint or 'unknown checkpoint'}); use a gallery of that model"
        )
