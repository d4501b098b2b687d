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


# ---------------------------------------------------------------- the tracks of a gallery


def frame_times(
    frames: np.ndarray, known_frames: np.ndarray, known_times: np.ndarray
) -> np.ndarray:
    """``(n,)`` UTC seconds of ``frames`` of one source from ``(m,)`` frame / time pairs of its
    items (frames < 0 and unknown times ignored; a frame given twice: the mean of its times).

    Between known frames the time is interpolated linearly; before the first and after the
    last it follows the line through the first and last pair, ``t = t_0 + (f - f_0) (t_m -
    t_0) / (f_m - f_0)`` (exact for a file, whose frame ``f`` is at ``start + (f - 1) / fps``).
    With one known pair only its own frame has a time; with none, none does (``nan``)."""
    frames = np.asarray(frames, np.float64)
    f = np.asarray(known_frames, np.float64)
    t = np.asarray(known_times, np.float64)
    ok = (f >= 0) & np.isfinite(t)
    f, t = f[ok], t[ok]
    out = np.full(len(frames), np.nan)
    if len(f) == 0:
        return out
    f, inverse = np.unique(f, return_inverse=True)
    t = np.bincount(inverse, weights=t) / np.bincount(inverse)
    if len(f) == 1:
        out[frames == f[0]] = t[0]
        return out
    out = np.interp(frames, f, t)
    slope = (t[-1] - t[0]) / (f[-1] - f[0])
    early, late = frames < f[0], frames > f[-1]
    out[early] = t[0] + (frames[early] - f[0]) * slope
    out[late] = t[-1] + (frames[late] - f[-1]) * slope
    return out


def _dated(items: Items | None, rows: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame numbers and times of the ``rows`` of ``items`` that have both."""
    if items is None or len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    rows = np.asarray(rows, np.int64)
    frames, times = items.frame[rows], items.timestamp[rows]
    ok = (frames >= 0) & np.isfinite(times)
    return frames[ok], times[ok]


def list_tracks(
    store: GalleryStore, source: str | None = None, track: int | None = None
) -> list[dict]:
    """The tracks of a gallery (of one ``source``; one ``track`` of it), in source then track
    order: every ``(source, track)`` with crops or a stored path (items without a track are not
    tracks). Each is a dict:

    - ``source``, ``camera``, ``track``;
    - ``first_frame``, ``last_frame``: of its path where it has one (the frames it was alive
      on), else of its crops;
    - ``start``, ``end``: ISO-8601 UTC times of those frames (:func:`frame_times` from its
      dated crops when they are on two frames or more, else from its source's; ``None`` when
      unknown);
    - ``crops``: its item ids, by frame; ``boxes`` / ``detected``: the number of its path's
      boxes and of those a detection matched;
    - ``path``: ``[[frame, left, top, right, bottom], ...]`` (the gallery's frame numbers,
      pixels to 0.01) and ``path_detected``: per path box, whether a detection matched it (else
      the tracker's prediction across a gap); both ``[]`` without a stored path.
    """
    from cerberus.search.rows import iso_time

    where = None
    if source is not None and track is not None:
        where = Filter(tracks=frozenset({(source, int(track))}))
    elif source is not None:
        where = Filter(sources=frozenset({source}))
    ids = store.ids(where)
    items = store.get(ids, vectors=False) if len(ids) else None
    paths = {(p.source, int(p.track)): p for p in store.paths(source, track)}
    crops: dict[Key, list[int]] = {}
    if items is not None:
        for j, (s, t) in enumerate(zip(items.source, items.track)):
            if int(t) != NO_TRACK and (track is None or int(t) == track):
                crops.setdefault((s, int(t)), []).append(j)
    by_source: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def source_times(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in by_source:
            if where is not None and where.sources is not None:
                got = items  # the whole source is already here
            else:
                got_ids = store.ids(Filter(sources=frozenset({name})))
                got = store.get(got_ids, vectors=False) if len(got_ids) else None
            mine = [] if got is None else [j for j, s in enumerate(got.source) if s == name]
            by_source[name] = _dated(got, mine)
        return by_source[name]

    out = []
    for key in sorted(set(crops) | set(paths)):
        rows = crops.get(key, [])
        path = paths.get(key)
        order = sorted(rows, key=lambda j: (int(items.frame[j]), int(items.ids[j])))
        if path is not None and len(path):
            first, last = int(path.frames[0]), int(path.frames[-1])
        else:
            frames = [int(items.frame[j]) for j in rows if int(items.frame[j]) >= 0]
            first, last = (min(frames), max(frames)) if frames else (None, None)
        times = [np.nan, np.nan]
        if first is not None:
            known = _dated(items, rows)
            if len(np.unique(known[0])) < 2:
                known = source_times(key[0])
            times = frame_times(np.array([first, last]), *known)
        camera = path.camera if path is not None else items.camera[rows[0]]
        out.append(
            {
                "source": key[0],
                "camera": camera or None,
                "track": key[1],
                "first_frame": first,
                "last_frame": last,
                "start": iso_time(float(times[0])),
                "end": iso_time(float(times[1])),
                "crops": [int(items.ids[j]) for j in order],
                "boxes": 0 if path is None else len(path),
                "detected": 0 if path is None else int(path.detected.sum()),
                "path": [] if path is None else [
                    [int(f), *(round(float(x), 2) for x in b)]
                    for f, b in zip(path.frames, path.boxes)
                ],
                "path_detected": [] if path is None else [bool(d) for d in path.detected],
            }
        )  # fmt: skip
    return out
