"""One source into a gallery, method §9.3: frames -> detect -> track -> choose crops -> embed and
describe -> the store, one finished track (or one part of a long track) at a time.

Each track part's crops are written as thumbnails (JPEG, atomically), then added to the store
with the part's path (the track's box on every processed frame, detected or predicted) in one
call (one transaction: a killed ingest leaves whole parts only); the source is marked complete
at its end. A track still running is written in parts of ``part_seconds``, so a person standing
for an hour is searchable before they leave. A new track may continue an earlier one of the
same source (:class:`Linking`: it ended shortly before, nearby, and their crops look alike):
it is then stored under the earlier track's id. Parts are embedded in batches across tracks
(:class:`TrackWriter`). Before starting, a source is looked up by content and camera
(:func:`source_record`, the ledger :class:`SourceLedger`): refused when complete
(``replace=True`` removes it first), removed when incomplete (a killed run), continued after
its last stored frame when it is a live stream (never marked complete), so a rerun never
duplicates items.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from cerberus.errors import CerberusError
from cerberus.files import atomic_write, atomic_write_json
from cerberus.footage.detect import Detector, HogDetector, MotDetections
from cerberus.footage.detectors import DEFAULT_DETECTOR, make_detector
from cerberus.footage.select import CROPS_PER_MINUTE, Candidate, CropSelector
from cerberus.footage.track import BoxTracker, GivenIds, PathBook, Tracker, TrackUpdate
from cerberus.footage.video import VideoSource, is_stream, open_source
from cerberus.inference.scoring import (
    decide_sids,
    embed_features,
    pool_vectors,
    prototype_scores,
)
from cerberus.store.base import GalleryStore, Items, SourceState, TrackPath, make_filter

if TYPE_CHECKING:
    from cerberus.inference.embed import InferenceModel

logger = logging.getLogger(__name__)

DEFAULT_MAX_CROPS: int | None = None
"""No cap on the crops of a track (``crops_per_minute`` sets how many)."""
EMBED_BATCH = 32
"""Track parts are embedded together once their crops reach this many (across tracks)."""
FLUSH_SECONDS = 5.0
"""... or once the oldest queued part has waited this long (a live stream's latency)."""
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
    damage: str = ""
    startup: float = 0.0
    """Seconds from the command's start to this source's first frame (model load, opening)."""

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    def line(self) -> str:
        """One line: frames, tracks, crops, seconds and the real-time factor (the source's
        duration over the seconds spent on it, and counting the start-up where there is one)."""
        total = self.total_seconds
        speed = ""
        if total > 0 and self.duration > 0:
            speed = f", {self.duration / total:.1f}x real time"
            if self.startup > 0:
                speed += (f" ({self.duration / (total + self.startup):.1f}x counting "
                          f"{self.startup:.1f} s of start-up)")  # fmt: skip
        damage = f"; damaged: {self.damage}" if self.damage else ""
        return (
            f"{self.source}: {self.frames} frames ({self.processed} searched), {self.tracks} "
            f"tracks, {self.items} crops stored in {total:.1f} s{speed}{damage}"
        )


def thumbs_of(gallery: str, thumbs: str | Path | None) -> Path:
    """The thumbnail folder of ``gallery``: ``thumbs`` when given, else ``<gallery>/thumbs``
    for a folder and ``<file>.thumbs`` beside a Milvus Lite file; a Milvus server needs one
    given (one line)."""
    from cerberus.store.open import backend_of

    if thumbs is not None:
        return Path(thumbs)
    kind, address = backend_of(gallery)
    folder = Path(address)
    if kind == "local":
        return folder / "thumbs"
    if address.lower().endswith(".db"):
        return folder.with_name(folder.name + ".thumbs")
    raise CerberusError(f"--thumbs: give a folder for the thumbnails of {gallery}")


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


# --------------------------------------------------------------------------- what a source is

LEDGER = "sources.json"
"""The source ledger's file name in the thumbnail folder (:class:`SourceLedger`)."""
KEY_BLOCK = 1 << 20
"""A file's content key hashes its first and last this many bytes."""


def content_key(video: VideoSource) -> str:
    """What a source is, wherever it lies: a file's size and the SHA-256 of its first and last
    :data:`KEY_BLOCK` bytes (a moved or copied file has the same key); a MOTChallenge folder's
    the same of its ``seqinfo.ini`` and its first and last frame files; a URL's its name."""
    if video.kind == "stream" or video.remote:
        return "url:" + video.name
    if video.kind == "mot":
        files = [video.folder / "seqinfo.ini"]
        files += [video.folder / "img1" / f"{n:06d}{video.extension}"
                  for n in (1, video.num_frames or 1)]  # fmt: skip
    else:
        files = [Path(video.location)]
    digest = hashlib.sha256()
    total = 0
    for path in files:
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                digest.update(fh.read(KEY_BLOCK))
                if size > KEY_BLOCK:
                    fh.seek(max(size - KEY_BLOCK, KEY_BLOCK))
                    digest.update(fh.read(KEY_BLOCK))
        except OSError:
            size = -1  # a missing last frame: the folder is still one source
        total += size
        digest.update(str(size).encode())
    return f"{video.kind}:{total}:{digest.hexdigest()[:32]}"


class SourceLedger:
    """``<thumbs>/sources.json``: per stored source name, its ``path``, ``camera``, content
    ``key`` (:func:`content_key`), ``status`` (``running``, ``complete``, ``damaged``,
    ``live``) and ``note`` (what was decoded of a damaged one). What the gallery's own source
    record (name, complete) does not say. Updated under a lock file, written atomically."""

    _lock = threading.Lock()

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LEDGER

    def entries(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CerberusError(
                f"{self.path}: source ledger unreadable ({exc}); remove it to start it afresh"
            ) from None
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _locked(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_name(".sources.lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def update(self, name: str, **fields) -> None:
        with self._locked():
            data = self.entries()
            data[name] = {**data.get(name, {}), **fields}
            atomic_write_json(self.path, data, "source ledger")

    def remove(self, names: Sequence[str]) -> None:
        with self._locked():
            data = self.entries()
            if any(n in data for n in names):
                for n in names:
                    data.pop(n, None)
                atomic_write_json(self.path, data, "source ledger")


@dataclass
class SourceRecord:
    """Where ``video`` under ``camera`` stands in a gallery: the ``name`` its items are (or
    would be) stored under, the gallery's ``state`` of it and the ledger's ``entry``."""

    name: str
    key: str
    state: SourceState | None
    entry: dict

    @property
    def done(self) -> bool:
        """Finished (complete, damaged or not); a live stream never is."""
        return self.state is not None and self.state.complete

    def line(self, video: VideoSource) -> str:
        """``<source>: already in the gallery [as <other path>] (N items[, damaged: ...])``."""
        where = f" as {self.name}" if self.name.split("#")[0] != video.name else ""
        note = self.entry.get("note", "")
        count = self.state.count if self.state is not None else 0
        return (f"{video.name}: already in the gallery{where} ({count} items"
                f"{'; damaged: ' + note if note else ''})")  # fmt: skip


def source_record(
    store: GalleryStore, video: VideoSource, camera: str, ledger: SourceLedger | None
) -> SourceRecord:
    """Find ``video`` under ``camera`` in the gallery (:class:`SourceRecord`): by its content
    key and camera first (a moved or copied file is the source already stored), else by its
    name; one file given under a second camera is a second source, stored as
    ``<name>#<camera>``."""
    key = content_key(video)
    entries = ledger.entries() if ledger is not None else {}
    states = {s.name: s for s in store.sources()}
    for name, entry in entries.items():
        if entry.get("key") == key and entry.get("camera") == camera and name in states:
            if states[name].complete or name.split("#")[0] == video.name:
                return SourceRecord(name, key, states[name], entry)
    name = video.name
    other = entries.get(name)
    if other is not None and other.get("camera") != camera and name in states:
        name = f"{video.name}#{camera}"
    return SourceRecord(name, key, states.get(name), entries.get(name, {}))


def _resume_point(store: GalleryStore, name: str) -> tuple[int, float, int]:
    """``(last frame, last time, last track)`` a live source holds in the gallery (its items
    and paths): a restart continues after them."""
    items = store.get(store.ids(make_filter(sources=[name])), vectors=False)
    frame = int(items.frame.max()) if len(items) else 0
    stamps = items.timestamp[np.isfinite(items.timestamp)] if len(items) else np.zeros(0)
    moment = float(stamps.max()) if len(stamps) else -math.inf
    track = int(items.track.max()) if len(items) else -1
    for path in store.paths(source=name):
        if len(path.frames):
            frame = max(frame, int(path.frames[-1]))
        track = max(track, int(path.track))
    return frame, moment, track


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


def path_book(detector: Detector, fps: float) -> PathBook:
    """The :class:`PathBook` of a source: gaps longer than the detector's ``path_gap`` seconds
    (where it has one) are left empty in the stored paths, every gap filled otherwise; a gap's
    box on another track's detection at the detector's ``path_cover`` IoU (where it has one) is
    left out."""
    gap = getattr(detector, "path_gap", None)
    cover = getattr(detector, "path_cover", None)
    return PathBook(max_gap=None if gap is None else max(1, round(float(gap) * fps)),
                    cover_iou=None if not cover else float(cover))  # fmt: skip


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
        batch: int = EMBED_BATCH,
        flush_seconds: float = FLUSH_SECONDS,
        first_track: int = 0,
    ) -> None:
        self.store, self.embedder = store, embedder
        self.batch, self.flush_seconds = max(1, int(batch)), flush_seconds
        self.first_track = int(first_track)
        self._queue: list[tuple[int, list[Candidate], tuple | None, bool]] = []
        self._queued_crops = 0
        self._queued_since = 0.0
        self._queued_at: int | None = None
        self.source, self.camera, self.thumbs = source, camera, thumbs
        self.report = report
        self.fps = fps if fps and fps > 0 else 10.0
        self.part_frames = None if not part_seconds else max(1, round(part_seconds * self.fps))
        self.linking = linking
        self.link_log = report.links
        self._open: dict[int, _Stored | None] = {}  # tracker id -> stored so far (None: queued)
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
        number: int | None = None,
    ) -> None:
        """Queue a part of each of ``tracks`` (``end``: their last; they ended): its chosen
        crops and its path; the queue is written (:meth:`flush`) once it holds ``batch`` crops
        or its oldest part has waited ``flush_seconds`` (of the source's time, frame ``number``
        now, or of the wall clock)."""
        for t in tracks:
            span = paths.span(t) if paths is not None else None
            if paths is not None and span is None and not end:
                continue
            cands = selector.finish(t, span, first_part=t not in self._open)
            if not cands:
                if end and paths is not None:
                    paths.drop(t)
                if end:
                    self._queue.append((t, [], None, True))  # closed in its turn
                continue  # not ended: its path waits for the next part
            path = paths.take(t, end=end) if paths is not None else None
            if not self._queued_crops:
                self._queued_since = time.monotonic()
                self._queued_at = number
            self._queue.append((t, cands, path, end))
            self._queued_crops += len(cands)
            # a part counts as open from now: the track's next part is not its first
            self._open.setdefault(t, None)
        if self._queued_crops and (
            self._queued_crops >= self.batch
            or time.monotonic() - self._queued_since >= self.flush_seconds
            or (number is not None and self._queued_at is not None
                and (number - self._queued_at) / self.fps >= self.flush_seconds)
        ):  # fmt: skip
            self.flush()

    def flush(self) -> None:
        """Write the queued parts: all their crops embedded and described in one call, then
        each part's thumbnails and items (with its path) stored in one transaction, in the
        order they were queued."""
        queue, self._queue, self._queued_crops = self._queue, [], 0
        if not any(cands for _, cands, _, _ in queue):
            for track, _, _, end in queue:
                if end:
                    self._close(track)
            return
        seconds, report = self.report.seconds, self.report
        t0 = time.perf_counter()
        crops = [c.crop for _, cands, _, _ in queue for c in cands]
        out = self.embedder.embed(crops)
        seconds["embed"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        row = 0
        for track, cands, path, end in queue:
            if not cands:
                self._close(track)
                continue
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
        new = _Stored(track + self.first_track, [out.vectors[rows]], [out.predicted[rows]])
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


def _clean_thumbs(
    thumbs: str | Path | None, source: str, camera: str, *, keep: bool = False
) -> Path | None:
    """This source's thumbnail folder, emptied of an earlier run's JPEGs unless ``keep`` (a
    live source continued) (``None``: none); absolute, so the stored crop paths open from any
    folder."""
    folder = None if thumbs is None else thumbs_folder(Path(thumbs).absolute(), source, camera)
    if folder is not None and folder.exists() and not keep:
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
    batch: int = EMBED_BATCH,
    started: float | None = None,
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
        batch: crops embedded in one call (track parts queued across tracks, see
            :class:`TrackWriter`).
        started: ``time.perf_counter()`` when the command began: the report's start-up.

    A source is found in the gallery by its content and camera (:func:`source_record`): a
    finished one (a moved copy too) is refused unless ``replace``; an unfinished file is
    removed and redone; a live stream is continued after its last stored frame (it is never
    finished). A damaged file is finished with its damage in the ledger.

    Returns:
        :class:`IngestReport`.
    """
    _check_options(camera, stride, max_crops, crops_per_minute)
    pipe = open_pipeline(
        source, start=start, detections=detections, detector=detector, tracker=tracker,
        stride=stride,
    )  # fmt: skip
    video = pipe.video
    live = video.kind == "stream"
    ledger = SourceLedger(thumbs) if thumbs is not None else None
    record = source_record(store, video, camera, ledger)
    name, first_track = record.name, 0
    report = IngestReport(name)
    if live and record.state is not None and not replace:
        # a live source stopped earlier: continued after what it holds, nothing removed
        frame, moment, track = _resume_point(store, name)
        video.resume(frame, moment)
        first_track = track + 1
        logger.info("%s: in the gallery up to frame %d; continued after it", name, frame)
    else:
        if record.done and not replace:
            raise CerberusError(f"{record.line(video)}; --replace to ingest it again")
        if record.name.split("#")[0] != video.name:  # a moved copy replaced: its new path
            report.removed = prepare_source(store, record.name, replace=True)
            if ledger is not None:
                ledger.remove([record.name])
            name = report.source = video.name
        report.removed += prepare_source(store, name, replace=replace)
    if ledger is not None:
        ledger.update(name, path=video.name, camera=camera, key=record.key,
                      status="live" if live else "running", note="")  # fmt: skip
    thumb_dir = _clean_thumbs(thumbs, name, camera, keep=bool(first_track))
    fps = video.fps or 10.0
    parts = math.ceil((part_seconds or 60.0) * crops_per_minute / 60.0)
    selector = CropSelector(crops_per_minute=crops_per_minute, max_crops=max_crops, fps=fps,
                            keep=max(64, 4 * parts))  # fmt: skip
    writer = TrackWriter(store, embedder, source=name, camera=camera, thumbs=thumb_dir,
                         report=report, fps=fps, part_seconds=part_seconds,
                         linking=linking, batch=batch, first_track=first_track)  # fmt: skip
    if started is not None:
        report.startup = time.perf_counter() - started
    paths = path_book(pipe.detector, fps)
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
            writer.commit(selector, update.ended, paths, number=frame.number)
            writer.commit(selector, writer.due(frame.number, update, paths), paths, end=False,
                          number=frame.number)  # fmt: skip
            if max_frames is not None and report.processed >= max_frames:
                cut = True
                break
    except KeyboardInterrupt:
        if not live:
            writer.flush()  # the parts chosen so far, whole
            raise  # a file stopped half-way stays incomplete: a rerun redoes it
        logger.info("%s: stopped; committing the running tracks", name)
    finally:
        frames.close()
    _end_source(pipe, selector, writer, report, last, paths)
    if live:  # never finished: a restart continues after its last stored frame
        logger.info("%s: live source, kept open in the gallery (up to frame %d)", name, last)
        logger.info("%s", report.line())
        return report
    if cut:  # a file's sample: its rest is not in, a rerun redoes it
        logger.info("%s: stopped after %d frames; the source stays incomplete", name, report.frames)
        return report
    report.damage = video.damage
    store.finish(name)  # with nobody in it too: recorded as done, with no items
    if ledger is not None:
        ledger.update(name, status="damaged" if video.damage else "complete", note=video.damage)
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
    writer.flush()
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


@dataclass
class Job:
    """One source of a ``cerberus ingest`` run: its path or URL, camera and start time."""

    source: str
    camera: str
    start: object = None


def read_manifest(path: str | Path, camera: str | None = None) -> list[Job]:
    """The jobs of a manifest CSV: a header naming ``path`` (or ``source``) and optionally
    ``camera`` and ``start`` (ISO-8601 with a zone); relative paths are read from the
    manifest's folder; an empty camera is ``camera`` (``--camera``)."""
    import csv

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CerberusError(f"{path}: manifest unreadable ({exc})") from None
    rows = list(csv.DictReader(text.splitlines()))
    fields = {k.strip().lower() for k in (rows[0].keys() if rows else [])}
    key = "path" if "path" in fields else "source" if "source" in fields else None
    if key is None:
        raise CerberusError(f"{path}: a manifest needs a header line with path,camera,start")
    jobs = []
    for line_no, row in enumerate(rows, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        where = row[key]
        if not where:
            raise CerberusError(f"{path} line {line_no}: no path")
        if not is_stream(where) and not Path(where).expanduser().is_absolute():
            where = str(path.parent / where)
        cam = row.get("camera") or camera
        if not cam:
            raise CerberusError(f"{path} line {line_no}: no camera (give it there or --camera)")
        jobs.append(Job(where, cam, row.get("start") or None))
    if not jobs:
        raise CerberusError(f"{path}: the manifest lists no source")
    return jobs


_NAME_FIELDS = {"Y": r"\d{4}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}",
                "S": r"\d{2}", "f": r"\d{1,6}", "y": r"\d{2}", "j": r"\d{3}",
                "z": r"(?:Z|[+-]\d{2}:?\d{2})", "%": "%"}  # fmt: skip


def start_from_name(source: str, pattern: str, zone: str = "UTC") -> float:
    """UTC seconds of the time a file name holds, read with a ``strptime`` ``pattern``
    (``%Y%m%d_%H%M%S`` finds ``cam1_20261130_140000.mp4``) anywhere in the name; a time
    without ``%z`` is in ``zone`` (an IANA name or ``UTC``)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    regex, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%" and i + 1 < len(pattern):
            code = pattern[i + 1]
            if code not in _NAME_FIELDS:
                raise CerberusError(f"--start-from-name {pattern!r}: %{code} is not understood "
                                    f"(use %Y %m %d %H %M %S %f %y %j %z)")  # fmt: skip
            regex += _NAME_FIELDS[code]
            i += 2
        else:
            regex += re.escape(ch)
            i += 1
    name = Path(source).name
    found = re.search(regex, name)
    if found is None:
        raise CerberusError(f"{source}: no time in its name matches --start-from-name {pattern!r}")
    try:
        moment = datetime.strptime(found.group(0), pattern)
    except ValueError as exc:
        raise CerberusError(f"{source}: {found.group(0)!r} is not a time ({exc})") from None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise CerberusError(f"--name-zone {zone!r}: not a time zone name") from None
    return moment.timestamp()


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the disk is full."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        text = str(exc).lower()
        if "no space left" in text or "disk is full" in text or "disk full" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def ingest_files(
    sources: Sequence[str | Path],
    *,
    gallery: str | Path,
    camera: str | None,
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
    manifest: str | Path | None = None,
    name_pattern: str | None = None,
    name_zone: str = "UTC",
    say: Callable[[str], None] | None = None,
) -> list[IngestReport]:
    """``cerberus ingest``: sources into a gallery (a folder, a Milvus Lite file or URI:
    :func:`cerberus.store.open.open_store`), created with ``checkpoint``'s model when it does
    not exist; an existing one is ingested into with the model it was built with, or
    ``checkpoint`` when it has the same weights.

    The sources are ``sources`` (of ``camera``, from ``start``) and the rows of a ``manifest``
    CSV (:func:`read_manifest`: a camera and start per file); ``name_pattern`` reads each
    file's start from its name (:func:`start_from_name`, in ``name_zone``). Every source is
    opened (a stream tried) and the detector built before the model is loaded; sources the
    gallery already holds finished (by content and camera: a moved copy too) are skipped with
    a line (``say``) each, unless ``replace``. A full disk stops the run with one line, the
    sources it added removed: the gallery as it was before.

    Thumbnails go to ``thumbs`` (default ``<gallery>/thumbs`` for a folder, ``<file>.thumbs``
    beside a Milvus Lite file; a Milvus server needs one given). People come from
    ``detections`` or the ``detector`` spec (:func:`~cerberus.footage.detectors.make_detector`,
    default :data:`~cerberus.footage.detectors.DEFAULT_DETECTOR`) with ``detector_score`` and
    ``upscale`` (HOG only) as its options; the detector is built, and a bad one refused, before
    the model is loaded or the gallery touched.
    """
    started = time.perf_counter()
    say = say or logger.info
    jobs = [Job(str(s), camera or "", start) for s in sources]
    if manifest is not None:
        jobs += read_manifest(manifest, camera)
    if not jobs:
        raise CerberusError("ingest: give at least one video, folder or stream (or --manifest)")
    for job in jobs:
        _check_options(job.camera, stride, max_crops, crops_per_minute)
    if len(sources) > 1 and start is not None:
        raise CerberusError(
            "--start: one start time for several videos; give each its own with --manifest "
            "or --start-from-name"
        )
    if name_pattern is not None:
        if start is not None:
            raise CerberusError("--start-from-name reads the start from the name: not with --start")
        for job in jobs:
            if job.start is None and not is_stream(job.source):
                job.start = start_from_name(job.source, name_pattern, name_zone)
    if len(jobs) > 1 and detections is not None:
        raise CerberusError("--detections: one file for several videos; ingest them one by one")
    if detections is not None and detector is not None:
        raise CerberusError("--detections replaces the detector: give it or --detector, not both")
    options = {"score": detector_score, "upscale": upscale}
    if detections is not None and any(v is not None for v in options.values()):
        raise CerberusError("--detector-score, --upscale: options of a detector, not --detections")
    # every source (a stream tried) and the detections checked before a model is loaded
    videos = [open_source(j.source, start=j.start) for j in jobs]
    given = None
    if detections is not None:
        if videos[0].kind == "stream":
            raise CerberusError("--detections: a live stream has no detections file")
        given = MotDetections.load(detections, size=videos[0].size, num_frames=videos[0].num_frames)
    spec = detector or DEFAULT_DETECTOR
    first = given or make_detector(spec, **options)  # a bad detector: refused before the gallery
    from cerberus.inference.embed import InferenceModel
    from cerberus.store.open import existing_store, info_of_model, open_or_create

    thumbs = thumbs_of(gallery, thumbs)
    ledger = SourceLedger(thumbs)
    store = existing_store(gallery)  # None: made below with the model
    try:
        todo = list(zip(jobs, videos))
        if store is not None and not replace:  # finished ones skipped before the model loads
            todo = []
            for job, video in zip(jobs, videos):
                record = source_record(store, video, job.camera, ledger)
                if record.done:
                    say(f"{record.line(video)}; skipped (--replace to ingest it again)")
                    _close_video(video)
                else:
                    todo.append((job, video))
            if not todo:
                return []
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
        reports: list[IngestReport] = []
        added: list[tuple[str, str]] = []  # (name, camera) of sources this run wrote anew
        for i, (job, video) in enumerate(todo):
            record = source_record(store, video, job.camera, ledger)
            if video.kind != "stream" or record.state is None or replace:
                added.append((record.name, job.camera))
                if record.name.split("#")[0] != video.name:
                    added.append((video.name, job.camera))
            try:
                reports.append(
                    ingest_source(
                        video,
                        store,
                        embedder,
                        camera=job.camera,
                        detector=first if i == 0 else make_detector(spec, **options),
                        stride=stride,
                        max_crops=max_crops,
                        crops_per_minute=crops_per_minute,
                        linking=Linking() if link_tracks else None,
                        replace=replace,
                        thumbs=Path(thumbs),
                        started=started if i == 0 else None,
                    )
                )
            except Exception as exc:
                if not _disk_full(exc):
                    raise
                raise CerberusError(_undo_run(store, ledger, Path(thumbs), added, video)) from None
        return reports
    finally:
        for video in videos:
            _close_video(video)
        if store is not None:
            store.close()


def _close_video(video: VideoSource) -> None:
    """Close a stream's first connection if nobody read it."""
    opened, video._opened = video._opened, None
    if opened is not None:
        opened.close()


def _undo_run(
    store: GalleryStore,
    ledger: SourceLedger,
    thumbs: Path,
    added: list[tuple[str, str]],
    video: VideoSource,
) -> str:
    """After a full disk: the sources this run wrote anew removed (items, paths, thumbnails,
    ledger entries); the one line to print."""
    failed = []
    for name, camera in added:
        try:
            store.remove(source=name)
            ledger.remove([name])
        except Exception:  # noqa: BLE001 - the disk is full: say which could not be removed
            failed.append(name)
        folder = thumbs_folder(thumbs.absolute(), name, camera)
        for jpeg in folder.glob("*.jpg") if folder.exists() else []:
            jpeg.unlink(missing_ok=True)
    left = f"; could not remove {', '.join(failed)}" if failed else ""
    return (f"disk full while ingesting {video.name}: the {len(added)} source(s) this run "
            f"added were removed, the gallery is as it was before{left}; free some space and "
            "run the command again")  # fmt: skip
