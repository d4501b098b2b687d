"""Result rows of a ranked list (method §5, §9.2): what ``search`` prints, the page shows and
:func:`cerberus.evaluation.figures.rank_list_from_rows` draws."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from cerberus.attributes.schema_files import schema_from_meta
from cerberus.inference.scoring import AttributeQuery
from cerberus.store import NO_FRAME, NO_TRACK, UNKNOWN, GalleryStore, Hits, Items
from cerberus.store import from_utc_seconds as _from_utc


def iso_time(seconds: float | None) -> str | None:
    """ISO-8601 UTC of ``seconds`` since the epoch (``...+00:00``), ``None`` when unknown (or
    not a calendar time: an infinite time written before the store refused them)."""
    if seconds is None or not math.isfinite(float(seconds)):
        return None
    try:
        moment = _from_utc(float(seconds))
    except (OverflowError, ValueError, OSError):
        return None
    return None if moment is None else moment.isoformat()


def camera_number(camera: str, labels: Sequence[str] = ()) -> int | None:
    """The camera number of a camera name: its place in a table dataset's ``camera_labels``,
    else ``n - 1`` of a benchmark name ``c<n>``; ``None`` when neither."""
    if not camera:
        return None
    if labels and camera in labels:
        return list(labels).index(camera)
    m = re.fullmatch(r"c(\d+)", camera)
    return int(m.group(1)) - 1 if m else None


def item_row(items: Items, j: int, labels: Sequence[str] = ()) -> dict[str, Any]:
    """What a row says of item ``j`` of ``items``: id, path, identity, camera (name and
    number), time (ISO-8601 UTC), source, frame, box and track (``None`` where unknown)."""
    pid = int(items.pid[j])
    box = items.box[j]
    return {
        "id": int(items.ids[j]),
        "path": items.path[j],
        "pid": None if pid == UNKNOWN else pid,
        "camid": camera_number(items.camera[j], labels),
        "camera": items.camera[j] or None,
        "time": iso_time(float(items.timestamp[j])),
        "source": items.source[j],
        "frame": None if int(items.frame[j]) == NO_FRAME else int(items.frame[j]),
        "box": None if np.isnan(box).any() else [float(x) for x in box],
        "track": None if int(items.track[j]) == NO_TRACK else int(items.track[j]),
    }


def result_rows(
    store: GalleryStore,
    result: Hits,
    *,
    query_pid: int = UNKNOWN,
    query_camid: int = UNKNOWN,
    attribute_query: AttributeQuery | None = None,
) -> list[dict[str, Any]]:
    """A ranked list as rows: rank, score, :func:`item_row` (path, identity, camera, time,
    source, frame, box, track) and whether it is correct.

    ``correct`` is known for a reID query when both identities are known (same identity), and
    for an attribute query when the gallery item's attribute values are known (every given
    attribute equal); ``None`` otherwise. ``query_camid`` is kept for callers; it changes
    nothing.
    """
    ids = np.asarray(result.ids, dtype=np.int64)
    if len(ids) == 0:
        return []
    items = store.get(ids, vectors=False)
    labels = store.info.meta.get("camera_labels", ()) or ()
    schema = schema_from_meta(store.info.schema, "gallery") if attribute_query else None
    rows = []
    for j, s in enumerate(result.scores):
        row = {"rank": j + 1, "score": float(s), **item_row(items, j, labels)}
        correct: bool | None = None
        pid = row["pid"]
        if attribute_query is None:
            if query_pid != UNKNOWN and pid is not None:
                correct = pid == query_pid
        elif (items.values[j] >= 0).all():
            correct = all(
                int(items.values[j][schema.index(n)]) == v for n, v in attribute_query.given.items()
            )
        row["correct"] = correct
        rows.append(row)
    return rows
