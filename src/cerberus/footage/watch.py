"""Many cameras in one process (method §9.3): ``cerberus watch cameras.yaml`` and ``cerberus
ingest --together``.

Each camera runs the steps of :func:`~cerberus.footage.ingest.ingest_source` (detect -> track ->
choose crops -> embed -> store, long tracks written in parts) in a thread of its own, its frames
decoded ahead by a second thread (PyAV releases the GIL while it decodes, so the cameras decode
in parallel). The heavy model calls are shared: the SSDLite detector runs the frames of all the
cameras waiting for it in one forward batch, and the crops of all the track parts due at once
are embedded in one batch (:class:`Batcher`). One process writes the gallery, its writes one at
a time (:class:`OneWriter`).

It runs until every file has ended, or until Ctrl-C / SIGTERM (``stop``): then each camera's
running tracks are written and the process ends cleanly. Restarting with the same list:

- each camera's source is found as :func:`~cerberus.footage.ingest.ingest_source` finds it
  (by content and camera: a moved copy is the same source, one file under two cameras two);
- a file the gallery holds complete is skipped (a line says so); a file left incomplete (a
  stop or a kill before its end) is ingested again from its start, its earlier items removed
  first, so no crop is stored twice;
- a stream is never marked complete: it continues, its frame numbers and times after the last
  stored and its new tracks' ids above the stored ones (nothing stored is removed or doubled).

Retention: a camera's items older than its ``retention`` (their time against the wall clock)
are removed, with their thumbnails and the paths of tracks left without items, when the watch
starts and every ``sweep`` seconds. A line per camera every ``progress`` seconds says how far
it is.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cerberus.errors import CerberusError
from cerberus.footage.cameras import Camera
from cerberus.footage.detect import MotDetections
from cerberus.footage.detectors import DEFAULT_DETECTOR, make_detector
from cerberus.footage.detectors.ssdlite import INPUT_SIZE, SsdLiteDetector
from cerberus.footage.ingest import (
    EMBED_BATCH,
    PART_SECONDS,
    Embedded,
    Embedder,
    IngestReport,
    SourceLedger,
    SourcePipeline,
    SourceRecord,
    TrackWriter,
    _end_source,
    _resume_point,
    default_tracker,
    detect_track_select,
    path_book,
    prepare_source,
    source_record,
    thumbs_folder,
    thumbs_of,
)
from cerberus.footage.select import CropSelector
from cerberus.footage.video import Frame, VideoSource, open_source
from cerberus.store.base import Filter, GalleryStore

logger = logging.getLogger(__name__)

PROGRESS_S = 10.0
"""Seconds between two progress lines of each camera."""
SWEEP_S = 60.0
"""Seconds between two retention sweeps."""
LINGER_S = 0.05
"""How long a batch waits for the cameras not yet in it (the others are waiting meanwhile)."""
PREFETCH = 4
"""Frames a camera decodes ahead of its detector."""


# ---------------------------------------------------------------- shared model calls


class _Slot:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None


class Batcher:
    """Runs ``fn`` once on the requests of several threads (its own thread; ``fn`` takes a list
    of requests and returns their answers in order).

    A batch is what is queued when the worker is free, plus what arrives within ``linger``
    seconds while fewer than ``expected`` requests are queued (``expected``: the clients
    registered, :meth:`join` / :meth:`leave`; a camera waiting for its frame does not hold the
    others longer than ``linger``). An error of ``fn`` is raised in every thread of the batch.
    """

    def __init__(self, fn: Callable[[list], list], *, name: str, linger: float = LINGER_S) -> None:
        self.fn, self.linger = fn, linger
        self._cond = threading.Condition()
        self._queue: list[tuple[object, _Slot]] = []
        self._clients = 0
        self._closed = False
        self.calls = 0
        self.requests = 0
        self.busy = 0.0  # seconds inside fn
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def join(self) -> None:
        with self._cond:
            self._clients += 1

    def leave(self) -> None:
        with self._cond:
            self._clients -= 1
            self._cond.notify_all()

    def submit(self, request):
        """``fn``'s answer to ``request`` (blocks until its batch has run)."""
        slot = _Slot()
        with self._cond:
            if self._closed:
                raise RuntimeError("batcher closed")
            self._queue.append((request, slot))
            self._cond.notify_all()
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                deadline = time.monotonic() + self.linger
                while len(self._queue) < self._clients and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._queue = self._queue, []
            t0 = time.perf_counter()
            try:
                answers = self.fn([request for request, _ in batch])
                for (_, slot), answer in zip(batch, answers, strict=True):
                    slot.result = answer
            except BaseException as exc:  # every waiting camera hears of it
                for _, slot in batch:
                    slot.error = exc
            self.busy += time.perf_counter() - t0
            self.calls += 1
            self.requests += len(batch)
            for _, slot in batch:
                slot.done.set()


class SharedEmbedder:
    """:class:`~cerberus.footage.ingest.Embedder` of several cameras: the crops of the parts
    they commit at the same moment go through ``embedder`` in one call (rows split back)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.num_attributes = embedder.num_attributes
        self.batcher = Batcher(self._run, name="embed")

    def _run(self, requests: list[list[np.ndarray]]) -> list[Embedded]:
        crops = [c for r in requests for c in r]
        out = self.embedder.embed(crops)
        answers, at = [], 0
        for r in requests:
            rows = slice(at, at + len(r))
            at += len(r)
            answers.append(Embedded(out.vectors[rows], out.predicted[rows], out.certainty[rows]))
        return answers

    def embed(self, crops: Sequence[np.ndarray]) -> Embedded:
        return self.batcher.submit(list(crops))

    def close(self) -> None:
        self.batcher.close()


class SharedSsdLite:
    """One SSDLite network for several cameras: :meth:`view` gives each camera a detector of
    its own (its own tile turn) whose forward passes join the other cameras' in one batch
    (:meth:`~cerberus.footage.detectors.ssdlite.SsdLiteDetector.passes_many`)."""

    def __init__(self, detector: SsdLiteDetector) -> None:
        self.detector = detector
        self.batcher = Batcher(detector.passes_many, name="detect")

    def view(self) -> SsdLiteDetector:
        own = copy.copy(self.detector)  # the network shared, the schedule its own
        own.calls, own._next_tile = 0, 0
        own.passes = lambda image, windows, size=(INPUT_SIZE, INPUT_SIZE): self.batcher.submit(
            (image, windows, size)
        )
        self.batcher.join()
        return own

    def close(self) -> None:
        self.batcher.close()


class OneWriter:
    """The store of a watch: its writes (``add``, ``finish``, ``remove``) one at a time under
    :attr:`lock`; everything else passed through."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store
        self.lock = threading.RLock()

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def add(self, *args, **kwargs):
        with self.lock:
            return self.store.add(*args, **kwargs)

    def finish(self, *args, **kwargs):
        with self.lock:
            return self.store.finish(*args, **kwargs)

    def remove(self, *args, **kwargs):
        with self.lock:
            return self.store.remove(*args, **kwargs)


# ---------------------------------------------------------------- one camera


@dataclass
class CameraRun:
    """One camera of a watch: its pipeline, its report and where it is.

    ``state``: ``ready``, ``running``, ``done`` (a file to its end), ``stopped`` (stopped
    before its end: a file stays incomplete), ``skipped`` (already in the gallery) or ``failed``
    (``error`` says why). ``name``: what its items are stored under (the source's path, or
    ``<path>#<camera>`` for a file already stored under another camera, see
    :func:`~cerberus.footage.ingest.source_record`); ``offset`` / ``first_track``: a continued
    stream's frame numbers and new track ids start after ``offset`` and at ``first_track``."""

    camera: Camera
    pipe: SourcePipeline
    report: IngestReport
    state: str = "ready"
    error: str = ""
    name: str = ""
    offset: int = 0
    first_track: int = 0
    ledger: SourceLedger | None = None
    frame: int = 0
    time: float = math.nan
    thread: threading.Thread | None = None
    extra: dict = field(default_factory=dict)

    @property
    def video(self) -> VideoSource:
        return self.pipe.video

    def seconds_done(self) -> float:
        """Seconds of the source's time processed in this run."""
        fps = self.video.fps or 10.0
        return max(0, self.frame - self.offset) / fps


class _Prefetch:
    """Frames of ``frames`` decoded ahead by a thread (``depth`` of them); stops pulling when
    ``stop`` is set (``cut`` then says whether frames were left)."""

    _END = object()

    def __init__(self, frames: Iterator[Frame], stop: threading.Event, depth: int = PREFETCH):
        self.frames, self.stop = frames, stop
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.cut = False
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._pull, daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.closed.is_set():
            with contextlib.suppress(queue.Full):
                self.queue.put(item, timeout=0.2)
                return True
        return False

    def _pull(self) -> None:
        try:
            for frame in self.frames:
                if self.stop.is_set():
                    self.cut = True
                    break
                if not self._put(frame):
                    return
        except BaseException as exc:  # a decoding error reaches the camera's thread
            self._put(exc)
            return
        finally:
            self.frames.close()
        self._put(self._END)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=30)


def _follow(
    run: CameraRun,
    store: OneWriter,
    embedder: Embedder,
    *,
    thumbs: Path | None,
    stop: threading.Event,
    part_seconds: float | None,
    batch: int = EMBED_BATCH,
) -> None:
    """One camera's loop (as :func:`~cerberus.footage.ingest.ingest_source`'s): frames ->
    detect -> track -> parts written; at its end or at ``stop`` the running tracks written, a
    file that reached its end marked complete."""
    cam, pipe, report = run.camera, run.pipe, run.report
    video = pipe.video
    fps = video.fps or 10.0
    parts = math.ceil((part_seconds or 60.0) * cam.crops_per_minute / 60.0)
    selector = CropSelector(crops_per_minute=cam.crops_per_minute, max_crops=cam.max_crops,
                            fps=fps, keep=max(64, 4 * parts))  # fmt: skip
    name = run.name or video.name
    folder = None if thumbs is None else thumbs_folder(thumbs, name, cam.name)
    writer = TrackWriter(store, embedder, source=name, camera=cam.name, thumbs=folder,
                         report=report, fps=fps, part_seconds=part_seconds, batch=batch,
                         first_track=run.first_track)  # fmt: skip
    paths = path_book(pipe.detector, fps)
    frames = _Prefetch(video.frames(pipe.stride), stop)
    last = run.offset
    run.state = "running"
    try:
        t0 = time.perf_counter()
        for frame in frames:
            report.seconds["decode"] += time.perf_counter() - t0  # waiting for the decoder
            last = frame.number
            report.processed += 1
            update = detect_track_select(pipe, frame, selector, report, paths)
            writer.commit(selector, update.ended, paths, number=frame.number)
            writer.commit(selector, writer.due(frame.number, update, paths), paths, end=False,
                          number=frame.number)  # fmt: skip
            run.frame, run.time = frame.number, frame.timestamp
            t0 = time.perf_counter()
    finally:
        frames.close()
    # the running tracks written (a file cut short: its unused detections are no news)
    ended = dataclasses.replace(pipe, detector=None) if frames.cut else pipe
    _end_source(ended, selector, writer, report, last, paths)
    if video.kind == "stream":
        run.state = "stopped"  # never complete: a restart continues it
    elif frames.cut:
        run.state = "stopped"
        logger.info("%s: stopped at frame %d; the file stays incomplete (a restart redoes it)",
                    cam.name, last)  # fmt: skip
    else:
        report.damage = video.damage
        store.finish(name)
        if run.ledger is not None:
            run.ledger.update(name, status="damaged" if video.damage else "complete",
                              note=video.damage)  # fmt: skip
        run.state = "done"


def _run_thread(run: CameraRun, stop: threading.Event, leave: list[Callable[[], None]], **kw):
    try:
        _follow(run, stop=stop, **kw)
    except CerberusError as exc:
        run.state, run.error = "failed", str(exc)
        logger.error("%s: %s; its file stays incomplete, the other cameras go on",
                     run.camera.name, exc)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - one camera's fault must not end the others
        run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"
        logger.exception("%s: failed", run.camera.name)
    finally:
        for done in leave:
            done()


# ---------------------------------------------------------------- a watch


def open_cameras(cameras: Sequence[Camera]) -> list[CameraRun]:
    """Open every camera's source, detections and detector (bad ones refused with one line
    before any model is loaded or gallery touched). Cameras running SSDLite share one network
    (:class:`SharedSsdLite`, kept in ``runs[i].extra['shared']``)."""
    runs: list[CameraRun] = []
    shared: dict[str, SharedSsdLite] = {}
    try:
        for cam in cameras:
            video = open_source(cam.source, start=cam.start)
            if cam.detections is not None:
                if video.kind == "stream":
                    raise CerberusError(f"{cam.name}: detections: a live stream has none")
                detector = MotDetections.load(
                    cam.detections, size=video.size, num_frames=video.num_frames
                )
            else:
                spec = cam.detector or DEFAULT_DETECTOR
                key = f"{spec}|{cam.detector_score}"
                options = {} if cam.detector_score is None else {"score": cam.detector_score}
                if key not in shared:
                    detector = make_detector(spec, **options)  # each camera its own state
                    if isinstance(detector, SsdLiteDetector):
                        shared[key] = SharedSsdLite(detector)
                if key in shared:
                    detector = shared[key].view()
            stride = cam.stride or int(getattr(detector, "default_stride", 1))
            tracker = default_tracker(detector, video.fps or 10.0, stride)
            pipe = SourcePipeline(video, detector, tracker, stride)
            run = CameraRun(cam, pipe, IngestReport(video.name))
            key = f"{cam.detector or DEFAULT_DETECTOR}|{cam.detector_score}"
            if cam.detections is None and key in shared:
                run.extra["shared"] = shared[key]
            runs.append(run)
    except BaseException:
        for s in shared.values():
            s.close()
        raise
    return runs


def _resume(
    store: GalleryStore, run: CameraRun, thumbs: Path | None = None, taken: set | None = None
) -> None:
    """Where each camera starts (as :func:`~cerberus.footage.ingest.ingest_source` decides,
    the source found by its content and camera): a finished file skipped, an unfinished one
    redone (its items and thumbnails removed), a live stream continued after its last stored
    frame, time and track."""
    video, cam = run.video, run.camera
    ledger = SourceLedger(thumbs) if thumbs is not None else None
    record = source_record(store, video, cam.name, ledger)
    taken = set() if taken is None else taken
    if record.name in taken:  # the same file under an earlier camera of this watch
        twin = f"{video.name}#{cam.name}"
        state = next((x for x in store.sources() if x.name == twin), None)
        entry = ledger.entries().get(twin, {}) if ledger is not None else {}
        record = SourceRecord(twin, record.key, state, entry)
    taken.add(record.name)
    run.name, run.ledger = record.name, ledger
    live = video.kind == "stream"
    if live and record.state is not None:
        frame, moment, track = _resume_point(store, record.name)
        video.resume(frame, moment)
        run.offset, run.first_track = frame, track + 1
        logger.info("%s: continuing %s after its frame %d (%d items kept)",
                    cam.name, record.name, frame, record.state.count)  # fmt: skip
    else:
        if record.done:
            run.state = "skipped"
            logger.info("%s: %s; skipped", cam.name, record.line(video))
            return
        if record.name.split("#")[0] != video.name:  # a moved copy, unfinished: its new path
            run.report.removed = prepare_source(store, record.name, replace=True)
            if ledger is not None:
                ledger.remove([record.name])
            run.name = video.name
        run.report.removed += prepare_source(store, run.name, replace=False)
        folder = None if thumbs is None else thumbs_folder(thumbs, run.name, cam.name)
        if folder is not None and folder.is_dir():
            for old in folder.glob("*.jpg"):
                old.unlink(missing_ok=True)
    run.report.source = run.name
    if ledger is not None:
        ledger.update(run.name, path=video.name, camera=cam.name, key=record.key,
                      status="live" if live else "running", note="")  # fmt: skip


def sweep(store: OneWriter, cameras: Sequence[Camera], now: float) -> int:
    """Retention: each camera's items older than ``now - retention`` removed, with their
    thumbnails (and the paths of tracks left without items). Returns the items removed."""
    removed = 0
    for cam in cameras:
        if cam.retention is None:
            continue
        cut = now - cam.retention
        with store.lock:  # no write of this process between the listing and the removal
            ids = store.ids(Filter(cameras=frozenset({cam.name}), before=cut))
            files = [p for p in store.get(ids, vectors=False).path if p] if len(ids) else []
            gone = store.remove(camera=cam.name, before=cut)
        for f in files:
            Path(f).unlink(missing_ok=True)
        removed += gone
        if not gone:
            continue
        logger.info("%s: %d items older than %s removed (retention)",
                    cam.name, gone, cam.local_time(cut))  # fmt: skip
    return removed


def progress_line(run: CameraRun, wall: float) -> str:
    """One camera's progress: frame, its time in the camera's zone, tracks, crops, speed."""
    r = run.report
    speed = run.seconds_done() / wall if wall > 0 else 0.0
    when = run.camera.local_time(run.time) if math.isfinite(run.time) else "no time"
    state = "" if run.state == "running" else f" [{run.state}]"
    return (f"{run.camera.name}: frame {run.frame} ({when}), {r.tracks} tracks, {r.items} crops, "
            f"{speed:.2f}x real time{state}")  # fmt: skip


def run_cameras(
    runs: list[CameraRun],
    store: GalleryStore,
    embedder: Embedder,
    *,
    thumbs: str | Path | None = None,
    stop: threading.Event | None = None,
    progress: float = PROGRESS_S,
    sweep_every: float = SWEEP_S,
    part_seconds: float | None = PART_SECONDS,
    batch: int = EMBED_BATCH,
    say: Callable[[str], None] = logger.info,
    clock: Callable[[], float] = time.time,
    started: float | None = None,
) -> list[CameraRun]:
    """Follow ``runs`` (from :func:`open_cameras`) into ``store`` until each has ended or
    ``stop`` is set (Ctrl-C and SIGTERM set it when called from the main thread): see the
    module doc. ``say`` gets the progress lines; ``clock`` is the wall clock of retention;
    ``started``: when the watch began (``time.perf_counter()``; the speed counts from there);
    ``batch``: the crops a camera queues before they are embedded and written (a part is
    written sooner when it has waited :data:`~cerberus.footage.ingest.FLUSH_SECONDS`).
    """
    stop = stop or threading.Event()
    started = time.perf_counter() if started is None else started
    writer = OneWriter(store)
    shared_embedder = SharedEmbedder(embedder)
    cameras = [r.camera for r in runs]
    thumbs = None if thumbs is None else Path(thumbs).absolute()
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sweep(writer, cameras, clock())
        taken: set[str] = set()
        for run in runs:
            _resume(writer, run, thumbs, taken)
        for run in runs:
            if run.state == "skipped":
                if "shared" in run.extra:
                    run.extra["shared"].batcher.leave()
                continue
            leave = [run.extra["shared"].batcher.leave] if "shared" in run.extra else []
            shared_embedder.batcher.join()
            leave.append(shared_embedder.batcher.leave)
            run.thread = threading.Thread(
                target=_run_thread, name=f"camera {run.camera.name}",
                args=(run, stop, leave),
                kwargs={"store": writer, "embedder": shared_embedder, "thumbs": thumbs,
                        "part_seconds": part_seconds, "batch": batch},
            )  # fmt: skip
            run.thread.start()
        _supervise(runs, writer, cameras, stop, progress, sweep_every, say, clock, started)
    finally:
        stop.set()
        for run in runs:
            if run.video.kind == "stream":
                run.video.stop()
        for run in runs:
            if run.thread is not None:
                run.thread.join()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        shared_embedder.close()
        _close_shared(runs)
    wall = time.perf_counter() - started
    for run in runs:
        if run.state != "skipped":
            say(progress_line(run, wall))
    say(batch_line(runs, shared_embedder))
    return runs


def batch_line(runs: list[CameraRun], embedder: SharedEmbedder) -> str:
    """The shared model calls of a watch: batches, requests per batch, seconds busy."""
    parts = []
    shared = {id(r.extra["shared"]): r.extra["shared"] for r in runs if "shared" in r.extra}
    for name, b in [("detector", s.batcher) for s in shared.values()] + [
        ("embedder", embedder.batcher)
    ]:
        per = b.requests / b.calls if b.calls else 0.0
        parts.append(f"{name}: {b.calls} batches of {per:.1f} requests, {b.busy:.1f} s")
    return "shared model calls: " + "; ".join(parts)


def _close_shared(runs: list[CameraRun]) -> None:
    shared = {id(r.extra["shared"]): r.extra["shared"] for r in runs if "shared" in r.extra}
    for one in shared.values():
        one.close()


def _supervise(runs, writer, cameras, stop, progress, sweep_every, say, clock, started) -> None:
    """The main thread while the cameras run: progress lines, retention sweeps, Ctrl-C."""
    next_line = time.perf_counter() + progress
    next_sweep = time.perf_counter() + sweep_every
    live = [r for r in runs if r.thread is not None]
    stopping = False
    while True:
        try:  # a Ctrl-C may come at any point of the loop, the test of the threads too
            if not any(r.thread.is_alive() for r in live):
                break
            time.sleep(0.1)
            now = time.perf_counter()
            if stop.is_set() and not stopping:
                stopping = True
                say("stopping: writing each camera's running tracks")
                for r in live:
                    if r.video.kind == "stream":  # a file's decoder stops by itself
                        r.video.stop()
            if now >= next_line and progress > 0:  # a line per camera
                next_line = now + progress
                for r in live:
                    say(progress_line(r, now - started))
            if now >= next_sweep and not stopping:
                next_sweep = now + sweep_every
                try:
                    sweep(writer, cameras, clock())
                except CerberusError as exc:  # the cameras go on; the next sweep tries again
                    logger.warning("retention: %s", exc)
        except KeyboardInterrupt:
            stop.set()
    if stop.is_set() and not stopping:  # the cameras ended before the next turn of the loop
        say("stopping: writing each camera's running tracks")


def open_gallery(
    gallery: str | Path,
    *,
    checkpoint: str | Path | None,
    thumbs: str | Path | None,
    device: str = "auto",
):
    """``(store, embedder, thumbs)`` of ``gallery`` as ``cerberus ingest`` opens it: created with
    ``checkpoint``'s model when new, else with the model it was built with (or ``checkpoint``
    when it has the same weights); thumbnails in ``thumbs`` (default ``<gallery>/thumbs`` for a
    folder, ``<file>.thumbs`` beside a Milvus Lite file; a Milvus server needs one given)."""
    from cerberus.footage.ingest import ModelEmbedder
    from cerberus.inference.embed import InferenceModel
    from cerberus.store.open import existing_store, info_of_model, open_or_create

    thumbs = thumbs_of(gallery, thumbs)
    store = existing_store(gallery)
    try:
        chosen = checkpoint or (store.info.checkpoint if store is not None else None)
        if not chosen:
            raise CerberusError(f"--checkpoint: {gallery} is a new gallery; give the model")
        net = InferenceModel.from_checkpoint(chosen, device=device)
        info = info_of_model(net)
        info.meta["roots"] = [str(Path(thumbs).absolute())]
        store = open_or_create(store if store is not None else gallery, info,
                               where=f"--checkpoint {chosen} (gallery {gallery})")  # fmt: skip
    except BaseException:
        if store is not None:
            store.close()
        raise
    return store, ModelEmbedder(net), Path(thumbs)


def watch(
    cameras: Sequence[Camera],
    *,
    gallery: str | Path,
    checkpoint: str | Path | None = None,
    thumbs: str | Path | None = None,
    device: str = "auto",
    progress: float = PROGRESS_S,
    sweep_every: float = SWEEP_S,
    say: Callable[[str], None] = logger.info,
    stop: threading.Event | None = None,
) -> list[CameraRun]:
    """``cerberus watch``: every camera of the list into ``gallery`` at once (see the module
    doc), its sources and detectors checked before the model is loaded or the gallery touched.

    Raises:
        CerberusError: a bad source, detector or gallery (one line, nothing written); at the
            end, the cameras that failed while running (the others went on).
    """
    started = time.perf_counter()
    runs = open_cameras(cameras)
    try:
        store, embedder, folder = open_gallery(gallery, checkpoint=checkpoint, thumbs=thumbs,
                                               device=device)  # fmt: skip
    except BaseException:
        _close_shared(runs)
        raise
    try:
        run_cameras(runs, store, embedder, thumbs=folder, stop=stop, progress=progress,
                    sweep_every=sweep_every, say=say, started=started)  # fmt: skip
    finally:
        store.close()
    failed = [r for r in runs if r.state == "failed"]
    if failed:
        raise CerberusError(
            f"{len(failed)} camera(s) failed: "
            + "; ".join(f"{r.camera.name}: {r.error}" for r in failed)
        )
    return runs
