"""The local gallery's filter columns held in memory (issue 31): per item its id, where its
vector is (segment, row), its camera, source and time as NumPy arrays, so that a filter's
items cost a few array operations (about 1-5 ms at 1M items) instead of an SQLite range scan
that turns every passing item into text (100+ ms for 100,000 items).

They are a cache of the ``items`` table, read once per process and kept while the gallery's
:func:`state` is unchanged: the next id (an add moves it: the new items, whose ids are all
above the old ones, are appended), the item count and the ``reshaped`` fact, which every
removal, replacement and compaction raises (then they are read again whole). A filter on
tracks is left to SQL (:meth:`Columns.supports`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import numpy as np

from cerberus.store.base import Filter

State = tuple[int, int, int]
"""``(reshaped, next_id, count)`` of a gallery, read from its ``gallery`` table."""


def state(conn: sqlite3.Connection) -> State:
    """The gallery's :data:`State` (one query)."""
    facts = dict(
        conn.execute(
            "SELECT key, value FROM gallery WHERE key IN ('reshaped', 'next_id', 'count')"
        ).fetchall()
    )
    return tuple(int(facts.get(key) or 0) for key in ("reshaped", "next_id", "count"))


def bump_reshaped(conn: sqlite3.Connection) -> None:
    """Record (inside the writer's transaction) that items were removed or moved."""
    conn.execute(
        "INSERT INTO gallery VALUES ('reshaped', 1) ON CONFLICT (key) "
        "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def _ints(text: str | None, width: int) -> np.ndarray:
    """``(m, width)`` int64 from SQLite's ``group_concat`` of comma-joined integers."""
    if not text:
        return np.zeros((0, width), np.int64)
    return np.fromstring(text, dtype=np.int64, sep=",").reshape(-1, width)


def _coded(conn: sqlite3.Connection, column: str, start: int, names: list[str]) -> tuple:
    """``(ids, codes)`` of the items with id at least ``start``: each one's ``column`` value as
    its place in ``names`` (new names appended to it)."""
    place = {name: i for i, name in enumerate(names)}
    ids, codes = [], []
    for name, text in conn.execute(
        f"SELECT {column}, group_concat(id) FROM items WHERE id >= ? GROUP BY {column}", (start,)
    ):
        got = _ints(text, 1)[:, 0]
        if name not in place:
            place[name] = len(names)
            names.append(name)
        ids.append(got)
        codes.append(np.full(len(got), place[name], np.int32))
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    ids_, codes_ = np.concatenate(ids), np.concatenate(codes)
    order = np.argsort(ids_, kind="stable")
    return ids_[order], codes_[order]


@dataclass
class Columns:
    """The items' ids (sorted), segment numbers, rows, camera and source codes (places in
    :attr:`cameras` / :attr:`sources`) and times (``nan``: none), as of :attr:`state`."""

    state: State
    ids: np.ndarray
    seg: np.ndarray
    row: np.ndarray
    camera: np.ndarray
    source: np.ndarray
    ts: np.ndarray
    cameras: list[str]
    sources: list[str]
    _pairs: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def read(cls, conn: sqlite3.Connection, since: Columns | None = None) -> Columns:
        """Read them in one read transaction; with ``since`` (columns of an earlier state of
        the same gallery, no removal between) only the items added after it are read."""
        conn.execute("BEGIN")
        try:
            now = state(conn)
            start = 0 if since is None else since.state[1]
            cameras = [] if since is None else list(since.cameras)
            sources = [] if since is None else list(since.sources)
            a = _ints(
                conn.execute(
                    "SELECT group_concat(id || ',' || seg || ',' || row) FROM items "
                    "WHERE id >= ?",
                    (start,),
                ).fetchone()[0],
                3,
            )
            a = a[np.argsort(a[:, 0], kind="stable")]
            times = conn.execute("SELECT id, ts FROM items WHERE id >= ?", (start,)).fetchall()
            cam_ids, camera = _coded(conn, "camera", start, cameras)
            src_ids, source = _coded(conn, "source", start, sources)
        finally:
            conn.execute("COMMIT")
        t = np.array([(np.nan if ts is None else ts) for _, ts in times], np.float64)
        t_ids = np.fromiter((i for i, _ in times), np.int64, len(times))
        t = t[np.argsort(t_ids, kind="stable")]
        ids = a[:, 0]
        same = np.array_equal(cam_ids, ids) and np.array_equal(src_ids, ids)
        if not same or len(t) != len(ids):  # one read transaction: cannot happen
            raise RuntimeError("the items changed while their columns were read")
        new = cls(now, ids, a[:, 1], a[:, 2], camera, source, t, cameras, sources)
        if since is None:
            return new
        return cls(
            now,
            *(np.concatenate([getattr(since, f), getattr(new, f)])
              for f in ("ids", "seg", "row", "camera", "source", "ts")),
            cameras,
            sources,
        )  # fmt: skip

    def appended(self, now: State) -> bool:
        """Whether the gallery at ``now`` differs from these columns by added items only."""
        reshaped, next_id, count = self.state
        return now[0] == reshaped and now[1] > next_id and now[2] > count

    @staticmethod
    def supports(where: Filter | None) -> bool:
        """Whether :meth:`positions` can evaluate ``where`` (tracks are left to SQL)."""
        return where is None or where.tracks is None

    def keep(self, where: Filter | None, at: np.ndarray | None = None) -> np.ndarray:
        """``(m,)`` bool: which items (all, or those at positions ``at``) pass ``where``
        (:meth:`Filter.matches`' rule: a time condition never passes an item without a
        time)."""
        sel = slice(None) if at is None else at
        n = len(self.ids) if at is None else len(at)
        keep = np.ones(n, bool)
        if where is None:
            return keep
        for names, codes, wanted in (
            (self.cameras, self.camera, where.cameras),
            (self.sources, self.source, where.sources),
        ):
            if wanted is not None:
                table = np.array([name in wanted for name in names] + [False], bool)
                keep &= table[codes[sel]]
        if where.after is not None:
            keep &= self.ts[sel] >= where.after
        if where.before is not None:
            keep &= self.ts[sel] < where.before
        return keep

    def count(self, where: Filter | None) -> int:
        """How many items pass ``where``: for a filter on cameras and sources only, summed
        from the item counts per (camera, source) pair (computed once for these columns), with
        no pass over the items (a broad filter needs its count, not its items: ``LocalStore``'s
        broad path); with a time condition, :meth:`keep`'s mask counted."""
        if where is None:
            return len(self.ids)
        if where.after is not None or where.before is not None:
            return int(self.keep(where).sum())
        if self._pairs is None:
            width = max(len(self.sources), 1)
            pair = self.camera.astype(np.int64) * width + self.source
            self._pairs = np.bincount(pair, minlength=len(self.cameras) * width).reshape(
                len(self.cameras), width
            )
        rows = (
            slice(None)
            if where.cameras is None
            else np.array([name in where.cameras for name in self.cameras], bool)
        )
        cols = (
            slice(None)
            if where.sources is None
            else np.array([name in where.sources for name in self.sources], bool)
        )
        return int(self._pairs[rows][:, cols].sum())

    def positions(self, where: Filter | None) -> np.ndarray:
        """Positions (into :attr:`ids`) of the items passing ``where``, in id order."""
        return np.flatnonzero(self.keep(where))

    def lookup(self, wanted: np.ndarray, where: Filter | None = None) -> np.ndarray:
        """Positions of the ids ``wanted`` (those held and passing ``where``), in id order."""
        wanted = np.unique(wanted)
        at = np.clip(np.searchsorted(self.ids, wanted), 0, max(len(self.ids) - 1, 0))
        at = at[self.ids[at] == wanted] if len(self.ids) else at[:0]
        return at[self.keep(where, at)]
