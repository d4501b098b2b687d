"""Tracks from per-frame detections, method §9.3.

:class:`SortTracker` links boxes without ids over frames (SORT-like: a constant-velocity Kalman
filter per track on centre, area and aspect ratio, the Hungarian assignment on IoU with a
gate; a track is confirmed after ``min_hits`` matches and ends after ``max_age`` updates
without one). :class:`GivenIds` follows the ids a detections file already carries.

Both answer :meth:`Tracker.update` once per processed frame with a :class:`TrackUpdate`: the
track of each detection of that frame, the confirmed tracks that just ended (their crops go to
the gallery) and the tentative ones that died (forgotten). :meth:`Tracker.close` ends them all
at the end of the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.optimize import linear_sum_assignment

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detections, iou_matrix


@dataclass
class TrackUpdate:
    """What one tracker step says.

    Attributes:
        tracks: ``(n,)`` int64 the track of each of the frame's detections (``-1``: none,
            e.g. a detection too weak to start a track).
        ended: confirmed tracks that ended at this step.
        dropped: tentative tracks that died before being confirmed.
    """

    tracks: np.ndarray
    ended: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)


@runtime_checkable
class Tracker(Protocol):
    def update(self, detections: Detections) -> TrackUpdate: ...

    def close(self) -> TrackUpdate: ...


def _to_z(box: np.ndarray) -> np.ndarray:
    """``left, top, right, bottom`` -> ``(cx, cy, area, aspect)`` column."""
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([[box[0] + w / 2], [box[1] + h / 2], [w * h], [w / max(h, 1e-6)]])


def _to_box(x: np.ndarray) -> np.ndarray:
    area, ratio = max(float(x[2, 0]), 1e-6), max(float(x[3, 0]), 1e-6)
    w = np.sqrt(area * ratio)
    h = area / max(w, 1e-6)
    cx, cy = float(x[0, 0]), float(x[1, 0])
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


class _Track:
    """One track's Kalman filter (state: cx, cy, area, aspect, and the velocities of the first
    three; the noise settings of SORT), in NumPy: a 7-state filter needs no library."""

    F = np.eye(7)
    F[0, 4] = F[1, 5] = F[2, 6] = 1.0
    H = np.eye(4, 7)
    R = np.diag([1.0, 1.0, 10.0, 10.0])
    Q = np.diag([1.0, 1.0, 1.0, 1.0, 0.01, 0.01, 0.0001])

    def __init__(self, ident: int, box: np.ndarray) -> None:
        self.x = np.zeros((7, 1))
        self.x[:4] = _to_z(box)
        self.P = np.diag([10.0, 10.0, 10.0, 10.0, 1e4, 1e4, 1e4])  # velocities unknown at first
        self.id = ident
        self.hits = 1
        self.misses = 0

    def predict(self) -> np.ndarray:
        if self.x[6, 0] + self.x[2, 0] <= 0:
            self.x[6, 0] = 0.0
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + self.Q
        return _to_box(self.x)

    def correct(self, box: np.ndarray) -> None:
        y = _to_z(box) - self.H @ self.x
        S = self.H @ self.P @ self.H.T + self.R
        K = np.linalg.solve(S, self.H @ self.P).T  # P H^T S^-1 (S and P symmetric)
        self.x = self.x + K @ y
        self.P = (np.eye(7) - K @ self.H) @ self.P
        self.hits += 1
        self.misses = 0


class SortTracker:
    """IoU + Kalman tracking of boxes without ids (see the module doc).

    Args:
        iou_threshold: a detection and a track's predicted box must overlap at least this much
            to be matched.
        min_hits: matches (the first detection included) before a track is confirmed.
        max_age: updates without a match after which a track ends.
        min_score: detections below this score never start a track (they can still continue
            one).
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        min_hits: int = 3,
        max_age: int = 10,
        min_score: float = 0.0,
    ) -> None:
        if min_hits < 1 or max_age < 1 or not 0 < iou_threshold < 1:
            raise CerberusError(
                f"tracker: min_hits {min_hits} and max_age {max_age} must be at least 1, "
                f"iou_threshold {iou_threshold} in (0, 1)"
            )
        self.iou_threshold = iou_threshold
        self.min_hits = min_hits
        self.max_age = max_age
        self.min_score = min_score
        self.tracks: list[_Track] = []
        self._next = 1

    def update(self, detections: Detections) -> TrackUpdate:
        predicted = (
            np.stack([t.predict() for t in self.tracks]) if self.tracks else np.zeros((0, 4))
        )
        n = len(detections)
        out = np.full(n, -1, np.int64)
        matched_tracks: set[int] = set()
        if n and self.tracks:
            iou = iou_matrix(detections.boxes, predicted)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.iou_threshold:
                    self.tracks[c].correct(detections.boxes[r])
                    out[r] = self.tracks[c].id
                    matched_tracks.add(c)
        for r in np.flatnonzero(out < 0):
            if detections.scores[r] >= self.min_score:
                track = _Track(self._next, detections.boxes[r])
                self._next += 1
                self.tracks.append(track)
                out[r] = track.id
                matched_tracks.add(len(self.tracks) - 1)
        update = TrackUpdate(out)
        alive = []
        for i, t in enumerate(self.tracks):
            if i not in matched_tracks:
                t.misses += 1
            if t.misses >= self.max_age:
                (update.ended if t.hits >= self.min_hits else update.dropped).append(t.id)
            else:
                alive.append(t)
        self.tracks = alive
        return update

    def close(self) -> TrackUpdate:
        update = TrackUpdate(np.zeros(0, np.int64))
        for t in self.tracks:
            (update.ended if t.hits >= self.min_hits else update.dropped).append(t.id)
        self.tracks = []
        return update


class GivenIds:
    """Tracks from the ids the detections carry (a MOTChallenge file with ids): a track ends
    after ``max_age`` updates without its id, or at the end of the source."""

    def __init__(self, *, max_age: int = 30) -> None:
        self.max_age = max_age
        self._misses: dict[int, int] = {}

    def update(self, detections: Detections) -> TrackUpdate:
        if len(detections) and (detections.ids < 0).any():
            raise CerberusError("tracker: detections without ids given to the id tracker")
        seen = {int(i) for i in detections.ids}
        update = TrackUpdate(detections.ids.astype(np.int64).copy())
        for ident in list(self._misses):
            if ident not in seen:
                self._misses[ident] += 1
                if self._misses[ident] >= self.max_age:
                    del self._misses[ident]
                    update.ended.append(ident)
        for ident in seen:
            self._misses[ident] = 0
        return update

    def close(self) -> TrackUpdate:
        update = TrackUpdate(np.zeros(0, np.int64), ended=sorted(self._misses))
        self._misses = {}
        return update
