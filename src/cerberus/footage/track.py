"""Tracks from per-frame detections, method §9.3.

:class:`BoxTracker` links boxes without ids over frames: a constant-velocity Kalman filter per
track on centre, area and aspect ratio (SORT's), and the Hungarian assignment on IoU with the
predicted boxes, in ByteTrack's two stages:

1. detections scoring at least ``high_score`` against every track (IoU >= ``iou_threshold``),
   then those left against the tracks missed for a while (``lost``) with a looser gate: both
   the predicted box and the detection widened by ``buffer`` of their size per missed update
   of the track (at most ``max_buffer``), as C-BIoU does for a person whose prediction drifts;
2. detections scoring ``low_score`` .. ``high_score`` against the confirmed tracks still
   unmatched (IoU >= ``low_iou``): a weak box keeps a track alive but never starts one.

A track is confirmed after ``min_hits`` matches; a tentative track dies after ``max_age``
updates without one, a confirmed track after ``lost_age`` (the long memory: a person missed for
seconds is kept, predicted forward, and matched again). :class:`SortTracker` is the same class
set as SORT was here before (one stage, every detection at any score, ``lost_age = max_age``).
:class:`GivenIds` follows the ids a detections file already carries.

Both answer :meth:`Tracker.update` once per processed frame with a :class:`TrackUpdate`: the
track of each detection of that frame, every track's box on this frame (detected or predicted),
the confirmed tracks that just ended (their crops go to the gallery) and the tentative ones that
died (forgotten). :meth:`Tracker.close` ends them all at the end of the source.
:class:`PathBook` keeps those boxes per track, the predicted ones after a track's last detection
held back until a detection follows (a track's path ends at its last detection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.optimize import linear_sum_assignment

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detections, iou_matrix


def _none_ids() -> np.ndarray:
    return np.zeros(0, np.int64)


def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


def _no_flags() -> np.ndarray:
    return np.zeros(0, bool)


@dataclass
class TrackUpdate:
    """What one tracker step says.

    Attributes:
        tracks: ``(n,)`` int64 the track of each of the frame's detections (``-1``: none,
            e.g. a weak detection that matched no track).
        ended: confirmed tracks that ended at this step.
        dropped: tentative tracks that died before being confirmed.
        alive: ``(m,)`` int64 the tracks alive after this step (tentative ones included).
        boxes: ``(m, 4)`` float32 each alive track's box on this frame: its detection, or the
            filter's prediction when no detection matched it.
        detected: ``(m,)`` bool whether ``boxes`` is a detection.
        confirmed: ``(m,)`` bool whether the track is confirmed.
    """

    tracks: np.ndarray
    ended: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    alive: np.ndarray = field(default_factory=_none_ids)
    boxes: np.ndarray = field(default_factory=_no_boxes)
    detected: np.ndarray = field(default_factory=_no_flags)
    confirmed: np.ndarray = field(default_factory=_no_flags)


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


def widen(boxes: np.ndarray, by: np.ndarray | float) -> np.ndarray:
    """``(n, 4)`` boxes grown about their centres by ``by`` (``(n,)`` or a number) of their
    width and height on each side: ``w' = w (1 + 2 by)``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    by = np.broadcast_to(np.asarray(by, np.float64), (len(boxes),))[:, None]
    size = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] - by * size, boxes[:, 2:] + by * size], axis=1)


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
        self.box = np.asarray(box, np.float32).copy()  # this frame's box (detected or predicted)
        self.detected = True
        self.height = float(box[3] - box[1])  # of the last detection

    def predict(self) -> np.ndarray:
        if self.x[6, 0] + self.x[2, 0] <= 0:
            self.x[6, 0] = 0.0
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + self.Q
        self.box = _to_box(self.x)
        self.detected = False
        return self.box

    def correct(self, box: np.ndarray) -> None:
        y = _to_z(box) - self.H @ self.x
        S = self.H @ self.P @ self.H.T + self.R
        K = np.linalg.solve(S, self.H @ self.P).T  # P H^T S^-1 (S and P symmetric)
        self.x = self.x + K @ y
        self.P = (np.eye(7) - K @ self.H) @ self.P
        self.hits += 1
        self.misses = 0
        self.box = np.asarray(box, np.float32).copy()
        self.detected = True
        self.height = float(box[3] - box[1])


class _TrackScaled(_Track):
    """A track whose Kalman filter works on the box's centre, width and height and their
    velocities (as BoT-SORT's), with noise in proportion to the box's height (as DeepSORT's and
    ByteTrack's): position noise sd ``h / 20`` per update, velocity noise sd ``h / 160``,
    measurement noise sd ``h / 20``. A box's size is then as sure as its jitter, not a fixed
    number of square pixels (SORT's ``R``), and a box that widens (a person entering the view
    from its edge) is followed."""

    F = np.eye(8)
    F[:4, 4:] = np.eye(4)
    H = np.eye(4, 8)
    POS, VEL = 1 / 20, 1 / 160

    def __init__(self, ident: int, box: np.ndarray) -> None:
        self.x = np.zeros((8, 1))
        self.x[:4] = self._z(box)
        h = max(float(self.x[3, 0]), 1.0)
        sd = [2 * self.POS * h] * 4 + [h / 4, h / 4, h / 4, h / 16]  # velocity unknown at first
        self.P = np.diag(np.square(sd))
        self.id = ident
        self.hits = 1
        self.misses = 0
        self.box = np.asarray(box, np.float32).copy()
        self.detected = True
        self.height = float(box[3] - box[1])

    @staticmethod
    def _z(box: np.ndarray) -> np.ndarray:
        w, h = float(box[2] - box[0]), float(box[3] - box[1])
        return np.array([[box[0] + w / 2], [box[1] + h / 2], [w], [h]])

    def _state_box(self) -> np.ndarray:
        cx, cy, w, h = (float(v) for v in self.x[:4, 0])
        w, h = max(w, 1e-3), max(h, 1e-3)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)

    def predict(self) -> np.ndarray:
        h = max(float(self.x[3, 0]), 1.0)
        sd = [self.POS * h] * 4 + [self.VEL * h] * 4
        if self.x[2, 0] + self.x[6, 0] <= 0:  # a width shrinking through zero stops
            self.x[6, 0] = 0.0
        if self.x[3, 0] + self.x[7, 0] <= 0:
            self.x[7, 0] = 0.0
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + np.diag(np.square(sd))
        self.box = self._state_box()
        self.detected = False
        return self.box

    def correct(self, box: np.ndarray) -> None:
        h = max(float(self.x[3, 0]), 1.0)
        R = np.diag(np.square([self.POS * h] * 4))
        y = self._z(box) - self.H @ self.x
        S = self.H @ self.P @ self.H.T + R
        K = np.linalg.solve(S, self.H @ self.P).T
        self.x = self.x + K @ y
        self.P = (np.eye(8) - K @ self.H) @ self.P
        self.hits += 1
        self.misses = 0
        self.box = np.asarray(box, np.float32).copy()
        self.detected = True
        self.height = float(box[3] - box[1])


def _assign(score: np.ndarray, gate: float) -> list[tuple[int, int]]:
    """Hungarian assignment maximising ``score (n, m)``; pairs below ``gate`` are left out."""
    if not score.size:
        return []
    rows, cols = linear_sum_assignment(-score)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if score[r, c] >= gate]


class BoxTracker:
    """Two-stage IoU + Kalman tracking of boxes without ids, with a long memory (see the module
    doc). Ages count tracker updates (processed frames).

    Args:
        iou_threshold: stage 1: a detection and a track's predicted box must overlap at least
            this much to be matched.
        min_hits: matches (the first detection included) before a track is confirmed.
        max_age: updates without a match after which a tentative track dies.
        lost_age: updates without a match after which a confirmed track ends (at least
            ``max_age``); ``None``: ``max_age``.
        high_score: detections at least this score take part in stage 1 and may start tracks.
        low_score: detections from this score up to ``high_score`` take part in stage 2 only;
            ``None``: no second stage (every detection is matched in stage 1 and, unmatched,
            starts a track when it scores ``high_score``); lower ones are ignored.
        low_iou: stage 2's IoU gate.
        buffer: the looser gate of a missed track: its predicted box is widened by this
            fraction of its size per missed update (:func:`widen`), up to ``max_buffer``.
        max_scale: a detection whose height differs from the track's last detection's by more
            than this factor (either way) is not matched to the track (``None``: no such gate): a
            person passing in front, taller in the image, does not take the track over. Off
            by default: on synthetic footage it cost more (boxes cut by the frame's edge change
            height fast) than it saved.
        motion: the Kalman filter: ``"scaled"`` (:class:`_TrackScaled`, noise in proportion
            to the box's height) or ``"sort"`` (SORT's, on area and aspect).
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        min_hits: int = 3,
        max_age: int = 10,
        lost_age: int | None = None,
        high_score: float = 0.5,
        low_score: float | None = 0.1,
        low_iou: float = 0.5,
        buffer: float = 0.05,
        max_buffer: float = 0.5,
        max_scale: float | None = None,
        motion: str = "scaled",
    ) -> None:
        lost_age = max_age if lost_age is None else lost_age
        if min_hits < 1 or max_age < 1 or lost_age < max_age or not 0 < iou_threshold < 1:
            raise CerberusError(
                f"tracker: min_hits {min_hits} and max_age {max_age} must be at least 1, "
                f"lost_age {lost_age} at least max_age, iou_threshold {iou_threshold} in (0, 1)"
            )
        if low_score is not None and low_score > high_score:
            raise CerberusError(
                f"tracker: low_score {low_score} must not be above high_score {high_score}"
            )
        self.iou_threshold = iou_threshold
        self.min_hits = min_hits
        self.max_age = max_age
        self.lost_age = lost_age
        self.high_score = high_score
        self.low_score = low_score
        self.low_iou = low_iou
        self.buffer = buffer
        self.max_buffer = max_buffer
        self.max_scale = max_scale
        if motion not in ("scaled", "sort"):
            raise CerberusError(f"tracker: motion {motion!r} is not 'scaled' or 'sort'")
        self._kind = _TrackScaled if motion == "scaled" else _Track
        self.tracks: list[_Track] = []
        self._next = 1

    def _confirmed(self, t: _Track) -> bool:
        return t.hits >= self.min_hits

    def update(self, detections: Detections) -> TrackUpdate:
        tracks = self.tracks
        predicted = np.stack([t.predict() for t in tracks]) if tracks else np.zeros((0, 4))
        n = len(detections)
        out = np.full(n, -1, np.int64)
        scores = detections.scores
        high = np.flatnonzero(scores >= self.high_score)
        if self.low_score is None:
            first = np.arange(n)
        else:
            first = high
        free = list(range(len(tracks)))

        def match(rows: np.ndarray, cols: list[int], score: np.ndarray, gate: float) -> None:
            if self.max_scale is not None and score.size:
                h_det = detections.boxes[rows, 3] - detections.boxes[rows, 1]
                h_trk = np.array([tracks[k].height for k in cols])
                ratio = np.abs(np.log(np.maximum(h_det[:, None], 1e-6) / np.maximum(h_trk, 1e-6)))
                score = np.where(ratio <= np.log(self.max_scale), score, 0.0)
            for r, c in _assign(score, gate):
                det, k = int(rows[r]), cols[c]
                tracks[k].correct(detections.boxes[det])
                out[det] = tracks[k].id
                free.remove(k)

        # stage 1: strong detections against every track, then the missed tracks, loosely
        if len(first) and free:
            match(first, list(free), iou_matrix(detections.boxes[first], predicted[free]),
                  self.iou_threshold)  # fmt: skip
        missed = [k for k in free if tracks[k].misses > 0]
        rest = first[out[first] < 0]
        if self.buffer > 0 and len(rest) and missed:
            boxes = detections.boxes[rest]
            iou = np.zeros((len(rest), len(missed)))
            for j, k in enumerate(missed):
                by = min(self.buffer * tracks[k].misses, self.max_buffer)
                iou[:, j] = iou_matrix(widen(boxes, by), widen(predicted[k], by))[:, 0]
            match(rest, missed, iou, self.iou_threshold)
        # stage 2: weak detections keep confirmed tracks alive
        if self.low_score is not None:
            weak = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))
            cols = [k for k in free if self._confirmed(tracks[k])]
            if len(weak) and cols:
                match(weak, cols, iou_matrix(detections.boxes[weak], predicted[cols]),
                      self.low_iou)  # fmt: skip
        for r in first[out[first] < 0]:
            if scores[r] >= self.high_score:
                track = self._kind(self._next, detections.boxes[r])
                self._next += 1
                tracks.append(track)
                out[r] = track.id
        matched = set(out[out >= 0].tolist())
        update = TrackUpdate(out)
        alive = []
        for t in tracks:
            if t.id not in matched:
                t.misses += 1
            limit = self.lost_age if self._confirmed(t) else self.max_age
            if t.misses >= limit:
                (update.ended if self._confirmed(t) else update.dropped).append(t.id)
            else:
                alive.append(t)
        self.tracks = alive
        _fill_alive(update, alive, self._confirmed)
        return update

    def close(self) -> TrackUpdate:
        update = TrackUpdate(np.zeros(0, np.int64))
        for t in self.tracks:
            (update.ended if self._confirmed(t) else update.dropped).append(t.id)
        self.tracks = []
        return update


def _fill_alive(update: TrackUpdate, alive: list[_Track], confirmed) -> None:
    if not alive:
        return
    update.alive = np.array([t.id for t in alive], np.int64)
    update.boxes = np.stack([t.box for t in alive]).astype(np.float32)
    update.detected = np.array([t.detected for t in alive], bool)
    update.confirmed = np.array([confirmed(t) for t in alive], bool)


class SortTracker(BoxTracker):
    """:class:`BoxTracker` set as the tracker was before ByteTrack's stages (SORT): one stage,
    every detection matched at any score, a track ending ``max_age`` updates after its last
    match, confirmed or not; detections below ``min_score`` never start a track."""

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        min_hits: int = 3,
        max_age: int = 10,
        min_score: float = 0.0,
    ) -> None:
        super().__init__(
            iou_threshold=iou_threshold, min_hits=min_hits, max_age=max_age, lost_age=max_age,
            high_score=min_score, low_score=None, buffer=0.0, max_scale=None, motion="sort",
        )  # fmt: skip


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
        if len(detections):
            update.alive = detections.ids.astype(np.int64).copy()
            update.boxes = detections.boxes.astype(np.float32).copy()
            update.detected = np.ones(len(detections), bool)
            update.confirmed = np.ones(len(detections), bool)
        return update

    def close(self) -> TrackUpdate:
        update = TrackUpdate(np.zeros(0, np.int64), ended=sorted(self._misses))
        self._misses = {}
        return update


@dataclass
class _Path:
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)
    pending: list[tuple[int, np.ndarray]] = field(default_factory=list)  # predicted, after
    # the last detection: kept only when a detection follows
    last: tuple[int, np.ndarray] | None = None  # the last detection (frame, box), taken or not


def interpolate(
    first: int, start: np.ndarray, last: int, end: np.ndarray, frames: list[int]
) -> list[np.ndarray]:
    """Boxes on ``frames`` (between ``first`` and ``last``) on the straight line from box
    ``start`` at frame ``first`` to box ``end`` at frame ``last``, each side moving linearly:
    ``b(n) = start + (n - first) / (last - first) * (end - start)``."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    span = max(last - first, 1)
    return [(start + (n - first) / span * (end - start)).astype(np.float32) for n in frames]


class PathBook:
    """The boxes of the running tracks on every processed frame (:class:`TrackUpdate`'s
    ``alive`` / ``boxes`` / ``detected``), to the last detection of each: predicted boxes after
    it are held back and kept only when the track is detected again (a gap), so a path never
    ends in predictions (the tail of an ended track is trimmed).

    ``interpolate``: a gap's boxes, once the detection after it is known, are put on the
    straight line between the detections either side (:func:`interpolate`) in place of the
    filter's forecasts: the forecast runs on from the velocity before the gap (a person who
    stopped or turned while missed is overshot), the line knows where the person came out.
    The boxes stay marked predicted.

    ``max_gap``: a gap longer than this many frames (from the detection before it to the one
    after it) is left empty, its predicted boxes dropped: after a long miss the tracker's
    guess of where the person was is often another person or empty ground (on vtest.avi's
    tuning frames every predicted box of a gap over 1.2 s was false); the track keeps its id
    across it. ``None``: every gap is filled.

    ``cover_iou``: a gap's box (as filled) that overlaps another track's detected box on the
    same frame at IoU >= ``cover_iou`` is left out of the path: nothing was seen of this
    track there while someone else was, at nearly the same place, so the person is hidden
    behind that one (a guessed box beside theirs) or the guess has slid onto them (a second
    box on one person). ``None``: gap boxes are kept whatever they overlap."""

    def __init__(
        self,
        *,
        interpolate: bool = True,
        max_gap: int | None = None,
        cover_iou: float | None = None,
    ) -> None:
        if max_gap is not None and max_gap < 1:
            raise CerberusError(f"paths: max_gap {max_gap} must be at least 1 frame (or None)")
        if cover_iou is not None and not 0.0 < cover_iou <= 1.0:
            raise CerberusError(f"paths: cover_iou {cover_iou} must be in (0, 1] (or None)")
        self._paths: dict[int, _Path] = {}
        self.interpolate = interpolate
        self.max_gap = max_gap
        self.cover_iou = cover_iou
        self._seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # frame -> detected (ids,
        # boxes), kept while a gap that spans the frame may still be filled

    def _covered(self, ident: int, gap: list[tuple[int, np.ndarray]]) -> list[bool]:
        """Per gap box ``(frame, box)``: whether another track's detected box on that frame
        overlaps it at IoU >= ``cover_iou``."""
        out = []
        for n, box in gap:
            ids, boxes = self._seen.get(n, (_none_ids(), _no_boxes()))
            others = boxes[ids != ident]
            out.append(bool(len(others))
                       and float(iou_matrix(np.asarray(box)[None], others).max())
                       >= self.cover_iou)  # fmt: skip
        return out

    def _forget_seen(self) -> None:
        """Drop the detected boxes of frames that no held-back gap spans any more."""
        held = [p.pending[0][0] for p in self._paths.values() if p.pending]
        first = min(held, default=None)
        for n in [n for n in self._seen if first is None or n < first]:
            del self._seen[n]

    def record(self, number: int, update: TrackUpdate) -> None:
        """Note frame ``number``'s boxes of the tracks alive after ``update``."""
        if self.cover_iou is not None:
            det = np.asarray(update.detected, bool)
            self._seen[number] = (np.asarray(update.alive, np.int64)[det],
                                  np.asarray(update.boxes, np.float32).reshape(-1, 4)[det])
        for ident, box, det in zip(update.alive.tolist(), update.boxes, update.detected):
            path = self._paths.setdefault(int(ident), _Path())
            if not det:
                path.pending.append((number, box))
                continue
            if (path.pending and self.max_gap is not None and path.last is not None
                    and number - path.last[0] > self.max_gap):
                path.pending.clear()  # too long a gap: where the person was is not known
            if path.pending and self.interpolate and path.last is not None:
                gap = [n for n, _ in path.pending]
                path.pending = list(zip(gap, interpolate(
                    *path.last, number, np.asarray(box, np.float32), gap
                )))  # fmt: skip
            if path.pending and self.cover_iou is not None:
                hidden = self._covered(int(ident), path.pending)
                path.pending = [nb for nb, h in zip(path.pending, hidden) if not h]
            for n, b in path.pending:
                path.frames.append(n)
                path.boxes.append(b)
                path.detected.append(False)
            path.pending.clear()
            path.frames.append(number)
            path.boxes.append(np.asarray(box, np.float32))
            path.detected.append(True)
            path.last = (number, path.boxes[-1])
        if self.cover_iou is not None:
            self._forget_seen()

    def span(self, track: int) -> tuple[int, int] | None:
        """First and last frame of the track's path not yet taken (``None``: empty)."""
        path = self._paths.get(int(track))
        if path is None or not path.frames:
            return None
        return path.frames[0], path.frames[-1]

    def take(self, track: int, *, end: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The track's path not yet taken, to its last detection, as ``frames (n,)`` int64,
        ``boxes (n, 4)`` float32, ``detected (n,)`` bool; ``end``: the track is over (its
        held-back predictions are dropped and it is forgotten)."""
        path = self._paths.pop(int(track), None) if end else self._paths.get(int(track))
        if path is None or not path.frames:
            return np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, bool)
        out = (
            np.asarray(path.frames, np.int64),
            np.stack(path.boxes).astype(np.float32),
            np.asarray(path.detected, bool),
        )
        path.frames, path.boxes, path.detected = [], [], []
        return out

    def drop(self, track: int) -> None:
        self._paths.pop(int(track), None)
