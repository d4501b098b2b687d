"""Which crops of a track go to the gallery, method §9.3.

While a track runs, :class:`CropSelector` keeps a bounded set of candidate crops for it: the
best of each span of frames; when the set is full, the weaker of each pair of neighbours goes
and the span doubles, so the survivors stay spread over the whole track. When the track ends,
:func:`choose` picks up to ``k``: the track's time is cut into ``k`` equal spans and the best
crop of each span is taken (spans without one are filled with the best of the rest). A crop's
quality (:func:`quality`) favours height (a larger person holds more detail), sharpness
(variance of the Laplacian, against motion blur) and the detector's confidence; a crop cut by
the frame border is taken only when the track has no other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cerberus.footage.video import Frame

MIN_CROP_HEIGHT = 24
"""Boxes lower than this (pixels) are tracked but never kept as crops."""


@dataclass
class Candidate:
    """One crop of a track.

    Attributes:
        number: frame number; offset / timestamp: its time (seconds from the start / UTC).
        box: ``(4,)`` ``left, top, right, bottom`` in the frame.
        score: detector confidence.
        crop: ``(h, w, 3)`` uint8 RGB pixels of the box.
        sharpness: variance of the Laplacian of the crop's grey image.
        cut: whether the box touches the frame's border (the person may be cut off).
    """

    number: int
    offset: float
    timestamp: float
    box: np.ndarray
    score: float
    crop: np.ndarray
    sharpness: float
    cut: bool

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of ``crop`` (grey), the usual focus measure: low when blurred."""
    import cv2

    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def quality(candidates: list[Candidate]) -> np.ndarray:
    """``(n,)`` score of each crop among its track's crops, in [0, 1] (higher is better):
    0.5 x height / tallest + 0.3 x sharpness / sharpest (as log) + 0.2 x confidence rank."""
    if not candidates:
        return np.zeros(0)
    h = np.array([c.height for c in candidates])
    s = np.log1p(np.array([max(c.sharpness, 0.0) for c in candidates]))
    conf = np.array([c.score for c in candidates])
    rank = (
        (conf[None, :] < conf[:, None]).sum(1) + 0.5 * (conf[None, :] == conf[:, None]).sum(1)
    ) / len(conf)
    return 0.5 * h / max(h.max(), 1e-9) + 0.3 * s / max(s.max(), 1e-9) + 0.2 * rank


def choose(candidates: list[Candidate], k: int) -> list[Candidate]:
    """Up to ``k`` crops of one track, spread over its time, in frame order (see the module
    doc)."""
    if k < 1 or not candidates:
        return []
    pool = [c for c in candidates if not c.cut] or list(candidates)
    if len(pool) <= k:
        return sorted(pool, key=lambda c: c.number)
    q = quality(pool)
    numbers = np.array([c.number for c in pool], np.float64)
    lo, hi = numbers.min(), numbers.max() + 1
    span = np.minimum(((numbers - lo) / (hi - lo) * k).astype(int), k - 1)
    picked: list[int] = []
    for b in range(k):
        inside = np.flatnonzero(span == b)
        if len(inside):
            picked.append(int(inside[np.argmax(q[inside])]))
    rest = [i for i in np.argsort(-q, kind="stable") if i not in picked]
    picked += [int(i) for i in rest[: k - len(picked)]]
    return sorted((pool[i] for i in picked), key=lambda c: c.number)


class CropSelector:
    """Candidate crops of the running tracks.

    Args:
        k: crops per track kept at its end.
        keep: candidates held per running track (memory bound; at least ``2 k``).
        border: a box within this many pixels of the frame's edge counts as cut.
        min_height: boxes lower than this are not kept.
    """

    def __init__(
        self, k: int = 4, *, keep: int = 32, border: int = 2, min_height: int = MIN_CROP_HEIGHT
    ) -> None:
        self.k = k
        self.keep = max(keep, 2 * k, 2)
        self.border = border
        self.min_height = min_height
        self._pools: dict[int, _Pool] = {}

    def offer(self, track: int, frame: Frame, box: np.ndarray, score: float) -> None:
        """Consider the crop of ``box`` in ``frame`` for ``track``."""
        h, w = frame.image.shape[:2]
        x0, y0 = int(np.floor(max(box[0], 0))), int(np.floor(max(box[1], 0)))
        x1, y1 = int(np.ceil(min(box[2], w))), int(np.ceil(min(box[3], h)))
        if y1 - y0 < self.min_height or x1 - x0 < 2:
            return
        crop = np.ascontiguousarray(frame.image[y0:y1, x0:x1])
        b = self.border
        cut = bool(box[0] <= b or box[1] <= b or box[2] >= w - b or box[3] >= h - b)
        pool = self._pools.setdefault(int(track), _Pool())
        new = Candidate(
            frame.number, frame.offset, frame.timestamp, np.asarray(box, np.float32).copy(),
            float(score), crop, sharpness(crop), cut,
        )  # fmt: skip
        pool.add(new, self.keep)

    @property
    def tracks(self) -> dict[int, list[Candidate]]:
        """The candidates held per running track (the current span's best included)."""
        return {t: p.all() for t, p in self._pools.items()}

    def finish(self, track: int) -> list[Candidate]:
        """The chosen crops of an ended track (and forget it)."""
        pool = self._pools.pop(int(track), None)
        return choose(pool.all() if pool else [], self.k)

    def drop(self, track: int) -> None:
        self._pools.pop(int(track), None)


def _better(a: Candidate, b: Candidate) -> Candidate:
    q = quality([a, b]) - np.array([a.cut, b.cut], np.float64)
    return a if q[0] >= q[1] else b


class _Pool:
    """A running track's candidates: one per span of ``interval`` offers (the best of the
    span); when more than ``keep`` are held, neighbours are paired (the better one stays) and
    the span doubles, so the candidates stay evenly spread over the whole track."""

    def __init__(self) -> None:
        self.held: list[Candidate] = []
        self.interval = 1
        self.pending: Candidate | None = None
        self.count = 0

    def add(self, cand: Candidate, keep: int) -> None:
        self.pending = cand if self.pending is None else _better(self.pending, cand)
        self.count += 1
        if self.count < self.interval:
            return
        self.held.append(self.pending)
        self.pending, self.count = None, 0
        if len(self.held) > keep:
            held = self.held
            self.held = [_better(held[i], held[i + 1]) for i in range(0, len(held) - 1, 2)]
            if len(held) % 2:
                self.held.append(held[-1])
            self.interval *= 2

    def all(self) -> list[Candidate]:
        return self.held + ([self.pending] if self.pending is not None else [])
