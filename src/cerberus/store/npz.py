"""An ``.npz`` index file (``cerberus index --out X.npz``) as a read-only gallery store
(method §9.1): the galleries made before the store existed still open, search and filter.

Unfiltered searches go through the file's own faiss index (approximate kinds stay as built);
filtered ones are exact inner products over the reconstructed vectors of the items that pass.
The file knows cameras by number (named as :func:`cerberus.inference.features.camera_label` shows
them), no times, sources, frames or tracks: each item's source is its crop's folder. Writes
are refused: ``cerberus gallery convert`` turns the file into a gallery that grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cerberus.attributes.schema_files import schema_from_meta
from cerberus.inference.features import UNKNOWN, camera_label
from cerberus.store.base import (
    UNKNOWN_ID,
    Filter,
    GalleryInfo,
    Hits,
    Items,
    SourceState,
    StoreError,
)
from cerberus.store.memory import exact_top_k
from cerberus.store.npz_index import GalleryIndex

READ_ONLY = "read-only: convert it with `cerberus gallery convert`"


class NoVectors(StoreError):
    """The index keeps no vectors to read back (the caller embeds the crops again)."""


class NpzStore:
    """The reads of :class:`~cerberus.store.base.GalleryStore` over a
    :class:`~cerberus.store.npz_index.GalleryIndex`; item ids are the index's row numbers."""

    def __init__(self, index: GalleryIndex, *, name: str = "index") -> None:
        self.index = index
        self.name = name
        schema = index.meta.get("schema")
        if not isinstance(schema, dict):
            schema = schema_from_meta(schema, name).to_dict()
        labels = index.meta.get("camera_labels", ())
        self.info = GalleryInfo(
            dim=int(index.index.d),
            fingerprint=index.fingerprint,
            schema=schema,
            prototypes=index.prototypes,
            checkpoint=str(index.meta.get("checkpoint") or ""),
            meta={k: v for k, v in index.meta.items() if k in ("camera_labels", "index_kind")},
        )
        n = len(index)
        cameras = [camera_label(int(c), labels) or "" for c in index.camids]
        pids = np.where(index.pids == UNKNOWN, UNKNOWN_ID, index.pids).astype(np.int64)
        self._meta = Items.make(
            np.zeros((n, 0), np.float32),
            source=[str(Path(p).parent) for p in index.paths],
            num_attributes=index.values.shape[1],
            camera=cameras,
            path=index.paths,
            pid=pids,
            values=index.values,
        ).with_ids(np.arange(n, dtype=np.int64))
        self._vectors: np.ndarray | None = None

    @classmethod
    def load(cls, path: str | Path) -> NpzStore:
        return cls(GalleryIndex.load(path), name=str(path))

    # ---- writing: refused

    def add(self, items: Items, *, replace: bool = False, complete: bool = True) -> np.ndarray:
        raise StoreError(f"{self.name}: {READ_ONLY}")

    def finish(self, source: str) -> None:
        raise StoreError(f"{self.name}: {READ_ONLY}")

    def remove(self, *, source: str | None = None, camera: str | None = None) -> int:
        raise StoreError(f"{self.name}: {READ_ONLY}")

    # ---- reading

    def vectors(self) -> np.ndarray:
        """``(N, D)`` every item's vector, read back from the faiss index once (an IVF index
        is given a direct map first); :class:`StoreError` for an index that keeps none."""
        if self._vectors is None:
            index = self.index.index
            try:
                self._vectors = index.reconstruct_n(0, index.ntotal)
            except RuntimeError:
                try:
                    import faiss

                    faiss.extract_index_ivf(index).make_direct_map()
                    self._vectors = index.reconstruct_n(0, index.ntotal)
                except RuntimeError:
                    raise NoVectors(f"{self.name}: its index keeps no vectors") from None
        return self._vectors

    def _rows(self, where: Filter | None) -> np.ndarray:
        if where is None or where.empty:
            return np.arange(len(self._meta))
        return np.flatnonzero(where.matches(self._meta))

    def search(self, queries: np.ndarray, k: int, where: Filter | None = None) -> list[Hits]:
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.info.dim:
            raise StoreError(
                f"{self.name}: query vectors of shape {q.shape}, the gallery holds "
                f"dimension {self.info.dim}"
            )
        none = Hits(np.zeros(0, np.int64), np.zeros(0, np.float32))
        if k <= 0 or len(self._meta) == 0:
            return [none for _ in q]
        if where is None or where.empty:
            scores, idx = self.index.search_vectors(q, k)
            return [Hits(i[i >= 0].astype(np.int64), s[i >= 0]) for s, i in zip(scores, idx)]
        rows = self._rows(where)
        if len(rows) == 0:
            return [none for _ in q]
        return exact_top_k(q, self.vectors()[rows], rows, k)

    def get(self, ids: Sequence[int] | np.ndarray, *, vectors: bool = True) -> Items:
        ids = np.asarray(ids, dtype=np.int64)
        n = len(self._meta)
        bad = ids[(ids < 0) | (ids >= n)]
        if len(bad):
            raise StoreError(f"{self.name}: no item {int(bad[0])} (ids run from 0 to {n - 1})")
        items = self._meta.take(ids)
        if vectors:
            items.vectors = self.vectors()[ids]
        return items

    def ids(self, where: Filter | None = None) -> np.ndarray:
        return self._rows(where).astype(np.int64)

    def count(self, where: Filter | None = None) -> int:
        return len(self._rows(where))

    def cameras(self) -> list[str]:
        return sorted({c for c in self._meta.camera if c})

    def sources(self) -> list[SourceState]:
        names, counts = np.unique(np.asarray(self._meta.source, dtype=object), return_counts=True)
        return [SourceState(str(s), int(c), True) for s, c in zip(names, counts)]

    def close(self) -> None:
        pass
