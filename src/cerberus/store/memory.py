"""A gallery store in memory, by brute force (method §9.1): the slow obvious reference that the
contract tests compare every backend with, and a store for small galleries in tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cerberus.store.base import (
    Filter,
    GalleryInfo,
    Hits,
    Items,
    SourceState,
    StoreError,
    TrackPath,
    check_nprobe,
    check_query_kind,
    check_search,
)
from cerberus.store.topk import exact_top_k


class MemoryStore:
    """Every item in NumPy arrays; :meth:`search` is an exact matrix product over the items
    that pass the filter (ties broken by the smaller id)."""

    def __init__(self, info: GalleryInfo, *, name: str = "memory gallery") -> None:
        self.info = info
        self.name = name
        self._items: Items | None = None
        self._next_id = 0
        self._complete: set[str] = set()
        self._paths: dict[tuple[str, int], list[TrackPath]] = {}

    # ---- writing

    def add(
        self,
        items: Items,
        *,
        replace: bool = False,
        complete: bool = True,
        paths: Sequence[TrackPath] = (),
    ) -> np.ndarray:
        items.check()
        if items.vectors.shape[1] != self.info.dim:
            raise StoreError(
                f"{self.name}: vectors of dimension {items.vectors.shape[1]}, "
                f"the gallery holds {self.info.dim}"
            )
        if self._items is not None and len(items) and (
            items.values.shape[1] != self._items.values.shape[1]
        ):
            raise StoreError(
                f"{self.name}: items with {items.values.shape[1]} attributes, the gallery "
                f"holds {self._items.values.shape[1]}"
            )
        batch_sources = sorted(set(items.source))
        done = [s for s in batch_sources if s in self._complete]
        if done and not replace:
            raise StoreError(
                f"{self.name}: source {done[0]} is already in the gallery "
                "(remove it first, or replace it)"
            )
        path_sources = sorted({p.source for p in paths} - set(batch_sources))
        done_paths = [s for s in path_sources if s in self._complete]
        if done_paths and not replace:
            raise StoreError(f"{self.name}: source {done_paths[0]} is already in the gallery")
        for s in done + done_paths:
            self.remove(source=s)
        for p in paths:
            self._paths.setdefault((p.source, int(p.track)), []).append(p)
        ids = np.arange(self._next_id, self._next_id + len(items), dtype=np.int64)
        self._next_id += len(items)
        new = items.with_ids(ids)
        self._items = new if self._items is None else Items.concat([self._items, new])
        if complete:
            self._complete.update(batch_sources)
        return ids

    def finish(self, source: str) -> None:
        self._complete.add(source)  # with no items (a video with nobody in it) too

    def remove(
        self, *, source: str | None = None, camera: str | None = None, before: float | None = None
    ) -> int:
        if (source is None) == (camera is None):
            raise StoreError(f"{self.name}: remove by source or by camera (one of them)")
        if before is not None and camera is None:
            raise StoreError(f"{self.name}: remove before a time is by camera only")
        if source is not None:
            self._complete.discard(source)
        if before is None:
            for key, parts in list(self._paths.items()):
                if key[0] == source or (camera is not None and parts[0].camera == camera):
                    del self._paths[key]
        if self._items is None:
            return 0
        col = self._items.source if source is not None else self._items.camera
        key = source if source is not None else camera
        gone = np.array([x == key for x in col], dtype=bool)
        if before is not None:
            gone &= self._items.timestamp < float(before)  # nan (no time) is kept
        touched = {s for s, g in zip(self._items.source, gone) if g}
        if gone.any():
            self._items = self._items.take(np.flatnonzero(~gone))
        if before is not None:  # a track's path goes with its last item
            left = set(zip(self._items.source, self._items.track.tolist()))
            for k, parts in list(self._paths.items()):
                if parts[0].camera == camera and k not in left:
                    del self._paths[k]
        # sources left without items by a camera's removal go; finished empty sources stay;
        # after retention (``before``) a source stays recorded
        if before is None:
            self._complete -= touched - set(self._items.source)
        return int(gone.sum())

    # ---- reading

    def paths(self, source: str | None = None, track: int | None = None) -> list[TrackPath]:
        return [
            TrackPath.join(parts)
            for (s, t), parts in sorted(self._paths.items())
            if (source is None or s == source) and (track is None or t == track)
        ]

    def _rows(self, where: Filter | None) -> np.ndarray:
        if self._items is None:
            return np.zeros(0, np.int64)
        if where is None or where.empty:
            return np.arange(len(self._items))
        return np.flatnonzero(where.matches(self._items))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        where: Filter | None = None,
        *,
        exact: bool = False,
        nprobe: int | None = None,
        kind: str = "photo",
    ) -> list[Hits]:
        """Exact top-k by brute force (``exact`` and ``nprobe``, checked, change nothing)."""
        check_nprobe(nprobe, self.name)
        check_query_kind(kind, self.name)
        q, k = check_search(self.name, queries, k, self.info.dim)
        rows = self._rows(where)
        if len(rows) == 0 or len(q) == 0:
            return [Hits(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in q]
        block = (np.asarray(self._items.vectors[rows], np.float64), self._items.ids[rows])
        return exact_top_k(np.asarray(q, np.float64), [block], k)  # float64: the reference

    def get(self, ids: Sequence[int] | np.ndarray, *, vectors: bool = True) -> Items:
        ids = np.asarray(ids, dtype=np.int64)
        if self._items is None:
            if len(ids):
                raise StoreError(f"{self.name}: no item {int(ids[0])}")
            raise StoreError(f"{self.name}: the gallery is empty")
        where = {int(i): r for r, i in enumerate(self._items.ids)}
        missing = [int(i) for i in ids if int(i) not in where]
        if missing:
            raise StoreError(f"{self.name}: no item {missing[0]}")
        return self._items.take([where[int(i)] for i in ids])

    def ids(self, where: Filter | None = None) -> np.ndarray:
        rows = self._rows(where)
        return np.zeros(0, np.int64) if self._items is None else self._items.ids[rows]

    def count(self, where: Filter | None = None) -> int:
        return len(self._rows(where))

    def cameras(self) -> list[str]:
        return [] if self._items is None else sorted({c for c in self._items.camera if c})

    def sources(self) -> list[SourceState]:
        counts = dict.fromkeys(self._complete, 0)  # finished sources with no items count too
        if self._items is not None:
            names, n = np.unique(np.asarray(self._items.source, dtype=object), return_counts=True)
            counts.update({str(s): int(c) for s, c in zip(names, n)})
        return [SourceState(s, counts[s], s in self._complete) for s in sorted(counts)]

    def close(self) -> None:
        pass
