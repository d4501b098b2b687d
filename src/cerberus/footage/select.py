"""Which crops of a track go to the gallery, method §9.3.

While a track runs, :class:`CropSelector` keeps a bounded set of candidate crops for it: the
best of each span of frames; when the set is full, the weaker of each pair of neighbours goes
and the span doubles, so the survivors stay spread over the whole track. When the track ends,
or a part of a long track is written, :func:`choose` picks ``k`` of them: the time is cut into
``k`` equal spans and the best crop of each span is taken (spans without one are filled with
the best of the rest). ``k`` follows the time covered, ``crops_per_minute`` (so that a person
has a crop within ``60 / crops_per_minute`` seconds of any moment seen), at least ``min_crops``
for a track's first part and at most ``max_crops`` per part when set. A crop's quality
(:func:`quality`) favours height (a larger person holds more detail), sharpness (variance of
the Laplacian, against motion blur) and the detector's confidence; a crop cut by the frame
border is taken only when the track has no other.

No slivers: a crop (the box clipped to the frame) lower than ``min_height``, narrower than
``min_width``, with a width / height outside ``aspect``, or of a person less visible than
``min_visibility`` (where the detections say, as MOTChallenge ground truth does) is never a
candidate; the track goes on without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cerberus.footage.video import Frame

MIN_CROP_HEIGHT = 24
"""Boxes lower than this (pixels, inside the frame) are tracked but never kept as crops."""
MIN_CROP_WIDTH = 10
"""Nor narrower than this."""
CROP_ASPECT = (0.2, 1.5)
"""Nor with a width / height outside this range (a person cut to a strip by the frame's edge)."""
MIN_VISIBILITY = 0.3
"""Nor of a person less visible than this, where the detections give visibility."""
CROPS_PER_MINUTE = 30.0
"""Crops per minute of track by default: one per 2 s span, so a crop within 2 s of any moment."""
MIN_CROPS = 3
"""Crops of a short track at least (when it has that many candidates)."""


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


def choose(
    candidates: list[Candidate], k: int, span: tuple[int, int] | None = None
) -> list[Candidate]:
    """Up to ``k`` crops of one track, spread over its time (``span``: its first and last
    frame; default: its candidates'), in frame order (see the module doc)."""
    if k < 1 or not candidates:
        return []
    pool = [c for c in candidates if not c.cut] or list(candidates)
    if len(pool) <= k:
        return sorted(pool, key=lambda c: c.number)
    q = quality(pool)
    numbers = np.array([c.number for c in pool], np.float64)
    lo, hi = numbers.min(), numbers.max() + 1
    if span is not None:
        lo, hi = min(lo, span[0]), max(hi, span[1] + 1)
    span = np.minimum(((numbers - lo) / (hi - lo) * k).astype(int), k - 1)
    picked: list[int] = []
    for b in range(k):
        inside = np.flatnonzero(span == b)
        if len(inside):
            picked.append(int(inside[np.argmax(q[inside])]))
    rest = [i for i in np.argsort(-q, kind="stable") if i not in picked]
    picked += [int(i) for i in rest[: k - len(picked)]]
    return sorted((pool[i] for i in picked), key=lambda c: c.number)


def crops_for(seconds: float, *, per_minute: float, least: int = 1, most: int | None = None) -> int:
    """How many crops a part of a track covering ``seconds`` gets:
    ``k = max(least, ceil(seconds x per_minute / 60))``, then at most ``most``."""
    k = max(least, math.ceil(seconds * per_minute / 60.0 - 1e-9), 1)
    return min(k, most) if most else k


class CropSelector:
    """Candidate crops of the running tracks.

    Args:
        crops_per_minute: crops per minute of track (see the module doc).
        max_crops: at most this many per track (per part of a track written in parts);
            ``None``: no cap.
        min_crops: at least this many for a track's first part (when it has them).
        fps: frames per second of the source (frame numbers to seconds).
        keep: candidates held per running track at least (memory bound: the held ones are
            thinned when more than this and more than 4 per crop its time so far needs).
        border: a box within this many pixels of the frame's edge counts as cut.
        min_height, min_width, aspect, min_visibility: the sliver rules (module doc).
    """

    def __init__(
        self,
        *,
        crops_per_minute: float = CROPS_PER_MINUTE,
        max_crops: int | None = None,
        min_crops: int = MIN_CROPS,
        fps: float = 10.0,
        keep: int = 64,
        border: int = 2,
        min_height: int = MIN_CROP_HEIGHT,
        min_width: int = MIN_CROP_WIDTH,
        aspect: tuple[float, float] = CROP_ASPECT,
        min_visibility: float = MIN_VISIBILITY,
    ) -> None:
        self.crops_per_minute = float(crops_per_minute)
        self.max_crops = max_crops
        self.min_crops = min_crops if max_crops is None else min(min_crops, max_crops)
        self.fps = float(fps) if fps and fps > 0 else 10.0
        self.keep = max(keep, 2 * (max_crops or 0), 2)
        self.border = border
        self.min_height = min_height
        self.min_width = min_width
        self.aspect = aspect
        self.min_visibility = min_visibility
        self.refused = 0
        """Boxes refused as crops (slivers, hidden people)."""
        self._pools: dict[int, _Pool] = {}

    def offer(
        self, track: int, frame: Frame, box: np.ndarray, score: float, visibility: float = math.nan
    ) -> bool:
        """Consider the crop of ``box`` in ``frame`` for ``track``; whether it is a candidate
        (not refused by the sliver rules)."""
        h, w = frame.image.shape[:2]
        x0, y0 = int(np.floor(max(box[0], 0))), int(np.floor(max(box[1], 0)))
        x1, y1 = int(np.ceil(min(box[2], w))), int(np.ceil(min(box[3], h)))
        cw, ch = x1 - x0, y1 - y0
        if (
            ch < self.min_height
            or cw < self.min_width
            or not self.aspect[0] <= cw / ch <= self.aspect[1]
            or visibility < self.min_visibility  # NaN (unknown) passes
        ):
            self.refused += 1
            return False
        crop = np.ascontiguousarray(frame.image[y0:y1, x0:x1])
        b = self.border
        cut = bool(box[0] <= b or box[1] <= b or box[2] >= w - b or box[3] >= h - b)
        pool = self._pools.setdefault(int(track), _Pool())
        new = Candidate(
            frame.number, frame.offset, frame.timestamp, np.asarray(box, np.float32).copy(),
            float(score), crop, sharpness(crop), cut,
        )  # fmt: skip
        keep = self.keep
        if pool.held:
            keep = max(keep, 4 * self.count(pool.held[0].number, frame.number))
        pool.add(new, keep)
        return True

    @property
    def tracks(self) -> dict[int, list[Candidate]]:
        """The candidates held per running track (the current span's best included)."""
        return {t: p.all() for t, p in self._pools.items()}

    def count(self, first: int, last: int, *, first_part: bool = True) -> int:
        """Crops of a track part from frame ``first`` to ``last`` (see :func:`crops_for`)."""
        seconds = (last - first + 1) / self.fps
        least = self.min_crops if first_part else 1
        return crops_for(seconds, per_minute=self.crops_per_minute, least=least,
                         most=self.max_crops)  # fmt: skip

    def finish(
        self, track: int, span: tuple[int, int] | None = None, *, first_part: bool = True
    ) -> list[Candidate]:
        """The chosen crops of a track's part that ends now (and its candidates forgotten):
        as many as :meth:`count` gives for ``span`` (first and last frame of the part; default:
        its candidates' frames)."""
        pool = self._pools.pop(int(track), None)
        cands = pool.all() if pool else []
        if not cands:
            return []
        first, last = span or (cands[0].number, cands[-1].number)
        return choose(cands, self.count(first, last, first_part=first_part), (first, last))

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
