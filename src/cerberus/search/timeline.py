"""Where else was this person? (method §9.2): from one gallery item, the sightings of the same
person in every camera, laid out by time.

The query is the item's track's vector (:func:`~cerberus.search.tracks.track_vector`: the mean
of its crops' per-part normalised vectors, renormalised per part), or the item's own vector
when it has no track. The gallery (every camera, or the crops passing a filter) is searched
with it; the crops the calibrated verdict calls the same person are kept (score above the
threshold, or above ``min_score``), grouped per track, and each group is one sighting: camera,
first and last time, best score and best crop.

A model without a calibration (``cerberus calibrate``, or the one training stores) cannot say
"same person". Its sightings are then the item's own track (the tracker's word, whatever the
scores) and the crops scoring above :data:`~cerberus.search.verdicts.DEFAULT_THRESHOLD`; the
other crops of the top ``k`` are returned apart, as ``candidates``, grouped the same way: people
to check by eye, not sightings.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cerberus.errors import CerberusError
from cerberus.search.rows import iso_time
from cerberus.search.tracks import group_keys, track_items, track_vector
from cerberus.search.verdicts import DEFAULT_THRESHOLD, Verdicts
from cerberus.store import Filter

Gallery = Any
"""A :class:`cerberus.search.gallery.Gallery` (not imported: it imports this module)."""


def _above(gallery: Gallery, q: np.ndarray, where: Filter | None, floor: float, **how: Any):
    """Every item passing ``where`` whose score is above ``floor`` (k grown until the last
    score fetched is at or below it, or the filtered gallery is exhausted); ``how``: the
    store's ``exact`` / ``nprobe``."""
    m = 64
    while True:
        (hits,) = gallery.store.search(q[None], m, where, **how)
        if len(hits) < m or float(hits.scores[-1]) <= floor:
            keep = hits.scores > floor
            return hits.ids[keep], hits.scores[keep]
        m *= 4


def timeline(
    gallery: Gallery,
    item_id: int,
    *,
    where: Filter | None = None,
    min_score: float | None = None,
    k: int = 100,
    per_item: bool = False,
    fpr: float | None = None,
    exact: bool = False,
    nprobe: int | None = None,
) -> dict[str, Any]:
    """The sightings of item ``item_id``'s person, sorted by time (JSON-able).

    Returns ``query`` (the item, its track and how the query vector was made), ``rule`` (the
    threshold the sightings passed and where it comes from), ``threshold``, ``calibrated``
    (whether it is a calibrated one), ``sightings``: per track (or item without a track)
    ``camera``, ``start`` / ``end`` (ISO-8601 UTC, ``None`` when the crops have no time),
    ``score`` (best crop), ``item`` (best crop's id), ``count``, ``source``, ``track`` and
    ``query`` (the query's own track, or the item itself when it has none), and
    ``candidates``: the same for the other crops of the top ``k`` when the model has no
    calibration and no ``min_score`` is given (else ``[]``). ``per_item``: query with the
    item's own vector even when it has a track. ``exact`` / ``nprobe``: how the store searches
    (:meth:`~cerberus.search.gallery.Gallery.vector_top`).
    """
    how = {"exact": exact, "nprobe": nprobe}
    if k < 1:
        raise CerberusError(f"timeline: k {k} must be at least 1")
    if min_score is not None and not math.isfinite(min_score):
        raise CerberusError(f"--min-score {min_score}: must be a finite number")
    item = gallery.item(item_id)
    tracked = item["track"] is not None
    own = (item["source"], item["track"]) if tracked else ("", -1 - int(item["id"]))
    if tracked and not per_item:
        members = track_items(gallery.store, [own], None, vectors=True)[own]
        q, made = track_vector(members.vectors), f"mean of its track's {len(members)} crops"
    else:
        q, made = gallery.item_vectors([item_id])[0], "the item's own vector"
    q = np.asarray(q, np.float32)
    verdicts = Verdicts.of(gallery.net, fpr) if gallery.net is not None else None
    calibrated = min_score is None and verdicts is not None and verdicts.point is not None
    candidates: list[dict[str, Any]] = []
    if min_score is not None:
        floor, rule = float(min_score), f"score > {min_score:g} (given)"
        ids, scores = _above(gallery, q, where, floor, **how)
    elif calibrated:
        floor, rule = float(verdicts.point["threshold"]), f"same person: {verdicts.text}"
        ids, scores = _above(gallery, q, where, floor, **how)
    else:
        floor = DEFAULT_THRESHOLD
        rule = (
            f"no calibrated threshold: the person's own track and crops scoring above the "
            f"default {floor:g}; the rest of the top {k} crops are candidates, not sightings "
            "(`cerberus calibrate` gives the model a threshold)"
        )
        ids, scores, other, other_scores = _uncalibrated(gallery, q, own, where, floor, k, how)
        candidates = _sightings(gallery, other, other_scores, own)
    return {
        "query": {**item, "vector": made},
        "rule": rule,
        "threshold": floor,
        "calibrated": calibrated,
        "sightings": _sightings(gallery, ids, scores, own),
        "candidates": candidates,
    }


def _uncalibrated(
    gallery: Gallery,
    q: np.ndarray,
    own,
    where: Filter | None,
    floor: float,
    k: int,
    how: dict[str, Any],
):
    """Without a calibration: ``(ids, scores)`` of the sightings, the crops of the query's own
    group (passing ``where``) and those scoring above ``floor``; and ``(ids, scores)`` of the
    candidates, the other crops of the top ``k`` whose group is not already a sighting;
    ``how``: the store's ``exact`` / ``nprobe``."""
    mine = track_items(gallery.store, [own], where).get(own)
    if mine is not None and own[0] == "" and where is not None:
        mine = mine.take(np.flatnonzero(where.matches(mine)))  # the item alone: filtered too
    own_ids = np.zeros(0, np.int64) if mine is None else np.asarray(mine.ids, np.int64)
    own_scores = np.zeros(0, np.float32)
    if len(own_ids):  # item_vectors: an .npz kind keeping no vectors embeds the crops again
        own_scores = (gallery.item_vectors(own_ids) @ q).astype(np.float32)
    above, above_scores = _above(gallery, q, where, floor, **how)
    new = ~np.isin(above, own_ids)
    ids = np.concatenate([own_ids, above[new]])
    scores = np.concatenate([own_scores, above_scores[new]])
    (hits,) = gallery.store.search(q[None], k, where, **how)
    rest = ~np.isin(hits.ids, ids)
    other, other_scores = hits.ids[rest], hits.scores[rest]
    if len(other) and len(ids):
        taken = set(group_keys(gallery.store.get(ids, vectors=False)))
        keys = group_keys(gallery.store.get(other, vectors=False))
        apart = np.array([key not in taken for key in keys], bool)
        other, other_scores = other[apart], other_scores[apart]
    return ids, scores, other, other_scores


def _sightings(gallery: Gallery, ids, scores, own) -> list[dict[str, Any]]:
    if len(ids) == 0:
        return []
    items = gallery.store.get(ids, vectors=False)
    groups: dict[tuple[str, int], list[int]] = {}
    for j, key in enumerate(group_keys(items)):
        groups.setdefault(key, []).append(j)
    out = []
    for key, rows in groups.items():
        best = rows[int(np.argmax(scores[rows]))]
        t = items.timestamp[rows]
        t = t[~np.isnan(t)]
        track = int(items.track[best])
        out.append(
            {
                "camera": items.camera[best] or None,
                "start": iso_time(float(t.min())) if len(t) else None,
                "end": iso_time(float(t.max())) if len(t) else None,
                "score": float(scores[best]),
                "item": int(items.ids[best]),
                "count": len(rows),
                "source": items.source[best],
                "track": None if key[0] == "" else track,
                "query": key == own,
                "_t": float(t.min()) if len(t) else math.inf,
            }
        )
    out.sort(key=lambda s: (s["_t"], s["camera"] or "", -s["score"], s["item"]))
    for s in out:
        del s["_t"]
    return out
