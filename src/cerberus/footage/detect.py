"""Person boxes in frames, method §9.3: read from a MOTChallenge text file (any modern detector's
or tracker's output) or found by OpenCV's HOG people detector behind a motion gate.

A detector answers :meth:`Detector.detect` for one :class:`~cerberus.footage.video.Frame` with
:class:`Detections`: ``left, top, right, bottom`` boxes in pixels, scores and, where the input
has them, track ids (``-1``: none).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import os
import tempfile
import weakref
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torchvision.ops import box_iou
from torchvision.ops import nms as tv_nms

from cerberus.errors import CerberusError
from cerberus.footage.video import Frame

logger = logging.getLogger(__name__)


@dataclass
class Detections:
    """The persons found in one frame (``n`` of them).

    Attributes:
        boxes: ``(n, 4)`` float32 ``left, top, right, bottom`` in pixels.
        scores: ``(n,)`` float32 detector confidence.
        ids: ``(n,)`` int64 track ids given with the detections; ``-1`` where none.
        visibility: ``(n,)`` float32 fraction of the person visible (a ground-truth file's
            column 9), NaN where unknown; ``None``: unknown for all.
    """

    boxes: np.ndarray
    scores: np.ndarray
    ids: np.ndarray
    visibility: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def of(cls, boxes, scores=None, ids=None) -> Detections:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        n = len(boxes)
        return cls(
            boxes,
            np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32),
            np.full(n, -1, np.int64) if ids is None else np.asarray(ids, np.int64),
        )

    def take(self, rows) -> Detections:
        vis = None if self.visibility is None else self.visibility[rows]
        return Detections(self.boxes[rows], self.scores[rows], self.ids[rows], vis)


@runtime_checkable
class Detector(Protocol):
    """Finds persons in a frame. ``gives_ids``: whether its detections carry track ids."""

    gives_ids: bool

    def detect(self, frame: Frame) -> Detections: ...


def _boxes(boxes: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(boxes, np.float64).reshape(-1, 4))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, m)`` float64 intersection over union of boxes ``a (n, 4)`` and ``b (m, 4)`` (xyxy),
    by ``torchvision.ops.box_iou``; 0 for a box without area (``right <= left`` or
    ``bottom <= top``)."""
    return box_iou(_boxes(a), _boxes(b)).nan_to_num(nan=0.0).numpy()


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression (``torchvision.ops.nms``:
    a box goes when its IoU with a kept better one is above ``threshold``), best score first;
    equal scores in index order."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranks = -torch.arange(len(order), dtype=torch.float64)  # no ties left to torchvision
    return order[tv_nms(_boxes(np.asarray(boxes)[order]), ranks, threshold).numpy()]


# --------------------------------------------------------------------------- MOTChallenge files


class MotDetections:
    """Detections of one video from a MOTChallenge text file, read frame by frame.

    One row per box: ``frame, id, left, top, width, height[, conf, class, visibility, ...]``
    (comma- or space-separated; frames 1-based; ``id`` -1 where untracked; ``conf`` 1 when
    absent; ``visibility``, as MOTChallenge ground truth has it, kept where it is in 0..1 (a
    detections file's ``-1`` there: unknown); further columns ignored). Blank lines and lines
    starting with ``#`` are skipped. Pixels are 1-based as in MOTChallenge (the top-left pixel
    is ``(1, 1)``): a row ``left, top, width, height`` is the box ``[left - 1, top - 1,
    left - 1 + width, top - 1 + height]`` in the 0-based frame coordinates of everything else
    (crops, stored boxes, the built-in detector).

    Checks (:meth:`load`, one pass over the file): a malformed row is a :class:`CerberusError`
    naming the file and line; boxes reaching outside the frame are clipped to it and those left
    with no area dropped (one log line with the counts); boxes for frames past the video's last
    frame are an error when the frame count is known (the file belongs to another video), else
    counted and reported by :meth:`unused` at the end.

    Memory: only where each frame's rows begin and end in the file is kept (about 24 bytes a
    frame); :meth:`detect` reads a frame's rows when asked. A file whose rows are not in frame
    order (ground truth sorted by id) is first sorted into a temporary copy out of core (runs
    of :data:`SORT_RUN` rows sorted in memory, then merged), removed by :meth:`close`.
    """

    def __init__(
        self,
        path: Path,
        index: tuple[np.ndarray, np.ndarray, np.ndarray],
        gives_ids: bool,
        *,
        size: tuple[int, int] | None = None,
        min_score: float | None = None,
        sorted_copy: Path | None = None,
    ) -> None:
        self.path = path
        self.gives_ids = gives_ids
        self._frames, self._starts, self._ends = index
        self._size, self._min_score = size, min_score
        self._file = sorted_copy or path
        self._sorted_copy = sorted_copy
        self._fh = None
        self._seen: set[int] = set()
        if sorted_copy is not None:
            self._finalizer = weakref.finalize(self, _unlink, sorted_copy)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        size: tuple[int, int] | None = None,
        num_frames: int | None = None,
        min_score: float | None = None,
    ) -> MotDetections:
        """Read and check a MOTChallenge file (one pass; memory per frame, not per row).

        Args:
            size: ``(width, height)`` of the video's frames: boxes are clipped to it.
            num_frames: the video's frame count where known: rows past it are an error.
            min_score: rows whose ``conf`` is below it are left out.
        """
        path = Path(path)
        counts = {"clipped": 0, "dropped": 0, "low": 0}
        frames, starts, ends = array("q"), array("q"), array("q")
        kept = array("b")  # 1: the frame has a row kept (only while in order)
        ordered = True
        tracked = untracked = 0
        beyond = [math.inf, -math.inf]
        previous = 0
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise CerberusError(f"{path}: detections file not found") from None
        except OSError as exc:
            raise CerberusError(f"{path}: detections file unreadable ({exc})") from None
        with fh:
            offset = 0
            for line_no, raw in enumerate(fh, 1):
                start, offset = offset, offset + len(raw)
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as exc:
                    raise CerberusError(f"{path}: detections file unreadable ({exc})") from None
                if not line or line.startswith("#"):
                    continue
                row = _parse_row(line, f"{path} line {line_no}", size, min_score, counts)
                frame = row[0] if row is not None else _frame_of(line)
                if frame < previous:
                    ordered = False
                if ordered:
                    if not frames or frame != frames[-1]:
                        frames.append(frame)
                        starts.append(start)
                        ends.append(offset)
                        kept.append(0)
                    else:
                        ends[-1] = offset
                previous = frame
                if row is None:
                    continue
                if ordered:
                    kept[-1] = 1
                if row[6] >= 0:
                    tracked += 1
                else:
                    untracked += 1
                if num_frames is not None and frame > num_frames:
                    beyond = [min(beyond[0], frame), max(beyond[1], frame)]
        clipped, dropped, low = counts["clipped"], counts["dropped"], counts["low"]
        if clipped or dropped or low:
            parts = []
            if clipped:
                parts.append(f"{clipped} box(es) clipped to the {size[0]}x{size[1]} frame")
            if dropped:
                parts.append(f"{dropped} box(es) of less than one pixel dropped")
            if low:
                parts.append(f"{low} row(s) with conf below {min_score} left out")
            logger.info("%s: %s", path, "; ".join(parts))
        if beyond[0] <= beyond[1]:
            raise CerberusError(
                f"{path}: detections for frame(s) {int(beyond[0])}..{int(beyond[1])} but the video "
                f"has {num_frames} frames (the detections of another video?)"
            )
        sorted_copy = None
        if ordered and not all(kept):  # frames whose rows were all left out
            keep = [i for i, k in enumerate(kept) if k]
            frames = array("q", [frames[i] for i in keep])
            starts = array("q", [starts[i] for i in keep])
            ends = array("q", [ends[i] for i in keep])
        if not ordered:
            logger.info("%s: rows not in frame order: sorted into a temporary copy", path)
            sorted_copy = _sort_by_frame(path)
            frames, starts, ends = _index(sorted_copy)
        given = tracked > 0 and untracked == 0
        if tracked and untracked:
            logger.info(
                "%s: some rows have ids and some not: the ids are ignored and the boxes tracked",
                path,
            )
        if not tracked and not untracked:
            logger.info("%s: no detections", path)
        index = (np.frombuffer(frames, np.int64), np.frombuffer(starts, np.int64),
                 np.frombuffer(ends, np.int64))  # fmt: skip
        return cls(path, index, given, size=size, min_score=min_score, sorted_copy=sorted_copy)

    def rows_of(self, number: int) -> Detections | None:
        """The detections of frame ``number`` as the file gives them (``None``: none)."""
        i = int(np.searchsorted(self._frames, number))
        if i >= len(self._frames) or self._frames[i] != number:
            return None
        if self._fh is None:
            self._fh = open(self._file, "rb")  # noqa: SIM115 - kept open, closed by close()
        self._fh.seek(int(self._starts[i]))
        text = self._fh.read(int(self._ends[i] - self._starts[i])).decode("utf-8")
        counts = {"clipped": 0, "dropped": 0, "low": 0}
        rows = []
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                row = _parse_row(line, str(self._file), self._size, self._min_score, counts)
                if row is not None and row[0] == number:
                    rows.append(row[1:])
        if not rows:
            return None
        a = np.asarray(rows, np.float64)
        vis = a[:, 6].astype(np.float32)
        return Detections(
            a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64),
            None if np.isnan(vis).all() else vis,
        )  # fmt: skip

    @property
    def rows(self) -> _FrameRows:
        """Read-only mapping frame number -> :class:`Detections` (read from the file)."""
        return _FrameRows(self)

    def detect(self, frame: Frame) -> Detections:
        self._seen.add(frame.number)
        dets = self.rows_of(frame.number)
        if dets is None:
            return Detections.empty()
        return (
            dets
            if self.gives_ids
            else Detections(
                dets.boxes, dets.scores, np.full(len(dets), -1, np.int64), dets.visibility
            )
        )

    @property
    def frames(self) -> list[int]:
        """The frame numbers that have detections."""
        return self._frames.tolist()

    def unused(self, last_frame: int) -> list[int]:
        """Frames with detections past ``last_frame`` (the last frame the video gave)."""
        return self._frames[self._frames > last_frame].tolist()

    def close(self) -> None:
        """Close the file (and remove a sorted copy)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._sorted_copy is not None:
            self._finalizer()


class _FrameRows:
    """``MotDetections.rows``: ``[number]`` and ``get(number, default)`` read one frame."""

    def __init__(self, owner: MotDetections) -> None:
        self.owner = owner

    def get(self, number: int, default=None):
        dets = self.owner.rows_of(number)
        return default if dets is None else dets

    def __getitem__(self, number: int) -> Detections:
        dets = self.owner.rows_of(number)
        if dets is None:
            raise KeyError(number)
        return dets

    def __contains__(self, number: int) -> bool:
        return number in set(self.owner.frames)

    def __len__(self) -> int:
        return len(self.owner._frames)


def _parse_row(line: str, where: str, size, min_score, counts: dict) -> tuple | None:
    """``(frame, left, top, right, bottom, score, id, visibility)`` of one MOTChallenge row in
    0-based pixels (clipped to ``size``), or ``None`` for a row left out (conf below
    ``min_score``, no area after clipping; counted in ``counts``). A malformed row: an error
    naming ``where``."""
    fields = line.replace(",", " ").split()
    if len(fields) < 6:
        raise CerberusError(
            f"{where}: {len(fields)} field(s); a MOTChallenge row is frame, id, left, "
            f"top, width, height[, conf, ...]: {line[:80]!r}"
        )
    try:
        values = [float(x) for x in fields[:7]]
    except ValueError:
        raise CerberusError(f"{where}: not a number in {line[:80]!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise CerberusError(f"{where}: NaN or infinite value in {line[:80]!r}")
    frame, ident, left, top, width, height = values[:6]
    score = values[6] if len(values) > 6 else 1.0
    if frame != int(frame) or frame < 1:
        raise CerberusError(f"{where}: frame {fields[0]!r} is not a number from 1 up")
    if ident != int(ident) or ident < -1:
        raise CerberusError(f"{where}: id {fields[1]!r} is not -1 or a number from 0 up")
    if width < 0 or height < 0:
        raise CerberusError(f"{where}: negative width or height in {line[:80]!r}")
    if min_score is not None and score < min_score:
        counts["low"] += 1
        return None
    box = [left - 1, top - 1, left - 1 + width, top - 1 + height]  # 1-based pixels
    if size is not None:
        w, h = size
        new = [min(max(box[0], 0), w), min(max(box[1], 0), h)]
        new += [min(max(box[2], 0), w), min(max(box[3], 0), h)]
        if new != box:
            counts["clipped"] += 1
        box = new
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        counts["dropped"] += 1
        return None
    return (int(frame), *box, score, int(ident), _visibility(fields))


def _frame_of(line: str) -> int:
    return int(float(line.replace(",", " ").split(None, 1)[0]))


SORT_RUN = 200_000
"""Rows sorted in memory at a time when a detections file is sorted out of core."""


def _sort_by_frame(path: Path) -> Path:
    """A temporary copy of a MOTChallenge file with its rows in frame order (stable: rows of a
    frame keep their order), sorted out of core: runs of :data:`SORT_RUN` rows sorted in
    memory and written to temporary files, then merged."""
    runs: list[Path] = []
    out = None
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = []
                for raw in fh:
                    text = raw.strip()
                    if text and not text.startswith(b"#"):
                        chunk.append((_frame_of(text.decode()), len(runs) and 0, text))
                    if len(chunk) >= SORT_RUN:
                        break
                if not chunk:
                    break
                chunk.sort(key=lambda r: r[0])  # stable
                run = _temp(".run")
                runs.append(run)
                with open(run, "wb") as w:
                    w.writelines(t + b"\n" for _, _, t in chunk)
                del chunk
        out = _temp(".sorted.txt")
        files = [open(r, "rb") for r in runs]  # noqa: SIM115 - closed below
        try:
            with open(out, "wb") as w:
                w.writelines(heapq.merge(*files, key=lambda t: _frame_of(t.decode())))
        finally:
            for f in files:
                f.close()
    except OSError as exc:
        if out is not None:
            _unlink(out)
        raise CerberusError(
            f"{path}: rows not in frame order, and sorting them failed ({exc}); sort it "
            "first (sort -t, -k1,1n -s)"
        ) from None
    finally:
        for run in runs:
            _unlink(run)
    return out


def _temp(suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="cerberus-det-", suffix=suffix)
    os.close(fd)
    return Path(name)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _index(path: Path) -> tuple[array, array, array]:
    """Frame numbers and the byte span of each frame's rows in a file sorted by frame."""
    frames, starts, ends = array("q"), array("q"), array("q")
    offset = 0
    with open(path, "rb") as fh:
        for raw in fh:
            start, offset = offset, offset + len(raw)
            frame = _frame_of(raw.decode())
            if not frames or frame != frames[-1]:
                frames.append(frame)
                starts.append(start)
                ends.append(offset)
            else:
                ends[-1] = offset
    return frames, starts, ends


def _visibility(fields: list[str]) -> float:
    """A row's visibility (column 9) where it is a number in 0..1, else NaN (unknown: absent,
    or a detections file's -1)."""
    try:
        vis = float(fields[8]) if len(fields) > 8 else math.nan
    except ValueError:
        return math.nan
    return vis if 0 <= vis <= 1 else math.nan


# --------------------------------------------------------------------------- HOG


HOG_WINDOW = (64, 128)
"""The default people detector's window ``(width, height)``: a person needs about 110 px of
height in it (the window holds a margin around the person), after upscaling."""


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - the footage extra installs it
        raise CerberusError(
            "the built-in detector needs OpenCV: pip install 'cerberus-reid[footage]'"
        ) from None
    if not hasattr(cv2, "HOGDescriptor"):  # pragma: no cover - OpenCV 5 removed it
        raise CerberusError(
            f"OpenCV {cv2.__version__} has no HOGDescriptor (removed in 5.0): install "
            "opencv-python-headless<5"
        )
    return cv2


class HogDetector:
    """OpenCV's HOG + linear SVM people detector (Dalal & Triggs; no downloaded weights) run
    only where something moves.

    Motion gate: a MOG2 background model on a small grey copy of each frame it is given; the
    moving regions, grown to at least one detection window, are searched; a frame where more
    than ``full_frame_above`` of the area moves (the first ones, while the model learns) is
    searched whole. The first frame and every ``full_every``-th are searched whole too (the
    gate cannot see a person who stands still; every 10th at stride 2 is every 20 frames, 2 s
    at 10 fps, so a person standing has a crop every 2 s). ``motion=False`` searches every
    frame whole.

    Limits: a person must be at least about ``100 / upscale`` px tall (the 64x128 window at
    scale 1; smaller people are missed); ``upscale`` 2 finds people from ~50 px at about four
    times the cost. Seated, strongly occluded or top-down views are missed (the detector was
    trained on upright pedestrians seen from the side). HOG boxes are the window, about 1.3x
    the person's height; ``tighten`` shrinks them to the person.

    Args:
        upscale: frames (or moving regions) are enlarged by this before detection.
        hit_threshold: SVM margin a window needs (higher: fewer, surer detections).
        min_score: detections below this score are dropped after grouping.
        win_stride: step of the sliding window in pixels.
        scale: ratio between the image pyramid's levels.
    """

    gives_ids = False
    default_stride = 2  # every second frame (the tracker links across)

    def __init__(
        self,
        *,
        upscale: float = 1.0,
        motion: bool = True,
        hit_threshold: float = 0.0,
        min_score: float = 0.3,
        win_stride: int = 8,
        scale: float = 1.05,
        full_frame_above: float = 0.4,
        tighten: bool = True,
        full_every: int = 10,
    ) -> None:
        cv2 = _cv2()
        if not upscale > 0:
            raise CerberusError(f"--upscale {upscale}: must be positive")
        self.cv2 = cv2
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale = float(upscale)
        self.motion = motion
        self.hit_threshold = hit_threshold
        self.min_score = min_score
        self.win_stride = (win_stride, win_stride)
        self.scale = scale
        self.full_frame_above = full_frame_above
        self.tighten = tighten
        self.full_every = full_every
        self._background = None
        self.searched = 0.0
        """Fraction of the frame area searched, summed over frames (a measure of the gate)."""
        self.frames = 0

    def moving_regions(self, grey: np.ndarray) -> list[tuple[int, int, int, int]] | None:
        """Regions ``(x0, y0, x1, y1)`` to search in a grey frame; ``None``: the whole frame."""
        cv2 = self.cv2
        h, w = grey.shape
        factor = min(1.0, 320.0 / w)
        small = (
            cv2.resize(
                grey,
                (max(int(w * factor), 1), max(int(h * factor), 1)),
                interpolation=cv2.INTER_AREA,
            )
            if factor < 1
            else grey
        )
        if self._background is None:
            self._background = cv2.createBackgroundSubtractorMOG2(
                history=200, varThreshold=16, detectShadows=True
            )
        mask = self._background.apply(small)
        mask = (mask > 200).astype(np.uint8)  # shadows (127) are not motion
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = cv2.dilate(mask, np.ones((5, 5), np.uint8), iterations=2)
        if mask.mean() > self.full_frame_above:
            return None
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        win_w, win_h = (s / self.upscale * 1.25 for s in HOG_WINDOW)
        regions = []
        for x, y, bw, bh, area in stats[1:count]:
            if area < 4:
                continue
            x0, y0, x1, y1 = (v / factor for v in (x, y, x + bw, y + bh))
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            rw = max(x1 - x0 + 16, win_w)
            rh = max(y1 - y0 + 32, win_h)
            regions.append([cx - rw / 2, cy - rh / 2, cx + rw / 2, cy + rh / 2])
        merged = _merge_regions(regions)
        return [
            (int(max(r[0], 0)), int(max(r[1], 0)), int(min(r[2], w)), int(min(r[3], h)))
            for r in merged
        ]

    def detect(self, frame: Frame) -> Detections:
        cv2 = self.cv2
        grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        h, w = grey.shape
        regions = self.moving_regions(grey) if self.motion else None
        if self.full_every and self.frames % self.full_every == 0:
            regions = None  # the first frame, and now and then: people standing still
        if regions is None:
            regions = [(0, 0, w, h)]
        self.frames += 1
        self.searched += sum((r[2] - r[0]) * (r[3] - r[1]) for r in regions) / float(w * h)
        boxes, scores = [], []
        for x0, y0, x1, y1 in regions:
            roi = grey[y0:y1, x0:x1]
            if self.upscale != 1.0:
                roi = cv2.resize(
                    roi, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR
                )
            if roi.shape[0] < HOG_WINDOW[1] or roi.shape[1] < HOG_WINDOW[0]:
                continue
            rects, weights = self.hog.detectMultiScale(
                roi,
                hitThreshold=self.hit_threshold,
                winStride=self.win_stride,
                padding=(8, 8),
                scale=self.scale,
            )
            for (rx, ry, rw, rh), s in zip(rects, np.asarray(weights).reshape(-1)):
                bx0, by0 = x0 + rx / self.upscale, y0 + ry / self.upscale
                boxes.append([bx0, by0, bx0 + rw / self.upscale, by0 + rh / self.upscale])
                scores.append(float(s))
        if not boxes:
            return Detections.empty()
        b = np.asarray(boxes, np.float32)
        s = np.asarray(scores, np.float32)
        keep = s >= self.min_score
        b, s = b[keep], s[keep]
        keep = nms(b, s, 0.4)
        b, s = b[keep], s[keep]
        if self.tighten:
            b = _tighten(b)
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
        return Detections.of(b, s)


def _tighten(boxes: np.ndarray, width: float = 0.6, height: float = 0.84) -> np.ndarray:
    """HOG windows shrunk around their centre to the person they hold (the default detector's
    training windows hold a person of about 0.8 of the height and half the width)."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * np.array([width, height], np.float32)
    return np.concatenate([c - half, c + half], axis=1).astype(np.float32)


def _merge_regions(regions: list[list[float]]) -> list[list[float]]:
    """Overlapping rectangles merged into their bounding rectangles until none overlap."""
    regions = [list(r) for r in regions]
    merged = True
    while merged and len(regions) > 1:
        merged = False
        out: list[list[float]] = []
        for r in regions:
            for o in out:
                if r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3]:
                    o[:] = [min(r[0], o[0]), min(r[1], o[1]), max(r[2], o[2]), max(r[3], o[3])]
                    merged = True
                    break
            else:
                out.append(r)
        regions = out
    return regions
