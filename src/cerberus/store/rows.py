"""The SQLite side of the local gallery (method §9.1): its schema, filters compiled to SQL, and
items to rows and back."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import numpy as np

from cerberus.store.base import Filter, GalleryInfo, Items, StoreError

SCHEMA = """
CREATE TABLE gallery (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE segments (seg INTEGER PRIMARY KEY, file TEXT NOT NULL UNIQUE, rows INTEGER NOT NULL);
CREATE TABLE sources (name TEXT PRIMARY KEY, complete INTEGER NOT NULL);
CREATE TABLE items (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, camera TEXT NOT NULL, ts REAL,
    frame INTEGER NOT NULL, box BLOB NOT NULL, track INTEGER NOT NULL, path TEXT NOT NULL,
    pid INTEGER NOT NULL, vals BLOB NOT NULL, predicted BLOB NOT NULL, certainty BLOB NOT NULL,
    seg INTEGER NOT NULL, row INTEGER NOT NULL);
CREATE INDEX items_camera_ts ON items (camera, ts, seg, row);
CREATE INDEX items_source_track ON items (source, track, seg, row);
CREATE INDEX items_ts ON items (ts, seg, row);
"""
"""Tables of a local gallery. The indexes cover (seg, row): a filter's candidates and where their
vectors are come from an index range scan alone, without visiting the table."""

PATHS_SCHEMA = """
CREATE TABLE IF NOT EXISTS paths (
    part INTEGER PRIMARY KEY, source TEXT NOT NULL, camera TEXT NOT NULL, track INTEGER NOT NULL,
    first INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS paths_source_track ON paths (source, track, first);
CREATE INDEX IF NOT EXISTS paths_camera ON paths (camera);
"""
"""Track paths (:class:`~cerberus.store.base.TrackPath`), one row per part as added: ``first``
its first frame, ``n`` its frame count, ``data`` the :mod:`cerberus.store.pathcodec` blob.
Galleries written before paths existed have no such table: it is created (``IF NOT EXISTS``) in
the first add that brings paths, in that add's transaction, and a gallery without it has no
paths."""

COLUMNS = "id, source, camera, ts, frame, box, track, path, pid, vals, predicted, certainty"


def compile_filter(where: Filter | None) -> tuple[str, list]:
    """The SQL condition (``"1"`` for none) and its parameters for ``where`` (method §9.1's
    semantics: ``ts`` NULL never passes a time condition)."""
    if where is None or where.empty:
        return "1", []
    clauses: list[str] = []
    params: list = []
    if where.cameras is not None:
        clauses.append("camera IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(sorted(where.cameras)))
    if where.sources is not None:
        clauses.append("source IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(sorted(where.sources)))
    if where.tracks is not None:
        clauses.append(
            "(source, track) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')"
            " FROM json_each(?))"
        )
        params.append(json.dumps(sorted([s, int(t)] for s, t in where.tracks)))
    if where.after is not None:
        clauses.append("ts >= ?")
        params.append(float(where.after))
    if where.before is not None:
        clauses.append("ts < ?")
        params.append(float(where.before))
    return " AND ".join(clauses), params


def info_rows(info: GalleryInfo) -> list[tuple[str, bytes | str]]:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in info.prototypes.items()})
    try:
        facts = json.dumps(
            {
                "dim": int(info.dim),
                "fingerprint": info.fingerprint,
                "schema": info.schema,
                "checkpoint": info.checkpoint,
                "meta": info.meta,
            }
        )
    except TypeError as e:
        raise StoreError(f"gallery info: not storable as JSON ({e})") from None
    return [("info", facts), ("prototypes", buf.getvalue()), ("next_id", "0")]


def info_of(rows: dict[str, bytes | str]) -> GalleryInfo:
    facts = json.loads(rows["info"])
    with np.load(io.BytesIO(rows["prototypes"]), allow_pickle=False) as z:
        prototypes = {k: z[k] for k in z.files}
    return GalleryInfo(
        dim=int(facts["dim"]),
        fingerprint=facts["fingerprint"],
        schema=facts["schema"],
        prototypes=prototypes,
        checkpoint=facts.get("checkpoint", ""),
        meta=facts.get("meta", {}),
    )


def item_rows(items: Items, ids: np.ndarray, seg: int) -> Iterator[tuple]:
    """The ``items`` table rows (:data:`COLUMNS`, seg, row) of a batch stored in segment
    ``seg`` (row ``i`` of the segment is item ``i``)."""
    ts = items.timestamp
    for i in range(len(items)):
        t = float(ts[i])
        yield (
            int(ids[i]),
            items.source[i],
            items.camera[i],
            None if t != t else t,
            int(items.frame[i]),
            items.box[i].astype(np.float32).tobytes(),
            int(items.track[i]),
            items.path[i],
            int(items.pid[i]),
            items.values[i].astype(np.int16).tobytes(),
            items.predicted[i].astype(np.int16).tobytes(),
            items.certainty[i].astype(np.float32).tobytes(),
            seg,
            i,
        )


def items_of_rows(rows: list[tuple], attrs: int, vectors: np.ndarray) -> Items:
    """Items of ``items`` table rows (:data:`COLUMNS` first) with their ``vectors``."""
    n = len(rows)

    def blobs(col: int, dtype, width: int) -> np.ndarray:
        if not n:
            return np.zeros((0, width), dtype)
        return np.frombuffer(b"".join(r[col] for r in rows), dtype).reshape(n, width).copy()

    return Items(
        vectors=vectors,
        source=[r[1] for r in rows],
        camera=[r[2] for r in rows],
        timestamp=np.array([np.nan if r[3] is None else r[3] for r in rows], np.float64),
        frame=np.array([r[4] for r in rows], np.int64),
        box=blobs(5, np.float32, 4),
        track=np.array([r[6] for r in rows], np.int64),
        path=[r[7] for r in rows],
        pid=np.array([r[8] for r in rows], np.int64),
        values=blobs(9, np.int16, attrs),
        predicted=blobs(10, np.int16, attrs),
        certainty=blobs(11, np.float32, 5),
        ids=np.array([r[0] for r in rows], np.int64),
    )
