"""How a gallery's items, filters and facts are written in Milvus' terms (method §9.1): rows,
boolean expressions, the :class:`GalleryInfo` as JSON text. No pymilvus here."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from cerberus.store import pathcodec
from cerberus.store.base import Filter, GalleryInfo, Items, StoreError, TrackPath

NO_TIME = -9.0e15
"""``ts`` of an item without a time (about 285 million years before 1970): never a real time."""

MAX_NAME = 4096
"""Longest source name / path / camera name (bytes, UTF-8) a row holds."""

PATH_PIECE = 1500
"""Frames of a track path per row: the base64 text of even an incompressible piece (25 bytes a
frame, 4/3 of it in base64: 50 kB) fits a VARCHAR of 65,535 bytes."""


def quote(text: str) -> str:
    """``text`` as a Milvus expression string literal (backslash, quote and line breaks
    escaped; Milvus knows no ``\\u`` escapes, other characters pass as they are).

    Not pymilvus' filter templating (``filter="camera in {cams}"``, ``filter_params=...``):
    pymilvus 3.0.2 sends the values, but Milvus Lite 3.2.2 ignores them and parses the bare
    expression (``unexpected character '{'``, in query, search, query_iterator and delete
    alike), and one expression must serve Lite files and servers."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{out}"'


def number(x: float) -> str:
    x = float(x)
    if not math.isfinite(x):
        raise StoreError(f"time {x}: not a finite number of seconds")
    return repr(x)


def strings(values: Sequence[str]) -> str:
    return "[" + ", ".join(quote(v) for v in sorted(values)) + "]"


def floats(row: np.ndarray) -> list[float | None]:
    return [None if math.isnan(x) else float(x) for x in row.tolist()]


def unfloats(values: list[float | None] | None, width: int) -> list[float]:
    if not values:
        return [math.nan] * width
    return [math.nan if v is None else float(v) for v in values]


def encode_info(info: GalleryInfo) -> str:
    protos = {
        k: {
            "dtype": str(np.asarray(v).dtype),
            "shape": list(np.asarray(v).shape),
            "data": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode("ascii"),
        }
        for k, v in info.prototypes.items()
    }
    payload = {
        "dim": int(info.dim),
        "fingerprint": info.fingerprint,
        "schema": info.schema,
        "checkpoint": info.checkpoint,
        "meta": info.meta,
        "prototypes": protos,
    }
    try:
        return json.dumps(payload, ensure_ascii=True)
    except (TypeError, ValueError) as e:
        raise StoreError(f"gallery info: not storable as JSON ({e})") from None


def decode_info(text: str) -> GalleryInfo:
    p = json.loads(text)
    protos = {
        k: np.frombuffer(base64.b64decode(v["data"]), dtype=v["dtype"]).reshape(v["shape"]).copy()
        for k, v in p["prototypes"].items()
    }
    return GalleryInfo(
        dim=int(p["dim"]),
        fingerprint=p["fingerprint"],
        schema=p["schema"],
        prototypes=protos,
        checkpoint=p["checkpoint"],
        meta=p["meta"],
    )


def visible(state: dict[str, Any]) -> str:
    """The rows a reader sees: committed batches, less the rows a replace hides."""
    parts = [f"batch <= {int(state['committed'])}"]
    for source, batch in state.get("hide", []):
        parts.append(f"not (source == {quote(source)} and batch < {int(batch)})")
    return " and ".join(parts)


def hidden(state: dict[str, Any]) -> str:
    """The rows a reader does not see (``not visible``, written so that Milvus can use its
    scalar indexes: ``batch > W or ...``)."""
    parts = [f"batch > {int(state['committed'])}"]
    for source, batch in state.get("hide", []):
        parts.append(f"(source == {quote(source)} and batch < {int(batch)})")
    return " or ".join(parts)


def compile_filter(where: Filter | None, state: dict[str, Any]) -> str | None:
    """The Milvus boolean expression of ``where`` over committed rows; ``None`` when
    nothing can pass (an empty name set)."""
    parts = [visible(state)]
    if where is not None:
        if where.cameras is not None:
            if not where.cameras:
                return None
            parts.append(f"camera in {strings(where.cameras)}")
        if where.sources is not None:
            if not where.sources:
                return None
            parts.append(f"source in {strings(where.sources)}")
        if where.tracks is not None:
            if not where.tracks:
                return None
            per_source: dict[str, list[int]] = {}
            for source, track in where.tracks:
                per_source.setdefault(source, []).append(int(track))
            alts = [
                f"(source == {quote(s)} and track in {sorted(t)})"
                for s, t in sorted(per_source.items())
            ]
            parts.append("(" + " or ".join(alts) + ")")
        if where.after is not None or where.before is not None:
            parts.append(f"ts > {number(NO_TIME)}")
        if where.after is not None:
            parts.append(f"ts >= {number(where.after)}")
        if where.before is not None:
            parts.append(f"ts < {number(where.before)}")
    return " and ".join(parts)


def item_rows(items: Items, ids: np.ndarray, batch: int, per_call: int) -> Iterator[list[dict]]:
    """Milvus rows of ``items`` (ids ``ids``, batch ``batch``), ``per_call`` at a time."""
    ts = np.where(np.isnan(items.timestamp), NO_TIME, items.timestamp)
    for start in range(0, len(items), per_call):
        rows = []
        for i in range(start, min(start + per_call, len(items))):
            rows.append(
                {
                    "id": int(ids[i]),
                    "vector": items.vectors[i],
                    "batch": batch,
                    "source": items.source[i],
                    "camera": items.camera[i],
                    "ts": float(ts[i]),
                    "frame": int(items.frame[i]),
                    "track": int(items.track[i]),
                    "pid": int(items.pid[i]),
                    "path": items.path[i],
                    "box": floats(items.box[i]),
                    "values": items.values[i].tolist(),
                    "predicted": items.predicted[i].tolist(),
                    "certainty": floats(items.certainty[i]),
                }
            )
        yield rows


def rows_to_items(rows: list[dict[str, Any]], ids: np.ndarray, dim: int, vectors: bool) -> Items:
    """Items of Milvus rows (``ids`` in their order); vectors ``(n, 0)`` without ``vectors``."""
    n, a = len(rows), len(rows[0]["values"]) if rows else 0
    ts = np.array([r["ts"] for r in rows], dtype=np.float64)
    return Items(
        vectors=(
            np.array([r["vector"] for r in rows], dtype=np.float32).reshape(n, dim)
            if vectors
            else np.zeros((n, 0), np.float32)
        ),
        source=[r["source"] for r in rows],
        camera=[r["camera"] for r in rows],
        timestamp=np.where(ts <= NO_TIME, np.nan, ts),
        frame=np.array([r["frame"] for r in rows], dtype=np.int64),
        box=np.array([unfloats(r["box"], 4) for r in rows], dtype=np.float32).reshape(n, 4),
        track=np.array([r["track"] for r in rows], dtype=np.int64),
        path=[r["path"] for r in rows],
        pid=np.array([r["pid"] for r in rows], dtype=np.int64),
        values=np.array([r["values"] for r in rows], dtype=np.int16).reshape(n, a),
        predicted=np.array([r["predicted"] for r in rows], dtype=np.int16).reshape(n, a),
        certainty=np.array([unfloats(r["certainty"], 5) for r in rows], dtype=np.float32).reshape(
            n, 5
        ),
        ids=ids.copy(),
    )


def path_rows(paths: Sequence[TrackPath], batch: int, per_call: int = 64) -> Iterator[list[dict]]:
    """Milvus rows of track ``paths`` (pieces of at most :data:`PATH_PIECE` frames, numbered
    ``seq`` in the batch's order), ``per_call`` rows at a time."""
    rows: list[dict] = []
    seq = 0
    for p in paths:
        for start in range(0, max(len(p), 1), PATH_PIECE):
            piece = slice(start, start + PATH_PIECE)
            part = TrackPath(
                p.source, p.camera, p.track, p.frames[piece], p.boxes[piece], p.detected[piece]
            )
            blob = pathcodec.encode(part)
            rows.append(
                {
                    "batch": batch,
                    "seq": seq,
                    "source": p.source,
                    "camera": p.camera,
                    "track": int(p.track),
                    "n": len(part),
                    "data": base64.b64encode(blob).decode("ascii"),
                    "vector": [0.0, 0.0],
                }
            )
            seq += 1
            if len(rows) == per_call:
                yield rows
                rows = []
    if rows:
        yield rows


def rows_to_path(row: dict[str, Any]) -> TrackPath:
    """The :class:`TrackPath` piece of one row written by :func:`path_rows`."""
    blob = base64.b64decode(row["data"])
    return pathcodec.decode(row["source"], row["camera"], int(row["track"]), int(row["n"]), blob)
