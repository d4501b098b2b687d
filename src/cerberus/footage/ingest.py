"""One source into a gallery, method §9.3: frames -> detect -> track -> choose crops -> embed and
describe -> the store, one finished track (or one part of a long track) at a time.

Each track part's crops are written as thumbnails (JPEG, atomically), then added to the store
with the part's path (the track's box on every processed frame, detected or predicted) in one
call (one transaction: a killed ingest leaves whole parts only); the source is marked complete
at its end. A track still running is written in parts of ``part_seconds``, so a person standing
for an hour is searchable before they leave. A new track may continue an earlier one of the
same source (:class:`Linking`: it ended shortly before, nearby, and their crops look alike):
it is then stored under the earlier track's id. Before starting, a source already in the
gallery is refused when complete (``replace=True`` removes it first) and removed when
incomplete (a killed run), so a rerun never duplicates items.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from cerberus.errors import CerberusError
from cerberus.files import atomic_write
from cerberus.footage.detect import Detector, HogDetector, MotDetections
from cerberus.footage.detectors import DEFAULT_DETECTOR, make_detector
from cerberus.footage.select import CROPS_PER_MINUTE, Candidate, CropSelector
from cerberus.footage.track import BoxTracker, GivenIds, PathBook, Tracker, TrackUpdate
from cerberus.footage.video import VideoSource, open_source
from cerberus.inference.scoring import (
    decide_sids,
    embed_features,
    pool_vectors,
    prototype_scores,
)
from cerberus.store.base import GalleryStore, Items, TrackPath

if TYPE_CHECKING:
    from cerberus.inference.embed import InferenceModel

logger = logging.getLogger(__name__)

DEFAULT_MAX_CROPS: int | None = None
"""No cap on the crops of a track (``crops_per_minute`` sets how many)."""
PART_SECONDS = 20.0
"""A running track is written in parts of this many seconds."""
LOST_SECONDS = 3.0
"""A confirmed track missed this long ends (until then it is predicted and can be re-matched)."""
STAGES = ("decode", "detect", "track", "select", "embed", "store")


@dataclass
class Embedded:
    """Model outputs of ``n`` crops: ``vectors (n, D)`` float32 retrieval vectors,
    ``predicted (n, A)`` int16 PAR values and ``certainty (n, 5)`` float32."""

    vectors: np.ndarray
    predicted: np.ndarray
    certainty: np.ndarray


class Embedder(Protocol):
    """What ingestion needs of a model: crops in, vectors and attributes out."""

    num_attributes: int

    def embed(self, crops: Sequence[np.ndarray]) -> Embedded: ...


class ModelEmbedder:
    """:class:`Embedder` of a trained model: method §5.1 vectors, method §5.3 PAR (under the
    checkpoint's decision rule, as ``describe``) and its per-group certainty."""

    def __init__(self, net: InferenceModel) -> None:
        self.net = net
        self.num_attributes = net.schema.num_attributes
        self._prototypes = net.prototypes

    def embed(self, crops: Sequence[np.ndarray]) -> Embedded:
        net = self.net
        features = net.features_of_images(list(crops))
        per_group = prototype_scores(features, self._prototypes)
        sids, certainty = decide_sids(per_group, log_prior=net.log_prior, scale=net.prior_scale)
        return Embedded(
            embed_features(features),
            net.schema.from_sids(sids).astype(np.int16),
            certainty.astype(np.float32),
        )


@dataclass
class IngestReport:
    """What one source's ingestion did: frames decoded and searched, boxes detected, tracks
    stored (and tentative ones dropped, new tracks linked to an earlier one, parts written,
    boxes refused as crops), items added, seconds per stage, the pairs of tracks weighed for
    linking (``links``: new and earlier track, gap in seconds, near, cosine, agreement,
    linked), the source's own seconds (its duration, for the real-time factor) and why a
    stream ended (empty when it did not drop)."""

    source: str
    frames: int = 0
    processed: int = 0
    tracks: int = 0
    dropped_tracks: int = 0
    boxes: int = 0
    linked: int = 0
    parts: int = 0
    refused_crops: int = 0
    items: int = 0
    removed: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    links: list[dict] = field(default_factory=list)
    duration: float = 0.0
    ended: str = ""

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    def line(self) -> str:
        speed = (
            f", {self.duration / self.total_seconds:.1f}x real time"
            if self.total_seconds > 0 and self.duration > 0
            else ""
        )
        return (
            f"{self.source}: {self.frames} frames ({self.processed} searched), {self.tracks} "
            f"tracks, {self.items} crops stored in {self.total_seconds:.1f} s{speed}"
        )


def thumbs_folder(root: Path, source: str, camera: str) -> Path:
    """Where a source's thumbnails go: ``root/<camera>-<file stem>-<8 hex of the name>``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source.rstrip("/")).name)[:40] or "source"
    cam = re.sub(r"[^A-Za-z0-9_.-]+", "_", camera)[:40]
    key = hashlib.sha256(source.encode()).hexdigest()[:8]
    return root / f"{cam + '-' if cam else ''}{stem}-{key}"


def _write_jpeg(path: Path, crop: np.ndarray) -> None:
    from PIL import Image

    image = Image.fromarray(crop)
    atomic_write(path, lambda fh: image.save(fh, format="JPEG", quality=90), "thumbnail")


def prepare_source(store: GalleryStore, name: str, *, replace: bool) -> int:
    """Make room for ``name``: refuse it when the gallery holds it complete (unless
    ``replace``), remove what an earlier run left. Returns the number of items removed."""
    state = next((s for s in store.sources() if s.name == name), None)
    if state is None:
        return 0
    if state.complete and not replace:
        raise CerberusError(
            f"{name}: already in the gallery ({state.count} items); --replace to ingest it again"
        )
    removed = store.remove(source=name)
    if state.complete:
        logger.info("%s: replacing its %d items", name, removed)
    else:
        logger.info(
            "%s: an earlier run stopped before its end; its %d items are removed and the "
            "source ingested again",
            name,
            removed,
        )
    return removed


@dataclass
class SourcePipeline:
    """The first steps for one source (method §9.3): its frames, the detector run on every
    ``stride``-th, and the tracker that links its boxes."""

    video: VideoSource
    detector: Detector
    tracker: Tracker
    stride: int


def open_pipeline(
    source: str | Path | VideoSource,
    *,
    start=None,
    detections: str | Path | None = None,
    detector: Detector | str | None = None,
    tracker: Tracker | None = None,
    stride: int | None = None,
) -> SourcePipeline:
    """Open the source and choose its detector (a detections file, else ``detector``: one
    built, or a spec for :func:`~cerberus.footage.detectors.make_detector`, by default
    :data:`~cerberus.footage.detectors.DEFAULT_DETECTOR`), stride and tracker (:class:`GivenIds`
    for detections with ids, a track ending after one second without its id;
    :class:`BoxTracker` without: a tentative track dies after one second without a match, a
    confirmed one ends after :data:`LOST_SECONDS`, and with HOG both live at least until its
    next whole-frame search, so that people standing still, found only by those searches, keep
    a track)."""
    video = source if isinstance(source, VideoSource) else open_source(source, start=start)
    if detections is not None:
        if video.kind == "stream":
            raise CerberusError("--detections: a live stream has no detections file")
        detector = MotDetections.load(detections, size=video.size, num_frames=video.num_frames)
    elif detector is None or isinstance(detector, str):
        detector = make_detector(detector or DEFAULT_DETECTOR)
    if stride is None:
        stride = int(getattr(detector, "default_stride", 1))  # the detector's own choice
    if tracker is None:
        tracker = default_tracker(detector, video.fps or 10.0, stride)
    return SourcePipeline(video, detector, tracker, stride)


def default_tracker(detector: Detector, fps: float, stride: int) -> Tracker:
    """The tracker :func:`open_pipeline` chooses for ``detector`` (ages in processed frames;
    score thresholds and stage-1 IoU gate from the detector's ``track_scores`` and
    ``track_iou`` where it has them, else 0.5 / 0.1 and 0.3)."""
    steps = max(2, round(fps / stride))  # one second without a match
    if detector.gives_ids:
        return GivenIds(max_age=steps)
    lost = max(steps, round(LOST_SECONDS * fps / stride))
    full = getattr(detector, "full_every", 0) if isinstance(detector, HogDetector) else 0
    if full:  # a still person is seen on HOG's whole-frame searches only
        steps, lost = max(steps, full + 1), max(lost, full + 1)
    high, low = getattr(detector, "track_scores", (0.5, 0.1))  # the detector's own scale
    gate = float(getattr(detector, "track_iou", 0.3))
    return BoxTracker(
        max_age=steps, lost_age=lost, buffer=0.5 / steps, high_score=high, low_score=low,
        iou_threshold=gate,
    )  # fmt: skip


def detect_track_select(
    pipe: SourcePipeline,
    frame,
    selector: CropSelector,
    report: IngestReport,
    paths: PathBook | None = None,
) -> TrackUpdate:
    """One searched frame: detect -> track -> each track's box on this frame noted in ``paths``
    -> each tracked detection's crop offered to its track's candidates (dropped tracks
    forgotten). Returns the tracker's update (timed per stage)."""
    seconds = report.seconds
    t1 = time.perf_counter()
    dets = pipe.detector.detect(frame)
    report.boxes += len(dets)
    t2 = time.perf_counter()
    seconds["detect"] += t2 - t1
    update = pipe.tracker.update(dets)
    if paths is not None:
        paths.record(frame.number, update)
    t3 = time.perf_counter()
    seconds["track"] += t3 - t2
    vis = dets.visibility
    for i in np.flatnonzero(update.tracks >= 0):
        selector.offer(int(update.tracks[i]), frame, dets.boxes[i], float(dets.scores[i]),
                       np.nan if vis is None else float(vis[i]))  # fmt: skip
    for t in update.dropped:
        selector.drop(t)
        if paths is not None:
            paths.drop(t)
    report.dropped_tracks += len(update.dropped)
    seconds["select"] += time.perf_counter() - t3
    return update


@dataclass(frozen=True)
class Linking:
    """When a new track continues an earlier one of the same source (method §9.3): the earlier
    one's last detection at most ``window`` seconds before the new one's first, their boxes'
    centres at most ``(reach + speed x gap) x height`` apart (height: the taller of the two
    boxes, gap in seconds), the cosine of their pooled crop vectors at least ``min_cosine`` and
    at least ``min_agreement`` of the attributes predicted (the most frequent value per track)
    the same. The best cosine wins; a track is continued by one new track at most."""

    window: float = 10.0
    reach: float = 1.0
    speed: float = 1.5
    min_cosine: float = 0.9
    min_agreement: float = 0.8


@dataclass
class _Stored:
    """What the writer knows of a track it has stored a part of."""

    ident: int  # the id its items are stored under (an earlier track's when linked)
    vectors: list[np.ndarray]
    predicted: list[np.ndarray]
    last_frame: int = 0
    last_box: np.ndarray | None = None

    def vector(self) -> np.ndarray:
        return pool_vectors(np.concatenate(self.vectors))

    def attributes(self) -> np.ndarray:
        return _modes(np.concatenate(self.predicted))


def _modes(predicted: np.ndarray) -> np.ndarray:
    """``(A,)`` the most frequent value of each column of ``predicted (n, A)`` (ties: smaller)."""
    out = np.empty(predicted.shape[1], np.int64)
    for a in range(predicted.shape[1]):
        values, counts = np.unique(predicted[:, a], return_counts=True)
        out[a] = values[np.argmax(counts)]
    return out


class TrackWriter:
    """The last steps for track parts: their chosen crops embedded and described in one batch
    (``embedder``), then each part's thumbnails written and its items added to the store with
    its path in one call (one transaction: a killed ingest leaves whole parts only).

    A part is written when its track ends, or when it has run ``part_seconds`` since its last
    part (:meth:`due`): the crops chosen among its candidates of that span and its path from the
    last part to its last detection. A part without a crop is not written: its path waits for
    the next part; a track that never has a crop is not stored at all (a path without items is
    not searchable), nor is the tail of a stored track after its last crop-bearing part.
    ``linking``: a track's first part may join an earlier track (:class:`Linking`); the
    report's ``links`` keeps every pair weighed (for measuring the thresholds).
    """

    def __init__(
        self,
        store: GalleryStore,
        embedder: Embedder,
        *,
        source: str,
        camera: str,
        thumbs: Path | None,
        report: IngestReport,
        fps: float = 10.0,
        part_seconds: float | None = PART_SECONDS,
        linking: Linking | None = None,
    ) -> None:
        self.store, self.embedder = store, embedder
        self.source, self.camera, self.thumbs = source, camera, thumbs
        self.report = report
        self.fps = fps if fps and fps > 0 else 10.0
        self.part_frames = None if not part_seconds else max(1, round(part_seconds * self.fps))
        self.linking = linking
        self.link_log = report.links
        self._open: dict[int, _Stored] = {}  # tracker id -> stored so far
        self._done: dict[int, _Stored] = {}  # stored id -> an ended track, open to linking

    def due(self, number: int, update: TrackUpdate, paths: PathBook) -> list[int]:
        """The confirmed running tracks whose unwritten path began ``part_seconds`` or more
        before frame ``number``."""
        if self.part_frames is None:
            return []
        out = []
        for ident in update.alive[update.confirmed].tolist():
            span = paths.span(ident)
            if span is not None and number - span[0] + 1 >= self.part_frames:
                out.append(int(ident))
        return out

    def commit(
        self,
        selector: CropSelector,
        tracks: list[int],
        paths: PathBook | None = None,
        *,
        end: bool = True,
    ) -> None:
        """Write a part of each of ``tracks`` (``end``: their last; they ended): choose its
        crops, embed them, link a first part to an earlier track, store items and path."""
        parts = {}
        for t in tracks:
            span = paths.span(t) if paths is not None else None
            first = t not in self._open
            if paths is not None and span is None and not end:
                continue
            cands = selector.finish(t, span, first_part=first)
            if not cands:
                if end and paths is not None:
                    paths.drop(t)
                if end:
                    self._close(t)
                continue  # not ended: its path waits for the next part
            path = paths.take(t, end=end) if paths is not None else None
            parts[t] = (cands, path)
        if not parts:
            return
        seconds, report = self.report.seconds, self.report
        t0 = time.perf_counter()
        crops = [c.crop for cs, _ in parts.values() for c in cs]
        out = self.embedder.embed(crops)
        seconds["embed"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        row = 0
        for track, (cands, path) in sorted(parts.items(), key=lambda kv: kv[1][0][0].number):
            rows = slice(row, row + len(cands))
            row += len(cands)
            stored = self._open.get(track)
            if stored is None:
                stored = self._open[track] = self._first(track, cands, out, rows, path)
            else:
                stored.vectors.append(out.vectors[rows])
                stored.predicted.append(out.predicted[rows])
            if path is not None and len(path[0]):
                stored.last_frame, stored.last_box = int(path[0][-1]), path[1][-1]
            written = [] if path is None or not len(path[0]) else [
                TrackPath(self.source, self.camera, stored.ident, *path)
            ]  # fmt: skip
            items = self._items(stored.ident, cands, out, rows)
            self.store.add(items, complete=False, paths=written)
            report.parts += 1
            report.items += len(cands)
            if end:
                self._close(track)
        seconds["store"] += time.perf_counter() - t0

    def _close(self, track: int) -> None:
        stored = self._open.pop(track, None)
        if stored is not None and self.linking is not None:  # kept for linking only
            self._done[stored.ident] = stored

    def _first(self, track, cands, out: Embedded, rows: slice, path) -> _Stored:
        """A track's first part: a new track, or an earlier one continued (:class:`Linking`)."""
        new = _Stored(track, [out.vectors[rows]], [out.predicted[rows]])
        earlier = self._link(new, path) if self.linking is not None and path is not None else None
        if earlier is None:
            self.report.tracks += 1
            return new
        old = self._done.pop(earlier)
        self.report.linked += 1
        return _Stored(old.ident, old.vectors + new.vectors, old.predicted + new.predicted)

    def _link(self, new: _Stored, path) -> int | None:
        frames, boxes = path[0], path[1]
        if not len(frames):
            return None
        rule = self.linking
        first, box = int(frames[0]), boxes[0]
        horizon = first - rule.window * self.fps
        for key in [k for k, d in self._done.items() if d.last_frame < horizon]:
            del self._done[key]  # too long ago to be continued
        vector, attrs = new.vector(), new.attributes()
        best, best_cos = None, -np.inf
        for key, old in self._done.items():
            if old.last_box is None or not old.last_frame < first:
                continue
            gap = (first - old.last_frame) / self.fps
            height = max(box[3] - box[1], old.last_box[3] - old.last_box[1])
            centre = (box[:2] + box[2:]) / 2 - (old.last_box[:2] + old.last_box[2:]) / 2
            near = float(np.hypot(*centre)) <= (rule.reach + rule.speed * gap) * height
            cos = float(vector @ old.vector())
            agree = float((old.attributes() == attrs).mean()) if len(attrs) else 1.0
            ok = near and cos >= rule.min_cosine and agree >= rule.min_agreement
            self.link_log.append({"new": new.ident, "old": key, "gap": gap, "near": near,
                                  "cosine": cos, "agreement": agree, "linked": False})  # fmt: skip
            if ok and cos > best_cos:
                best, best_cos = key, cos
        if best is not None:
            for entry in reversed(self.link_log):
                if entry["new"] == new.ident and entry["old"] == best:
                    entry["linked"] = True
                    break
        return best

    def _items(self, track: int, cands: list[Candidate], out: Embedded, rows: slice) -> Items:
        return Items.make(
            out.vectors[rows],
            source=self.source,
            num_attributes=self.embedder.num_attributes,
            camera=self.camera,
            timestamp=[c.timestamp for c in cands],
            frame=[c.number for c in cands],
            box=np.stack([c.box for c in cands]),
            track=[track] * len(cands),
            path=_thumbnails(self.thumbs, track, cands),
            predicted=out.predicted[rows],
            certainty=out.certainty[rows],
        )


def _check_options(
    camera: str, stride: int | None, max_crops: int | None, crops_per_minute: float = 1.0
) -> None:
    if not crops_per_minute > 0:
        raise CerberusError(f"--crops-per-minute {crops_per_minute}: must be above 0")
    if max_crops is not None and max_crops < 1:
        raise CerberusError(f"--max-crops {max_crops}: must be at least 1")
    if stride is not None and stride < 1:
        raise CerberusError(f"--stride {stride}: must be at least 1")
    if not camera:
        raise CerberusError("--camera: give the camera's name")


def _clean_thumbs(thumbs: str | Path | None, source: str, camera: str) -> Path | None:
    """This source's thumbnail folder, emptied of an earlier run's JPEGs (``None``: none);
    absolute, so the stored crop paths open from any folder."""
    folder = None if thumbs is None else thumbs_folder(Path(thumbs).absolute(), source, camera)
    if folder is not None and folder.exists():
        for old in folder.glob("*.jpg"):
            old.unlink(missing_ok=True)
    return folder


def ingest_source(
    source: str | Path | VideoSource,
    store: GalleryStore,
    embedder: Embedder,
    *,
    camera: str,
    start=None,
    detections: str | Path | None = None,
    detector: Detector | str | None = None,
    tracker: Tracker | None = None,
    stride: int | None = None,
    max_crops: int | None = DEFAULT_MAX_CROPS,
    crops_per_minute: float = CROPS_PER_MINUTE,
    replace: bool = False,
    thumbs: str | Path | None = None,
    max_frames: int | None = None,
    part_seconds: float | None = PART_SECONDS,
    linking: Linking | None = None,
) -> IngestReport:
    """Ingest one video, MOTChallenge folder or stream into ``store`` (see the module doc).

    The steps, in order: :func:`open_pipeline` (open the source, choose detector and tracker),
    then per frame decode and :func:`detect_track_select`, each finished track (and each part
    of a long one) through :class:`TrackWriter` (embed -> store), then :func:`_end_source`
    (the tracks still running, the report) and the source marked complete.

    Args:
        camera: camera name stored with every item.
        start: time of the first frame (see :func:`~cerberus.footage.video.open_source`; a
            source given already opened keeps its own).
        detections: a MOTChallenge detections file for this source (else ``detector``: one
            built or a spec, by default :data:`~cerberus.footage.detectors.DEFAULT_DETECTOR`).
        tracker: else :func:`default_tracker`.
        stride: run detection on every n-th frame (default: the detector's ``default_stride``,
            2 for ssdlite and hog; 1 for a detections file or another detector).
        max_crops: at most this many crops per track (per part of a long track); ``None``: as
            many as ``crops_per_minute`` gives.
        crops_per_minute: crops per minute of track, spread over it (at least 3 per track).
        thumbs: folder of the thumbnails (``None``: no thumbnails, items have no path).
        max_frames: stop after this many frames (a sample; ``None``: to the end). A file
            stopped so is left incomplete (its rest is not in the gallery); a stream is
            finished.
        part_seconds: a running track is written every this many seconds (``None``: at its
            end only).
        linking: how a new track may continue an earlier one (``None``: never, the default:
            a model that does not tell people apart would join strangers).

    Returns:
        :class:`IngestReport`.
    """
    _check_options(camera, stride, max_crops, crops_per_minute)
    pipe = open_pipeline(
        source, start=start, detections=detections, detector=detector, tracker=tracker,
        stride=stride,
    )  # fmt: skip
    video = pipe.video
    report = IngestReport(video.name)
    report.removed = prepare_source(store, video.name, replace=replace)
    thumb_dir = _clean_thumbs(thumbs, video.name, camera)
    fps = video.fps or 10.0
    parts = math.ceil((part_seconds or 60.0) * crops_per_minute / 60.0)
    selector = CropSelector(crops_per_minute=crops_per_minute, max_crops=max_crops, fps=fps,
                            keep=max(64, 4 * parts))  # fmt: skip
    writer = TrackWriter(store, embedder, source=video.name, camera=camera, thumbs=thumb_dir,
                         report=report, fps=fps, part_seconds=part_seconds,
                         linking=linking)  # fmt: skip
    paths = PathBook()
    last = 0
    frames = video.frames(pipe.stride)
    cut = False  # stopped by max_frames
    try:
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(frames)
            except StopIteration:
                break
            report.seconds["decode"] += time.perf_counter() - t0
            last = frame.number
            report.processed += 1
            update = detect_track_select(pipe, frame, selector, report, paths)
            writer.commit(selector, update.ended, paths)
            writer.commit(selector, writer.due(frame.number, update, paths), paths, end=False)
            if max_frames is not None and report.processed >= max_frames:
                cut = True
                break
    except KeyboardInterrupt:
        if video.kind != "stream":
            raise  # a file stopped half-way stays incomplete: a rerun redoes it
        logger.info("%s: stopped; committing the running tracks", video.name)
    finally:
        frames.close()
    _end_source(pipe, selector, writer, report, last, paths)
    if cut and video.kind != "stream":  # a file's sample: its rest is not in, a rerun redoes it
        logger.info(
            "%s: stopped after %d frames; the source stays incomplete", video.name, report.frames
        )
        return report
    store.finish(video.name)  # with nobody in it too: recorded as done, with no items
    if not report.items:
        _warn_nobody(report, selector)
    logger.info("%s", report.line())
    return report


def _end_source(
    pipe: SourcePipeline,
    selector: CropSelector,
    writer: TrackWriter,
    report: IngestReport,
    last: int,
    paths: PathBook | None = None,
) -> None:
    """The source's end: the tracks still running are closed and committed; the report gets
    its frame count, duration and why a stream ended; detections past the last frame warned."""
    end = pipe.tracker.close()
    report.dropped_tracks += len(end.dropped)
    for t in end.dropped:
        if paths is not None:
            paths.drop(t)
    writer.commit(selector, list(end.ended), paths)
    report.refused_crops = selector.refused
    video = pipe.video
    report.frames = last = max(video.decoded, last)
    report.duration = last / video.fps if video.fps else 0.0
    report.ended = video.dropped
    detector = pipe.detector
    if isinstance(detector, MotDetections):
        unused = detector.unused(last)
        if unused:
            logger.warning(
                "%s: detections for %d frame(s) past the video's last frame %d (%d..%d) "
                "were not used",
                detector.path,
                len(unused),
                last,
                unused[0],
                unused[-1],
            )


def _warn_nobody(report: IngestReport, selector: CropSelector) -> None:
    """The one warning line of a source that gave no crop, with what to try."""
    if not report.boxes:
        logger.warning(
            "%s: nobody found in %d frames (%d searched); recorded as ingested, with no crops. "
            "Try another detector (--detector), boxes of your own detector (--detections FILE), "
            "or a lower --stride; the default detector does not see the cartoon people of "
            "`cerberus synth footage` (give their gt.txt as --detections)",
            report.source, report.frames, report.processed,
        )  # fmt: skip
    else:
        logger.warning(
            "%s: %d boxes found in %d frames but no track kept a crop (tracks of fewer than 3 "
            "detections are dropped; %d boxes too small, thin or hidden were refused); recorded "
            "as ingested, with no crops. Try another detector (--detector) or --detections FILE",
            report.source, report.boxes, report.frames, selector.refused,
        )  # fmt: skip


def _thumbnails(folder: Path | None, track: int, cands: list[Candidate]) -> list[str]:
    if folder is None:
        return [""] * len(cands)
    paths = []
    for c in cands:
        path = folder / f"t{track:06d}_f{c.number:07d}.jpg"
        _write_jpeg(path, c.crop)
        paths.append(str(path))
    return paths


def ingest_files(
    sources: Sequence[str | Path],
    *,
    gallery: str | Path,
    camera: str,
    checkpoint: str | Path | None = None,
    start=None,
    detections: str | Path | None = None,
    replace: bool = False,
    stride: int | None = None,
    max_crops: int | None = DEFAULT_MAX_CROPS,
    crops_per_minute: float = CROPS_PER_MINUTE,
    link_tracks: bool = False,
    thumbs: str | Path | None = None,
    detector: str | None = None,
    detector_score: float | None = None,
    upscale: float | None = None,
    device: str = "auto",
) -> list[IngestReport]:
    """``cerberus ingest``: sources of one camera into a gallery (a folder, a Milvus Lite file
    or URI: :func:`cerberus.store.open.open_store`), created with ``checkpoint``'s model when it
    does not exist; an existing one is ingested into with the model it was built with, or
    ``checkpoint`` when it has the same weights.

    Thumbnails go to ``thumbs`` (default ``<gallery>/thumbs`` for a folder, ``<file>.thumbs``
    beside a Milvus Lite file; a Milvus server needs one given). People come from
    ``detections`` or the ``detector`` spec (:func:`~cerberus.footage.detectors.make_detector`,
    default :data:`~cerberus.footage.detectors.DEFAULT_DETECTOR`) with ``detector_score`` and
    ``upscale`` (HOG only) as its options; the detector is built, and a bad one refused, before
    the model is loaded or the gallery touched.
    """
    sources = list(sources)
    if not sources:
        raise CerberusError("ingest: give at least one video, folder or stream")
    _check_options(camera, stride, max_crops, crops_per_minute)
    if len(sources) > 1 and start is not None:
        raise CerberusError("--start: one start time for several videos; ingest them one by one")
    if len(sources) > 1 and detections is not None:
        raise CerberusError("--detections: one file for several videos; ingest them one by one")
    if detections is not None and detector is not None:
        raise CerberusError("--detections replaces the detector: give it or --detector, not both")
    options = {"score": detector_score, "upscale": upscale}
    if detections is not None and any(v is not None for v in options.values()):
        raise CerberusError("--detector-score, --upscale: options of a detector, not --detections")
    # every source and the detections are checked before a model is loaded or a gallery made
    videos = [open_source(s, start=start) for s in sources]
    given = None
    if detections is not None:
        if videos[0].kind == "stream":
            raise CerberusError("--detections: a live stream has no detections file")
        given = MotDetections.load(detections, size=videos[0].size, num_frames=videos[0].num_frames)
    spec = detector or DEFAULT_DETECTOR
    first = given or make_detector(spec, **options)  # a bad detector: refused before the gallery
    from cerberus.inference.embed import InferenceModel
    from cerberus.store.open import backend_of, existing_store, info_of_model, open_or_create

    kind, address = backend_of(gallery)
    folder = Path(address)
    if thumbs is None:
        if kind == "local":
            thumbs = folder / "thumbs"
        elif address.lower().endswith(".db"):
            thumbs = folder.with_name(folder.name + ".thumbs")
        else:
            raise CerberusError(f"--thumbs: give a folder for the thumbnails of {gallery}")
    store = existing_store(gallery)  # None: made below with the model
    try:
        chosen = checkpoint or (store.info.checkpoint if store is not None else None)
        if not chosen:
            raise CerberusError(f"--checkpoint: {gallery} is a new gallery; give the model")
        net = InferenceModel.from_checkpoint(chosen, device=device)
        info = info_of_model(net)
        info.meta["roots"] = [str(Path(thumbs).absolute())]  # the server sends crops from there
        store = open_or_create(
            store if store is not None else gallery,
            info,
            where=f"--checkpoint {chosen} (gallery {gallery})",
        )
        embedder = ModelEmbedder(net)
        reports = []
        for i, video in enumerate(videos):
            reports.append(
                ingest_source(
                    video,
                    store,
                    embedder,
                    camera=camera,
                    detector=first if i == 0 else make_detector(spec, **options),  # fresh state
                    stride=stride,
                    max_crops=max_crops,
                    crops_per_minute=crops_per_minute,
                    linking=Linking() if link_tracks else None,
                    replace=replace,
                    thumbs=Path(thumbs),
                )
            )
        return reports
    finally:
        if store is not None:
            store.close()
