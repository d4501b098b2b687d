"""Results per track (method §9.2): one row per (source, track), scored from its crops.

A track's score is the best of its crops' scores (``"max"``) or the mean of its best three
(``"top3"``; a track of fewer crops: the mean of those). Items without a track are a group of
their own. :func:`top_tracks` is exact: it fetches ranked crops until the k best groups are
known for certain (every group not yet seen scores at most the last crop fetched; a ``top3``
group seen with fewer than three crops is searched on its own), or the filtered gallery is
exhausted. :func:`track_vector` is a track's mean vector (the query of a timeline).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from cerberus.attributes.schema import GROUPS
from cerberus.errors import CerberusError
from cerberus.inference.scoring import pool_vectors
from cerberus.store import NO_TRACK, Filter, GalleryStore, Items

TRACK_SCORES = ("max", "top3")
"""How a track's score is made from its crops' scores."""

Top = Callable[[int, Filter | None], tuple[np.ndarray, np.ndarray]]
"""``top(m, where) -> (ids, scores)``: the exact top-m items passing ``where``, best first."""

Key = tuple[str, int]
"""A group: ``(source, track)``, or ``("", -1 - id)`` for an item without a track."""


def check_track_score(how: str) -> str:
    if how not in TRACK_SCORES:
        raise CerberusError(f"track score {how!r}: must be one of {', '.join(TRACK_SCORES)}")
    return how


def group_keys(items: Items) -> list[Key]:
    """The group of each item: its (source, track), or its own for an item without a track."""
    return [
        (s, int(t)) if int(t) != NO_TRACK else ("", -1 - int(i))
        for s, t, i in zip(items.source, items.track, items.ids)
    ]


def track_score(scores: np.ndarray | list[float], how: str) -> float:
    """A group's score from its crops' scores (any order)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    return float(s[0]) if how == "max" else float(s[:3].mean())


@dataclass
class TrackHit:
    """A group of the ranked list: its ``key``, ``score`` and best crop (``best``,
    ``best_score``)."""

    key: Key
    score: float
    best: int
    best_score: float


def _with_track(where: Filter | None, key: Key) -> Filter:
    return replace(where or Filter(), tracks=frozenset({key}))


def top_tracks(
    store: GalleryStore,
    top: Top,
    k: int,
    *,
    where: Filter | None = None,
    how: str = "max",
    exclude: int | None = None,
) -> list[TrackHit]:
    """The ``k`` best groups (:func:`group_keys`) by :func:`track_score` of the crops passing
    ``where`` (item ``exclude`` left out), best first; ties by the smaller best-crop id."""
    check_track_score(how)
    extra = 0 if exclude is None else 1
    m = max(4 * k, 32)
    while True:
        ids, scores = top(m + extra, where)
        exhausted = len(ids) < m + extra
        floor = -math.inf if exhausted else float(scores[-1])  # every unseen crop scores <= it
        keep = ids != exclude if exclude is not None else np.ones(len(ids), bool)
        ids, scores = ids[keep], scores[keep]
        seen: dict[Key, list[tuple[float, int]]] = {}
        if len(ids):
            for key, i, s in zip(group_keys(store.get(ids, vectors=False)), ids, scores):
                seen.setdefault(key, []).append((float(s), int(i)))
        found = _best_first(seen, top, k, where, how, exclude, exhausted)
        if len(found) == k and found[-1].score >= floor or exhausted:
            return found
        m *= 4


def _best_first(seen, top, k, where, how, exclude, exhausted) -> list[TrackHit]:
    """The k best of the groups seen: each group's bound is its score over the crops seen
    (exact for ``max``; for ``top3`` an upper bound until three crops are seen); groups are
    taken best bound first, a group whose bound is not exact is searched on its own and put
    back with its exact score."""
    heap = []
    for key, crops in seen.items():
        final = how == "max" or len(crops) >= 3 or key[0] == "" or exhausted
        s = track_score([c[0] for c in crops], how)
        heapq.heappush(heap, (-s, crops[0][1], final, key, crops[0][0]))
    found: list[TrackHit] = []
    while heap and len(found) < k:
        neg, best, final, key, best_score = heapq.heappop(heap)
        if final:
            found.append(TrackHit(key, -neg, best, best_score))
            continue
        ids, scores = top(3 + (exclude is not None), _with_track(where, key))
        scores = scores[ids != exclude] if exclude is not None else scores
        heapq.heappush(heap, (-track_score(scores, how), best, True, key, best_score))
    return found


def track_items(
    store: GalleryStore, keys: list[Key], where: Filter | None = None, *, vectors: bool = False
) -> dict[Key, Items]:
    """The items of each group passing ``where`` (a group without a track: its one item)."""
    out: dict[Key, Items] = {}
    tracks = [k for k in keys if k[0] != ""]
    singles = [k for k in keys if k[0] == ""]
    if tracks:
        ids = store.ids(replace(where or Filter(), tracks=frozenset(tracks)))
        if len(ids):
            items = store.get(ids, vectors=vectors)
            by_key: dict[Key, list[int]] = {}
            for j, key in enumerate(group_keys(items)):
                by_key.setdefault(key, []).append(j)
            out.update({key: items.take(rows) for key, rows in by_key.items()})
    if singles:
        items = store.get([-1 - k[1] for k in singles], vectors=vectors)
        out.update({key: items.take([j]) for j, key in enumerate(singles)})
    return out


def track_vector(vectors: np.ndarray) -> np.ndarray:
    """``(D,)`` a track's vector from its crops' ``(n, D)`` retrieval vectors: the mean of the
    L2-normalised parts, renormalised per part (:func:`~cerberus.inference.scoring.pool_vectors`,
    the one rule ingestion and the benchmarks use too)."""
    return pool_vectors(vectors, parts=len(GROUPS))
