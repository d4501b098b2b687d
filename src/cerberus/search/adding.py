"""Adding to a gallery (method §9.1): crops' features as store items, a features file added to
a gallery (created on its first add), an ``.npz`` index converted into a gallery that grows.

Everything here writes through :meth:`GalleryStore.add`, so it works on every backend.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np

from cerberus.errors import CerberusError
from cerberus.inference.features import FeatureSet, camera_label
from cerberus.inference.scoring import embed_features
from cerberus.store import (
    GalleryStore,
    Items,
    info_of_features,
    open_or_create,
    to_utc_seconds,
)
from cerberus.store.npz import NpzStore


def source_of(paths: list[str]) -> str:
    """A crop folder's source name: the folder the crops share (their common parent)."""
    if not paths:
        raise CerberusError("no crops to add")
    parents = [str(Path(p).parent) for p in paths]
    return os.path.commonpath(parents) if len(set(parents)) > 1 else parents[0]


def items_of_features(
    features: FeatureSet,
    *,
    source: str | None = None,
    camera: str | None = None,
    start: datetime | str | float | None = None,
) -> Items:
    """The crops of a features file as store items: vectors (method §5.1), identities and
    attribute values as the file has them, the camera read from each crop's name when it
    parses (benchmark style ``c3``), else ``camera``; every crop at time ``start`` (a crop
    folder has no per-crop time: unknown without it); ``source``: default :func:`source_of`."""
    labels = features.meta.get("camera_labels", ())
    cams = [camera_label(int(c), labels) or (camera or "") for c in features.camids]
    t = to_utc_seconds(start, "--start") if start is not None else None
    return Items.make(
        embed_features(features.features),
        source=source or source_of(features.paths),
        num_attributes=features.values.shape[1],
        camera=cams,
        timestamp=t,
        path=features.paths,
        pid=features.pids,
        values=features.values,
    )


def add_features(
    target: str | Path | GalleryStore,
    features: FeatureSet,
    *,
    source: str | None = None,
    camera: str | None = None,
    start: datetime | str | float | None = None,
    replace: bool = False,
) -> tuple[GalleryStore, np.ndarray]:
    """Add a features file's crops to a gallery (a store, or a folder / URI opened or created
    with the features' model); the same source twice is refused unless ``replace``. Returns
    the store and the new item ids."""
    items = items_of_features(features, source=source, camera=camera, start=start)
    store = open_or_create(target, info_of_features(features))
    return store, store.add(items, replace=replace)


def convert(index_file: str | Path, out: str | Path, *, batch: int = 65536) -> GalleryStore:
    """An ``.npz`` index (read-only) copied into a new gallery at ``out`` (a folder or a Milvus
    URI): every item with its vector, identity, camera and attribute values, per source."""
    old = NpzStore.load(index_file)
    if Path(str(out)).exists() and any(Path(str(out)).iterdir()):
        raise CerberusError(f"{out}: already exists and is not empty; give a new folder")
    store = open_or_create(out, old.info)
    ids = old.ids()
    for start in range(0, len(ids), batch):
        items = old.get(ids[start : start + batch], vectors=True)
        store.add(items, complete=False)
    for s in old.sources():
        store.finish(s.name)
    return store
