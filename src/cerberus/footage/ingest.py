"""One source into a gallery, method §9.3: frames -> detect -> track -> choose crops -> embed and
describe -> the store, one finished track at a time.

Each finished track's crops are written as thumbnails (JPEG, atomically), then added to the
store in one call (one transaction: a killed ingest leaves whole tracks only); the source is
marked complete at its end. Before starting, a source already in the gallery is refused when
complete (``replace=True`` removes it first) and removed when incomplete (a killed run), so a
rerun never duplicates items.
"""

from __future__ import annotations

import hashlib
import logging
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
from cerberus.footage.select import Candidate, CropSelector
from cerberus.footage.track import GivenIds, SortTracker, Tracker
from cerberus.footage.video import VideoSource, open_source
from cerberus.inference.scoring import decide_sids, embed_features, prototype_scores
from cerberus.store.base import GalleryStore, Items

if TYPE_CHECKING:
    from cerberus.inference.embed import InferenceModel

logger = logging.getLogger(__name__)

DEFAULT_STRIDE_HOG = 2
"""The built-in detector runs on every second frame by default (the tracker links across)."""
DEFAULT_MAX_CROPS = 4
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
    """What one source's ingestion did: frames decoded and searched, tracks stored (and
    tentative ones dropped), items added, seconds per stage, the source's own seconds (its
    duration, for the real-time factor) and why a stream ended (empty when it did not drop)."""

    source: str
    frames: int = 0
    processed: int = 0
    tracks: int = 0
    dropped_tracks: int = 0
    items: int = 0
    removed: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
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
    for detections with ids, :class:`SortTracker` without; a track ends after one second
    without a match)."""
    video = source if isinstance(source, VideoSource) else open_source(source, start=start)
    if detections is not None:
        if video.kind == "stream":
            raise CerberusError("--detections: a live stream has no detections file")
        detector = MotDetections.load(detections, size=video.size, num_frames=video.num_frames)
    elif detector is None or isinstance(detector, str):
        detector = make_detector(detector or DEFAULT_DETECTOR)
    if stride is None:
        stride = DEFAULT_STRIDE_HOG if isinstance(detector, HogDetector) else 1
    if tracker is None:
        steps = max(2, round((video.fps or 10.0) / stride))  # one second without a match
        tracker = GivenIds(max_age=steps) if detector.gives_ids else SortTracker(max_age=steps)
    return SourcePipeline(video, detector, tracker, stride)


def detect_track_select(
    pipe: SourcePipeline, frame, selector: CropSelector, report: IngestReport
) -> list[int]:
    """One searched frame: detect -> track -> offer each tracked box's crop to its track's
    candidates (dropped tracks forgotten). Returns the tracks that ended (timed per stage)."""
    seconds = report.seconds
    t1 = time.perf_counter()
    dets = pipe.detector.detect(frame)
    t2 = time.perf_counter()
    seconds["detect"] += t2 - t1
    update = pipe.tracker.update(dets)
    t3 = time.perf_counter()
    seconds["track"] += t3 - t2
    for i in np.flatnonzero(update.tracks >= 0):
        selector.offer(int(update.tracks[i]), frame, dets.boxes[i], float(dets.scores[i]))
    for t in update.dropped:
        selector.drop(t)
    report.dropped_tracks += len(update.dropped)
    seconds["select"] += time.perf_counter() - t3
    return list(update.ended)


class TrackWriter:
    """The last steps for finished tracks: their chosen crops embedded and described in one batch
    (``embedder``), then each track's thumbnails written and its items added to the store in
    one call (one transaction: a killed ingest leaves whole tracks only)."""

    def __init__(
        self,
        store: GalleryStore,
        embedder: Embedder,
        *,
        source: str,
        camera: str,
        thumbs: Path | None,
        report: IngestReport,
    ) -> None:
        self.store, self.embedder = store, embedder
        self.source, self.camera, self.thumbs = source, camera, thumbs
        self.report = report

    def commit(self, selector: CropSelector, ended: list[int]) -> None:
        """Finish the ``ended`` tracks' crop choice, embed, store (tracks with no crop: none)."""
        chosen = {t: selector.finish(t) for t in ended}
        chosen = {t: c for t, c in chosen.items() if c}
        if not chosen:
            return
        seconds, report = self.report.seconds, self.report
        t0 = time.perf_counter()
        crops = [c.crop for cs in chosen.values() for c in cs]
        out = self.embedder.embed(crops)
        seconds["embed"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        row = 0
        for track, cands in chosen.items():
            rows = slice(row, row + len(cands))
            row += len(cands)
            self.store.add(self._items(track, cands, out, rows), complete=False)
            report.tracks += 1
            report.items += len(cands)
        seconds["store"] += time.perf_counter() - t0

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


def _check_options(camera: str, stride: int | None, max_crops: int) -> None:
    if max_crops < 1:
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
    max_crops: int = DEFAULT_MAX_CROPS,
    replace: bool = False,
    thumbs: str | Path | None = None,
    max_frames: int | None = None,
) -> IngestReport:
    """Ingest one video, MOTChallenge folder or stream into ``store`` (see the module doc).

    The steps, in order: :func:`open_pipeline` (open the source, choose detector and tracker),
    then per frame decode and :func:`detect_track_select`, each finished track through
    :class:`TrackWriter` (embed -> store), then :func:`_end_source` (the tracks still running,
    the report) and the source marked complete.

    Args:
        camera: camera name stored with every item.
        start: time of the first frame (see :func:`~cerberus.footage.video.open_source`; a
            source given already opened keeps its own).
        detections: a MOTChallenge detections file for this source (else ``detector``: one
            built or a spec, by default :data:`~cerberus.footage.detectors.DEFAULT_DETECTOR`).
        tracker: else :class:`GivenIds` for detections with ids, :class:`SortTracker` without.
        stride: run detection on every n-th frame (default 2 for the built-in detector, 1 with
            a detections file).
        max_crops: crops kept per track.
        thumbs: folder of the thumbnails (``None``: no thumbnails, items have no path).
        max_frames: stop after this many frames (a sample; ``None``: to the end). A file
            stopped so is left incomplete (its rest is not in the gallery); a stream is
            finished.

    Returns:
        :class:`IngestReport`.
    """
    _check_options(camera, stride, max_crops)
    pipe = open_pipeline(
        source, start=start, detections=detections, detector=detector, tracker=tracker,
        stride=stride,
    )  # fmt: skip
    video = pipe.video
    report = IngestReport(video.name)
    report.removed = prepare_source(store, video.name, replace=replace)
    thumb_dir = _clean_thumbs(thumbs, video.name, camera)
    selector = CropSelector(max_crops)
    writer = TrackWriter(
        store, embedder, source=video.name, camera=camera, thumbs=thumb_dir, report=report
    )
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
            writer.commit(selector, detect_track_select(pipe, frame, selector, report))
            if max_frames is not None and report.processed >= max_frames:
                cut = True
                break
    except KeyboardInterrupt:
        if video.kind != "stream":
            raise  # a file stopped half-way stays incomplete: a rerun redoes it
        logger.info("%s: stopped; committing the running tracks", video.name)
    finally:
        frames.close()
    _end_source(pipe, selector, writer, report, last)
    if cut and video.kind != "stream":  # a file's sample: its rest is not in, a rerun redoes it
        logger.info(
            "%s: stopped after %d frames; the source stays incomplete", video.name, report.frames
        )
        return report
    store.finish(video.name)  # with nobody in it too: recorded as done, with no items
    if not report.items:
        logger.info(
            "%s: nobody found in %d frames (0 tracks); recorded as ingested, with no crops",
            video.name,
            report.frames,
        )
    logger.info("%s", report.line())
    return report


def _end_source(
    pipe: SourcePipeline,
    selector: CropSelector,
    writer: TrackWriter,
    report: IngestReport,
    last: int,
) -> None:
    """The source's end: the tracks still running are closed and committed; the report gets
    its frame count, duration and why a stream ended; detections past the last frame warned."""
    end = pipe.tracker.close()
    report.dropped_tracks += len(end.dropped)
    writer.commit(selector, list(end.ended))
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
    max_crops: int = DEFAULT_MAX_CROPS,
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
                    replace=replace,
                    thumbs=Path(thumbs),
                )
            )
        return reports
    finally:
        if store is not None:
            store.close()
