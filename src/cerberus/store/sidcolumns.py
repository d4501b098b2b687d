"""Description (APS) queries answered exactly from per-SID score columns (method §5.2).

A description query vector holds, in the slot of each given attribute group G, the unit
prototype ``u_s^G = p_s^G / ||p_s^G||`` of its chosen SID s, scaled by ``sqrt(5) / |given|``,
and zeros elsewhere (:func:`~cerberus.inference.scoring.attribute_query_vectors`). Its inner
product with an item's retrieval vector x (slots ``x^G``) is therefore

    q . x = sqrt(5) / |given| * sum over given G of  u_s^G . x^G

For every item the columns hold ``u_s^G . x^G`` for every SID s of every group (one float32
per SID: 78 for the benchmark generator's prototypes, whatever the vectors' dimension), so a
description query costs one to three column sums over the items and a top-k: the same inner
products an exhaustive search computes, in a few milliseconds at a million items. An IVF index
serves such queries badly: the items nearest a partial description ("female") are spread over
most of its cells, since their other slots vary freely.

The columns are a cache beside the approximate index (``sid.npy``, ``(S, rows)`` by item id;
``nan`` for an id with no item), filled as the index adds items.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cerberus.attributes.schema import GROUPS
from cerberus.store.topk import top_indices

SID_FILE = "sid.npy"
MATCH = 1e-4
"""A slot is read as a SID's prototype when its cosine with it is within this of 1, and the
given slots' lengths (the query's scale) agree within this share."""


class SidColumns:
    """``u_s^G . x^G`` for every SID s of every group G and every item id below :attr:`rows`
    (``table`` ``(S, capacity)`` float32; ``nan`` where no item was added)."""

    def __init__(self, prototypes: Mapping[str, np.ndarray], dim: int) -> None:
        self.dim, self.part = dim, dim // len(GROUPS)
        self.units = []
        for g in GROUPS:
            p = np.asarray(prototypes[g], np.float32)
            self.units.append(p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12))
        self.offsets = np.cumsum([0] + [len(u) for u in self.units])
        self.table = np.full((int(self.offsets[-1]), 0), np.nan, np.float32)
        self.rows = 0
        """Ids below this have their columns (those without an item hold ``nan``)."""

    @classmethod
    def of(cls, prototypes: Mapping[str, np.ndarray] | None, dim: int) -> SidColumns | None:
        """Columns for ``dim``-d vectors of five slots with these prototypes (``None`` when
        there are none, or they do not fit: no description query can be read then)."""
        if not prototypes or any(g not in prototypes for g in GROUPS):
            return None
        shapes = [np.shape(prototypes[g]) for g in GROUPS]
        if any(len(s) != 2 or s[0] == 0 or s[1] * len(GROUPS) != dim for s in shapes):
            return None
        return cls(prototypes, dim)

    @property
    def sids(self) -> int:
        return int(self.offsets[-1])

    def reserve(self, rows: int, grow: bool = False) -> None:
        """Make room for ids below ``rows`` (``grow``: at least double, for adds one batch at
        a time; new cells ``nan``)."""
        if rows <= self.table.shape[1]:
            return
        wide = max(rows, 2 * self.table.shape[1]) if grow else rows
        wider = np.full((self.sids, wide), np.nan, np.float32)
        wider[:, : self.table.shape[1]] = self.table
        self.table = wider

    def make_room_for(self, ids: np.ndarray) -> None:
        """An empty table for the items ``ids`` (unique) that :meth:`add` then fills:
        ``nan`` only in the columns of ids below the largest that are not among them (no
        pass writing ``nan`` over every column first: 0.5 s of a 1M build in
        ``benchmarks/profile_build.py``)."""
        rows = int(ids.max()) + 1 if len(ids) else 0
        self.table = np.empty((self.sids, rows), np.float32)
        self.rows = 0
        if len(ids) < rows:
            absent = np.ones(rows, bool)
            absent[ids] = False
            self.table[:, absent] = np.nan

    def add(self, ids: np.ndarray, vectors: np.ndarray, rows: int | None = None) -> None:
        """Fill the columns of items ``ids`` (``vectors`` ``(m, dim)``) and mark every id below
        ``rows`` (default: past the largest) as done."""
        ids = np.asarray(ids, np.int64)
        rows = max(self.rows, int(ids.max()) + 1 if len(ids) else 0, rows or 0)
        self.reserve(rows, grow=True)
        v = np.asarray(vectors, np.float32)
        run = len(ids) > 0 and ids[-1] - ids[0] + 1 == len(ids) and (np.diff(ids) == 1).all()
        at = slice(int(ids[0]), int(ids[-1]) + 1) if run else ids  # consecutive ids: a slice
        for g, unit in enumerate(self.units):
            part = v[:, g * self.part : (g + 1) * self.part]
            if run:  # a view of the table: the product is written in place
                np.matmul(unit, part.T, out=self.table[self.offsets[g] : self.offsets[g + 1], at])
            else:
                self.table[self.offsets[g] : self.offsets[g + 1], at] = unit @ part.T
        self.rows = rows

    def decode(self, query: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The columns (one per given group) and the scale of a description query vector
        ``(dim,)``; ``None`` when it is not one (a slot that is no SID's prototype, or slots
        of unequal length)."""
        slots = np.asarray(query, np.float64).reshape(len(GROUPS), self.part)
        norms = np.linalg.norm(slots, axis=1)
        if not np.isfinite(norms).all() or norms.max() <= 0:
            return None
        given = np.flatnonzero(norms > MATCH * norms.max())
        scale = float(norms[given].mean())
        if np.abs(norms[given] - scale).max() > MATCH * scale:
            return None
        cols = []
        for g in given:
            cos = self.units[g] @ (slots[g] / norms[g])
            s = int(np.argmax(cos))
            if cos[s] < 1 - MATCH:
                return None
            cols.append(int(self.offsets[g]) + s)
        return np.asarray(cols, np.int64), scale

    def scores(self, cols: np.ndarray, scale: float) -> np.ndarray:
        """``(rows,)``: every id's inner product with the query read as ``(cols, scale)``
        (``nan`` for ids with no item)."""
        t = self.table[:, : self.rows]
        out = t[cols[0]].copy()
        for c in cols[1:]:
            out += t[c]
        out *= np.float32(scale)
        return out

    def top(self, queries: np.ndarray, kk: int, passing: np.ndarray) -> np.ndarray | None:
        """Candidate ids ``(Q, kk)`` (``-1`` padding): per query the ``kk`` best of the ids
        ``passing`` (sorted, unique, all below :attr:`rows`); ``None`` when some query is not
        a description (:meth:`decode`). A few passing ids are scored where they are (the cost
        follows the filter); many, over every id with the others masked."""
        decoded = [self.decode(q) for q in queries]
        if any(d is None for d in decoded):
            return None
        passing = np.asarray(passing, np.int64)
        kk = max(1, kk)
        out = np.full((len(queries), kk), -1, np.int64)
        take = min(kk, len(passing))
        if take == 0:
            return out
        t = self.table[:, : self.rows]
        few = len(passing) * 8 < self.rows
        left_out = None
        if not few and len(passing) < self.rows:  # ids not passing (or with no item)
            left_out = np.ones(self.rows, bool)
            left_out[passing] = False
        for r, (cols, scale) in enumerate(decoded):
            if few:
                s = t[cols[0], passing]
                for c in cols[1:]:
                    s = s + t[c, passing]
            else:
                s = self.scores(cols, scale)
                if left_out is not None:
                    np.copyto(s, np.float32(-np.inf), where=left_out)
            best = top_indices(s, take)
            out[r, :take] = passing[best] if few else best
        return out

    # ---- the cache file

    def save(self, folder: Path) -> None:
        """Write ``sid.npy`` (a temporary file renamed into place); raises ``OSError`` /
        ``ValueError`` as ``np.save`` does (the caller reports it)."""
        tmp = folder / f"{SID_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as f:
                np.save(f, self.table[:, : self.rows])
            os.replace(tmp, folder / SID_FILE)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def load(self, folder: Path, rows: int) -> bool:
        """Read ``sid.npy`` if it holds these SIDs' columns for ``rows`` ids (otherwise the
        columns stay empty: filled again from the vectors)."""
        try:
            table = np.load(folder / SID_FILE, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return False
        if table.dtype != np.float32 or table.shape != (self.sids, rows):
            return False
        self.table, self.rows = table, rows  # np.load's own array: no copy
        return True
