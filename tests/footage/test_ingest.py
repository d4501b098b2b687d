"""One source into a gallery (cerberus.footage.ingest): whole tracks, metadata, reruns, faults."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detections, HogDetector, iou_matrix
from cerberus.footage.ingest import Linking, ingest_source, path_book
from cerberus.footage.track import BoxTracker
from cerberus.footage.video import open_source, source_name
from cerberus.inference.scoring import pool_vectors
from cerberus.store import GalleryInfo, Items, MemoryStore, make_filter
from tests.footage_helpers import (
    BoxDetector,
    ColourEmbedder,
    Walker,
    default_walkers,
    write_gt,
    write_video,
)

START = "2026-11-30T14:00:00+01:00"
START_S = 1796043600.0
TESTS = Path(__file__).resolve().parent


def _info() -> GalleryInfo:
    return GalleryInfo(dim=20, fingerprint="colour", schema={"name": "test"}, prototypes={})


@pytest.fixture
def footage(tmp_path):
    walkers = default_walkers()
    video = write_video(tmp_path / "cam1.mp4", walkers, frames=30)
    return {
        "walkers": walkers,
        "video": video,
        "gt": write_gt(tmp_path / "gt.txt", walkers, 30, ids=False),
        "gt_ids": write_gt(tmp_path / "gt_ids.txt", walkers, 30, ids=True),
    }


def _ingest(footage, store, tmp_path, **kw):
    kw = {"detections": footage["gt"], "max_crops": 3, **kw}
    return ingest_source(footage["video"], store, ColourEmbedder(), camera="cam1", start=START,
                         thumbs=tmp_path / "thumbs", **kw)  # fmt: skip


def test_thumbnail_paths_are_stored_absolute(footage, tmp_path, monkeypatch):
    """A gallery named relatively (``--gallery galleries/shop``) still serves its crops from
    any folder: the stored paths are absolute."""
    monkeypatch.chdir(tmp_path)
    store = MemoryStore(_info())
    ingest_source(footage["video"], store, ColourEmbedder(), camera="cam1", start=START,
                  thumbs=Path("rel") / "thumbs", detections=footage["gt"], max_crops=3)  # fmt: skip
    paths = [Path(p) for p in store.get(store.ids()).path]
    assert paths and all(p.is_absolute() and p.is_file() for p in paths)
    assert all((tmp_path / "rel" / "thumbs") in p.parents for p in paths)


def _walker_of(items: Items, i: int, walkers: list[Walker]) -> int:
    """The walker whose true box in the item's frame overlaps the item's box most."""
    truth = [w.box(int(items.frame[i])) or (0, 0, 0, 0) for w in walkers]
    return walkers[int(np.argmax(iou_matrix(items.box[i : i + 1], np.array(truth))[0]))].ident


def test_ingest_stores_whole_tracks_with_their_metadata(footage, tmp_path):
    store = MemoryStore(_info())
    report = _ingest(footage, store, tmp_path)
    assert (report.tracks, report.frames, report.processed) == (2, 30, 30)
    name = source_name(footage["video"])
    [state] = store.sources()
    assert (state.name, state.complete, state.count) == (name, True, report.items)
    items = store.get(store.ids())
    assert sorted(set(items.track.tolist())) == [1, 2] and report.items == 6
    walkers = footage["walkers"]
    for track in (1, 2):
        rows = np.flatnonzero(items.track == track)
        assert len(rows) == 3
        owners = {_walker_of(items, i, walkers) for i in rows}
        assert len(owners) == 1  # a track holds one person
        frames = items.frame[rows]
        assert frames.max() - frames.min() >= 12  # spread over the track
    for i in range(len(items)):
        walker = next(w for w in walkers if w.ident == _walker_of(items, i, walkers))
        truth = np.array([walker.box(int(items.frame[i]))])
        assert iou_matrix(items.box[i : i + 1], truth)[0, 0] > 0.95
        assert items.timestamp[i] == pytest.approx(START_S + (items.frame[i] - 1) / 10)
        assert items.camera[i] == "cam1" and items.source[i] == name
        thumb = Path(items.path[i])
        assert thumb.is_file() and thumb.parent.parent == tmp_path / "thumbs"
        w, h = Image.open(thumb).size
        box = items.box[i]
        assert abs(w - (box[2] - box[0])) <= 2 and abs(h - (box[3] - box[1])) <= 2
    # a filtered search: the first walker's crop finds its own track first, within the window
    query = ColourEmbedder().embed([np.asarray(Image.open(items.path[0]))]).vectors
    where = make_filter(cameras=["cam1"], after=START_S, before=START_S + 3.0)
    hits = store.search(query, 3, where)[0]
    found = store.get(hits.ids)
    assert found.track[0] == items.track[0]
    assert (found.timestamp < START_S + 3.0).all()
    assert store.search(query, 3, make_filter(after=START_S + 5.0))[0].ids.size == 0


def test_track_vector_is_the_per_part_mean_renormalised(footage, tmp_path):
    store = MemoryStore(_info())
    _ingest(footage, store, tmp_path)
    items = store.get(store.ids())
    rows = np.flatnonzero(items.track == 1)
    v = pool_vectors(items.vectors[rows])
    parts = v.reshape(5, 4)
    assert np.allclose(np.linalg.norm(parts, axis=1), 1 / np.sqrt(5), atol=1e-6)
    assert float(v @ v) == pytest.approx(1.0, abs=1e-6)
    expect = items.vectors[rows].reshape(len(rows), 5, 4).mean(0)
    expect /= np.linalg.norm(expect, axis=1, keepdims=True) * np.sqrt(5)
    assert np.allclose(parts, expect, atol=1e-6)


def test_given_ids_are_the_stored_tracks(footage, tmp_path):
    store = MemoryStore(_info())
    _ingest(footage, store, tmp_path, detections=footage["gt_ids"])
    items = store.get(store.ids())
    for i in range(len(items)):
        assert items.track[i] == _walker_of(items, i, footage["walkers"])


def test_rerun_refused_replaced_or_redone_never_duplicated(footage, tmp_path):
    store = MemoryStore(_info())
    first = _ingest(footage, store, tmp_path)
    with pytest.raises(CerberusError, match=r"cam1.mp4: already in the gallery \(6 items\); "
                       "--replace"):  # fmt: skip
        _ingest(footage, store, tmp_path)
    again = _ingest(footage, store, tmp_path, replace=True)
    assert again.removed == 6 and store.count() == first.items
    # an interrupted run left one track and no completion: a rerun removes it and redoes all
    store = MemoryStore(_info())
    partial = Items.make(np.eye(1, 20, dtype=np.float32), source=source_name(footage["video"]),
                         num_attributes=3, camera="cam1", track=[1])  # fmt: skip
    store.add(partial, complete=False)
    redo = _ingest(footage, store, tmp_path)
    assert redo.removed == 1 and store.count() == 6 and store.sources()[0].complete


def test_video_with_nobody(tmp_path, caplog):
    caplog.set_level(logging.INFO, "cerberus")
    video = write_video(tmp_path / "empty.mp4", [], frames=12)
    store = MemoryStore(_info())
    report = ingest_source(video, store, ColourEmbedder(), camera="door", start=START,
                           detector=HogDetector())  # fmt: skip
    assert (report.tracks, report.items, report.frames) == (0, 0, 12)
    assert store.count() == 0
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]  # one line
    text = warning.getMessage()
    assert "empty.mp4: nobody found in 12 frames" in text and "\n" not in text
    assert "--detector" in text and "--detections" in text
    # recorded as done: a rerun is refused like any finished source, --replace redoes it
    assert [(s.count, s.complete) for s in store.sources()] == [(0, True)]
    with pytest.raises(CerberusError, match="already in the gallery"):
        ingest_source(video, store, ColourEmbedder(), camera="door", start=START,
                      detector=HogDetector())  # fmt: skip
    again = ingest_source(video, store, ColourEmbedder(), camera="door", start=START,
                          replace=True, detector=HogDetector())  # fmt: skip
    assert again.items == 0 and [(s.count, s.complete) for s in store.sources()] == [(0, True)]


def test_detections_past_the_video_are_refused_before_anything_is_stored(footage, tmp_path):
    walkers = footage["walkers"]
    longer = write_gt(tmp_path / "long.txt", walkers, 30, ids=False)
    video = write_video(tmp_path / "short.mp4", walkers, frames=20)
    store = MemoryStore(_info())
    with pytest.raises(CerberusError, match=r"long.txt: detections for frame\(s\) 21..30 but the "
                       "video has 20 frames"):  # fmt: skip
        ingest_source(video, store, ColourEmbedder(), camera="c", detections=longer)
    assert store.count() == 0


def test_detections_past_a_video_of_unknown_length_are_counted(footage, tmp_path, caplog):
    walkers = footage["walkers"]
    longer = write_gt(tmp_path / "long.txt", walkers, 30, ids=False)
    video = write_video(tmp_path / "short.ts", walkers, frames=20)  # MPEG-TS: no frame count
    store = MemoryStore(_info())
    report = ingest_source(video, store, ColourEmbedder(), camera="c", detections=longer)
    assert report.frames == 20 and report.tracks == 2
    assert "detections for 10 frame(s) past the video's last frame 20 (21..30)" in caplog.text


def test_bad_options_are_one_line(footage, tmp_path):
    store = MemoryStore(_info())
    with pytest.raises(CerberusError, match="--max-crops 0"):
        _ingest(footage, store, tmp_path, max_crops=0)
    with pytest.raises(CerberusError, match="--stride 0"):
        _ingest(footage, store, tmp_path, stride=0)
    with pytest.raises(CerberusError, match="--crops-per-minute 0: must be above 0"):
        _ingest(footage, store, tmp_path, crops_per_minute=0)
    with pytest.raises(CerberusError, match="--camera"):
        ingest_source(footage["video"], store, ColourEmbedder(), camera="")
    assert store.count() == 0


def test_stream_that_drops_keeps_its_tracks_and_stays_live(tmp_path):
    from tests.footage.test_video import _StreamServer

    walkers = [Walker(1, (220, 30, 30), 1, 60, (10.0, 40.0), (3.0, 0.0))]
    data = write_video(tmp_path / "live.ts", walkers, frames=60).read_bytes()
    store = MemoryStore(_info())
    with _StreamServer(data, cut=0.5, serve=1) as server:
        stream = open_source(server.url, reconnect=1)
        report = ingest_source(stream, store, ColourEmbedder(), camera="gate",
                               detector=BoxDetector(walkers), stride=1)  # fmt: skip
    assert "1 reconnect(s) failed" in report.ended
    assert 15 < report.frames < 60 and report.tracks == 1
    [state] = store.sources()
    assert not state.complete and state.name == server.url  # live: a restart continues it
    items = store.get(store.ids())
    assert np.isfinite(items.timestamp).all()  # a stream's items carry the wall clock
    assert abs(items.timestamp[0] - time.time()) < 120


KILLED = """
import sys
sys.path[:0] = {paths!r}
from tests.footage_helpers import ColourEmbedder
from cerberus.footage.ingest import ingest_source
from cerberus.footage.track import BoxTracker
from cerberus.store import GalleryInfo
from cerberus.store.local import LocalStore
info = GalleryInfo(dim=20, fingerprint="colour", schema={{}}, prototypes={{}})
store = LocalStore.create({folder!r}, info)
ingest_source({video!r}, store, ColourEmbedder(delay={delay}), camera="cam1",
              start="2026-11-30T14:00:00+01:00", detections={gt!r}, max_crops=3, stride=1,
              tracker=BoxTracker(max_age=2), batch=3)
"""


def _tracks_stored(folder: Path) -> int:
    """Tracks a gallery folder being written by another process holds now (0 before it exists):
    read through SQLite (WAL: a reader never waits for the writer)."""
    import sqlite3

    database = folder / "items.sqlite"
    if not database.is_file():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT COUNT(DISTINCT track) FROM items").fetchone()[0]
    except sqlite3.Error:  # not made yet
        return 0


def test_kill_9_leaves_whole_tracks_and_a_rerun_redoes_the_source(tmp_path):
    from cerberus.store.local import LocalStore

    walkers = [
        Walker(
            k,
            (40 * k, 200 - 30 * k, 90),
            1 + 6 * (k - 1),
            8 + 6 * (k - 1),
            (10.0 + 30 * k, 30.0),
            (2.0, 0.0),
        )
        for k in range(1, 6)
    ]  # fmt: skip  (five walkers one after another: five tracks ending at different times)
    video = write_video(tmp_path / "cam.mp4", walkers, frames=40)
    gt = write_gt(tmp_path / "gt.txt", walkers, 40, ids=False)
    reference = MemoryStore(_info())
    # a short memory, so that the five tracks end (and are written) one after another while
    # the video runs, not together at its end (the killed run embeds a track's 3 crops at once:
    # batch=3, so no wall-clock flush decides when a track reaches the gallery)
    ingest_source(video, reference, ColourEmbedder(), camera="cam1", start=START,
                  detections=gt, max_crops=3, stride=1, tracker=BoxTracker(max_age=2))  # fmt: skip
    ref = reference.get(reference.ids())
    whole = {int(t): sorted(ref.frame[ref.track == t].tolist()) for t in set(ref.track.tolist())}
    assert len(whole) == 5
    folder = tmp_path / "gallery"
    script = KILLED.format(paths=[str(TESTS), *sys.path], folder=str(folder), video=str(video),
                           gt=str(gt), delay=0.8)  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    try:
        deadline = time.time() + 60
        while time.time() < deadline and _tracks_stored(folder) < 2:
            assert proc.poll() is None, "the ingest ended before it was killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    store = LocalStore.open(folder)
    [state] = store.sources()
    assert not state.complete
    items = store.get(store.ids())
    stored = {int(t): sorted(items.frame[items.track == t].tolist())
              for t in set(items.track.tolist())}  # fmt: skip
    assert 2 <= len(stored) < 5
    assert all(stored[t] == whole[t] for t in stored)  # whole tracks only
    report = ingest_source(video, store, ColourEmbedder(), camera="cam1", start=START,
                           detections=gt, max_crops=3, stride=1,
                           tracker=BoxTracker(max_age=2))  # fmt: skip
    assert report.removed == len(items)
    items = store.get(store.ids())
    assert len(items) == len(ref) and store.sources()[0].complete
    again = {int(t): sorted(items.frame[items.track == t].tolist())
             for t in set(items.track.tolist())}  # fmt: skip
    assert again == whole


def test_model_embedder_gives_vectors_attributes_and_certainty(tiny_index, footage, tmp_path):
    from cerberus.footage.ingest import ModelEmbedder
    from cerberus.search import load_model
    from cerberus.store import info_of_model

    net = load_model(tiny_index["ckpt"], device="cpu")
    embedder = ModelEmbedder(net)
    info = info_of_model(net)
    store = MemoryStore(info)
    report = ingest_source(footage["video"], store, embedder, camera="cam1", start=START,
                           detections=footage["gt"], max_crops=2)  # fmt: skip
    items = store.get(store.ids())
    assert report.items == len(items) == 4 and items.vectors.shape == (4, info.dim)
    assert np.allclose(np.linalg.norm(items.vectors, axis=1), 1.0, atol=1e-5)
    assert ((items.certainty > 0) & (items.certainty <= 1)).all()
    assert items.path == [""] * 4  # no thumbnails asked for
    # PAR as `describe` gives it: the same values for the same crop
    from cerberus.footage.video import read_frame

    frame = read_frame(footage["video"], int(items.frame[0]))
    x0, y0 = (int(np.floor(v)) for v in items.box[0, :2])
    x1, y1 = (int(np.ceil(v)) for v in items.box[0, 2:])  # as the crop was cut
    again = embedder.embed([frame[y0:y1, x0:x1]])
    described = net.describe(net.features_of_images([frame[y0:y1, x0:x1]]))[0]["attributes"]
    assert net.schema.describe(again.predicted[0]) == described
    assert np.array_equal(again.predicted[0], items.predicted[0])


def test_ingest_command_checks_its_options_first(cli, tmp_path):
    code, _, err = cli("ingest", "a.mp4", "b.mp4", "--camera", "c", "--gallery", tmp_path / "g",
                       "--start", START)  # fmt: skip
    assert code == 2 and "--start: one start time for several videos" in err
    assert len(err.strip().splitlines()) == 1
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n" * 10)
    code, _, err = cli("ingest", notes, "--camera", "c", "--gallery", tmp_path / "g")
    assert code == 2 and "notes.mp4: not a video FFmpeg can read" in err
    assert len(err.strip().splitlines()) == 1
    bad_rows = tmp_path / "det.txt"
    bad_rows.write_text("1,-1,1,2,3\n")
    video = write_video(tmp_path / "v.mp4", frames=3)
    code, _, err = cli("ingest", video, "--camera", "c", "--gallery", tmp_path / "g",
                       "--detections", bad_rows)  # fmt: skip
    assert code == 2 and "det.txt line 1: 5 field(s)" in err
    code, _, err = cli("ingest", "a.mp4", "--camera", "c", "--gallery", tmp_path / "g",
                       "--stride", "0")  # fmt: skip
    assert code == 2 and "--stride 0: must be at least 1" in err
    code, _, err = cli("ingest", video, "--camera", "c", "--gallery", tmp_path / "g",
                       "--crops-per-minute", "0")  # fmt: skip
    assert code == 2 and err.strip() == "error: --crops-per-minute 0.0: must be above 0"
    assert not (tmp_path / "g").exists()


def test_ctrl_c_on_a_stream_commits_the_running_tracks(tmp_path):
    from tests.footage.test_video import _StreamServer

    walkers = [Walker(1, (220, 30, 30), 1, 60, (10.0, 40.0), (3.0, 0.0))]
    data = write_video(tmp_path / "live.ts", walkers, frames=60).read_bytes()

    class Interrupting(BoxDetector):
        def detect(self, frame):
            if frame.number == 20:
                raise KeyboardInterrupt
            return super().detect(frame)

    store = MemoryStore(_info())
    with _StreamServer(data, serve=1) as server:
        report = ingest_source(server.url, store, ColourEmbedder(), camera="gate",
                               detector=Interrupting(walkers), stride=1)  # fmt: skip
    assert report.tracks == 1 and report.ended == ""
    assert not store.sources()[0].complete  # live, not finished
    assert store.get(store.ids()).frame.max() < 20


def test_ctrl_c_on_a_file_leaves_the_source_incomplete(footage, tmp_path):
    class Interrupting(BoxDetector):
        def detect(self, frame):
            if frame.number == 25:
                raise KeyboardInterrupt
            return super().detect(frame)

    walkers = [Walker(1, (220, 30, 30), 1, 8, (10.0, 40.0), (3.0, 0.0)), *footage["walkers"]]
    store = MemoryStore(_info())
    with pytest.raises(KeyboardInterrupt):
        ingest_source(footage["video"], store, ColourEmbedder(), camera="c",
                      detector=Interrupting(walkers), stride=1, part_seconds=1.0)  # fmt: skip
    [state] = store.sources()
    assert not state.complete and state.count > 0  # the parts written before are stored


def test_ingest_command_end_to_end_on_a_folder_gallery(cli, tiny_index, footage, tmp_path):
    from cerberus.store.open import open_store

    gallery = tmp_path / "g"
    args = ["ingest", footage["video"], "--camera", "cam1", "--gallery", gallery, "--start",
            START, "--detections", footage["gt"], "--device", "cpu"]  # fmt: skip
    code, out, err = cli(*args)
    assert code == 2 and "--checkpoint: " in err and "is a new gallery" in err
    assert not gallery.exists()
    code, out, err = cli(*args, "--checkpoint", tiny_index["ckpt"], "--max-crops", "2")
    assert code == 0, err
    assert "cam1.mp4: 30 frames (30 searched), 2 tracks, 4 crops stored" in out
    store = open_store(gallery)
    try:
        items = store.get(store.ids())
        assert len(items) == 4 and all(
            Path(p).parent.parent == gallery / "thumbs" for p in items.path
        )
        assert [s.complete for s in store.sources()] == [True]
        assert store.info.meta["roots"] == [str((gallery / "thumbs").absolute())]  # served
    finally:
        store.close()
    code, out, err = cli(*args)  # the gallery's own checkpoint; the source is complete
    assert code == 0 and "already in the gallery (4 items); skipped (--replace" in out
    code, out, err = cli(*args, "--replace", "--max-crops", "2")
    assert code == 0, err
    store = open_store(gallery)
    try:
        again = store.get(store.ids())
        assert len(again) == 4 and sorted(again.frame.tolist()) == sorted(items.frame.tolist())
    finally:
        store.close()


def test_a_file_sampled_by_max_frames_stays_incomplete(footage):
    """``max_frames`` on a file ingests a sample: the source is not recorded as complete, so
    a later full run redoes it rather than being refused."""
    store = MemoryStore(_info())
    ingest_source(footage["video"], store, ColourEmbedder(), camera="door", start=START,
                  detections=footage["gt"], max_frames=5)  # fmt: skip
    assert all(not s.complete for s in store.sources())
    full = ingest_source(footage["video"], store, ColourEmbedder(), camera="door", start=START,
                         detections=footage["gt"])  # fmt: skip
    assert [s.complete for s in store.sources()] == [True] and store.count() == full.items


def _all_items(store):
    return store.get(store.ids())


def test_a_still_person_gives_one_track_with_crops_over_the_minute(tmp_path):
    """60 s of one person standing still (the frame repeated): one track, written in parts while
    it runs, a crop within 2 s of every moment, the path on every frame."""
    still = Walker(1, (220, 30, 30), 1, 600, (100.0, 40.0), (0.0, 0.0))
    video = write_video(tmp_path / "still.mp4", [still], frames=600, fps=10)
    store = MemoryStore(_info())
    seen_parts = []

    class Watching(BoxDetector):
        def detect(self, frame):
            # the track is still running: parts already in (queued for embedding at most 5 s)
            if frame.number in (260, 460):
                seen_parts.append(store.count())
            return super().detect(frame)

    report = ingest_source(video, store, ColourEmbedder(), camera="hall", start=START,
                           detector=Watching([still]), stride=1)  # fmt: skip
    items = _all_items(store)
    assert report.tracks == 1 and set(items.track.tolist()) == {1}
    assert seen_parts[0] > 0 and seen_parts[1] > seen_parts[0]  # searchable before it ends
    assert report.parts == 3  # 20 s parts: frames 1-200, 201-400, 401-600
    frames = np.sort(items.frame)
    assert np.abs(np.arange(1, 601)[:, None] - frames[None]).min(1).max() <= 20  # 2 s at 10 fps
    [path] = store.paths()
    assert path.frames.tolist() == list(range(1, 601)) and path.detected.all()


def test_paths_are_stored_with_the_items_predicted_across_gaps(footage, tmp_path):
    walkers = footage["walkers"]

    class Gappy(BoxDetector):
        def detect(self, frame):
            return Detections.empty() if 12 <= frame.number <= 14 else super().detect(frame)

    store = MemoryStore(_info())
    ingest_source(footage["video"], store, ColourEmbedder(), camera="cam1", start=START,
                  detector=Gappy(walkers), stride=1)  # fmt: skip
    paths = {p.track: p for p in store.paths()}
    items = _all_items(store)
    assert sorted(paths) == sorted(set(items.track.tolist())) == [1, 2]
    one = paths[1]
    assert one.frames.tolist() == list(range(1, 31))  # walker 1: frames 1-30
    assert one.detected.tolist() == [not 12 <= k <= 14 for k in range(1, 31)]
    truth = np.array([walkers[0].box(k) for k in (12, 13, 14)])
    assert (np.diag(iou_matrix(one.boxes[11:14], truth)) > 0.6).all()
    assert paths[2].frames[0] == 6 and paths[2].frames[-1] == 30


@pytest.mark.parametrize("path_gap", [None, 0.5, 0.3])
def test_a_gap_longer_than_the_detectors_path_gap_is_left_empty(footage, tmp_path, path_gap):
    """Frames 12-14 missed: detections on 11 and 15, 4 frames (0.4 s at 10 fps) apart. A
    detector whose ``path_gap`` is 0.3 s leaves those frames out of the stored path (the track
    keeps its id), one at 0.5 s or none fills them."""
    walkers = footage["walkers"]

    class Gappy(BoxDetector):
        def detect(self, frame):
            return Detections.empty() if 12 <= frame.number <= 14 else super().detect(frame)

    detector = Gappy(walkers)
    if path_gap is not None:
        detector.path_gap = path_gap
    store = MemoryStore(_info())
    ingest_source(footage["video"], store, ColourEmbedder(), camera="cam1", start=START,
                  detector=detector, stride=1)  # fmt: skip
    one = {p.track: p for p in store.paths()}[1]
    gap = [12, 13, 14]
    kept = [k for k in range(1, 31) if path_gap != 0.3 or k not in gap]
    assert one.frames.tolist() == kept and one.detected.sum() == 27


def test_the_path_book_takes_the_detectors_path_gap_and_path_cover():
    class Plain:
        pass

    class Covering:
        path_gap, path_cover = 1.0, 0.6

    book = path_book(Covering(), 10.0)
    assert book.max_gap == 10 and book.cover_iou == 0.6
    plain = path_book(Plain(), 10.0)
    assert plain.max_gap is None and plain.cover_iou is None


def test_a_track_whose_crops_are_all_refused_is_not_stored(tmp_path, caplog):
    """A person seen only as a sliver: tracked, no crop, nothing stored, one warning line."""
    caplog.set_level(logging.INFO, "cerberus")
    thin = Walker(1, (220, 30, 30), 1, 20, (100.0, 40.0), (0.0, 0.0), size=(4, 60))
    video = write_video(tmp_path / "thin.mp4", [thin], frames=20)
    store = MemoryStore(_info())
    report = ingest_source(video, store, ColourEmbedder(), camera="c", start=START,
                           detector=BoxDetector([thin]), stride=1)  # fmt: skip
    assert report.items == 0 and report.refused_crops == 20 and store.paths() == []
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "20 boxes found in 20 frames but no track kept a crop" in warning.getMessage()


def _fragments(tmp_path, second_colour):
    """One walker, then after a 4 s gap a walker of ``second_colour`` going on from where the
    first would be: two tracks for the tracker."""
    first = Walker(1, (220, 30, 30), 1, 20, (10.0, 40.0), (2.0, 0.0))
    second = Walker(2, second_colour, 61, 90, (60.0, 40.0), (2.0, 0.0))
    video = write_video(tmp_path / f"frag{second_colour[0]}.mp4", [first, second], frames=90)
    store = MemoryStore(_info())
    report = ingest_source(video, store, ColourEmbedder(), camera="c", start=START,
                           detector=BoxDetector([first, second]), stride=1,
                           linking=Linking())  # fmt: skip
    return report, _all_items(store), store.paths()


def test_appearance_links_two_fragments_of_one_person(tmp_path):
    report, items, paths = _fragments(tmp_path, (220, 30, 30))  # alike: one person
    assert report.tracks == 1 and report.linked == 1 and set(items.track.tolist()) == {1}
    [path] = paths
    assert path.frames[0] == 1 and path.frames[-1] == 90 and 40 not in path.frames
    [pair] = [e for e in report.links if e["linked"]]
    assert pair["cosine"] > 0.99 and pair["near"]
    report, items, paths = _fragments(tmp_path, (30, 60, 220))  # unlike: two people
    assert report.tracks == 2 and report.linked == 0 and len(set(items.track.tolist())) == 2
    assert len(paths) == 2 and report.links and not report.links[0]["linked"]


def test_the_hog_tracker_outlives_its_whole_frame_interval():
    """HOG sees a still person only on its whole-frame searches: tentative and lost tracks
    live until the next one."""
    from cerberus.footage.detect import HogDetector
    from cerberus.footage.ingest import default_tracker

    tracker = default_tracker(HogDetector(full_every=10), 10.0, 2)
    assert tracker.max_age >= 11 and tracker.lost_age >= 11
    assert default_tracker(BoxDetector([]), 10.0, 1).max_age == 10


def test_the_tracker_takes_its_thresholds_from_the_detector():
    """A detector whose scores mean something else (SSDLite's small real people score 0.1-0.5)
    says so with ``track_scores`` / ``track_iou``; others get ByteTrack's 0.5 / 0.1 and 0.3."""
    from cerberus.footage.ingest import default_tracker

    class Scaled(BoxDetector):
        track_scores = (0.4, 0.05)
        track_iou = 0.25

    mine = default_tracker(Scaled([]), 10.0, 2)
    assert (mine.high_score, mine.low_score, mine.iou_threshold) == (0.4, 0.05, 0.25)
    plain = default_tracker(BoxDetector([]), 10.0, 2)
    assert (plain.high_score, plain.low_score, plain.iou_threshold) == (0.5, 0.1, 0.3)


def test_ground_truth_visibility_keeps_hidden_people_out_of_the_crops(footage, tmp_path):
    """MOTChallenge ground truth's column 9 (visibility) is kept: a box of a person 4% visible
    is tracked but never a crop; -1 (a detections file's) is unknown and passes."""
    walkers = footage["walkers"]
    lines = []
    for row in footage["gt"].read_text().splitlines():
        f = row.split(",")
        f[8] = "0.04" if int(f[0]) >= 16 else "-1"
        lines.append(",".join(f))
    gt = tmp_path / "gt_vis.txt"
    gt.write_text("\n".join(lines) + "\n")
    store = MemoryStore(_info())
    report = ingest_source(footage["video"], store, ColourEmbedder(), camera="cam1", start=START,
                           detections=gt)  # fmt: skip
    items = _all_items(store)
    assert report.tracks == 2 and len(items) and (items.frame < 16).all()
    assert {p.frames[-1] for p in store.paths()} == {30}  # the hidden part is on the path
    assert report.refused_crops == sum(w.box(k) is not None for w in walkers
                                       for k in range(16, 31))  # fmt: skip


# --------------------------------------------------------------------------- issue 30: sources


def _five_walkers(tmp_path):
    walkers = [Walker(k, (40 * k, 200 - 30 * k, 90), 1 + 6 * (k - 1), 8 + 6 * (k - 1),
                      (10.0 + 30 * k, 30.0), (2.0, 0.0)) for k in range(1, 6)]  # fmt: skip
    video = write_video(tmp_path / "five.mp4", walkers, frames=40)
    return video, write_gt(tmp_path / "five_gt.txt", walkers, 40, ids=False)


def test_crops_of_several_tracks_are_embedded_in_one_call(tmp_path):
    # five tracks ending one after another: one call for all their crops, not one per track
    video, gt = _five_walkers(tmp_path)
    stores, calls = [], []
    for batch in (1, 32):
        store, embedder = MemoryStore(_info()), ColourEmbedder()
        ingest_source(video, store, embedder, camera="c", start=START, detections=gt,
                      max_crops=3, stride=1, tracker=BoxTracker(max_age=2),
                      batch=batch)  # fmt: skip
        stores.append(_all_items(store))
        calls.append(embedder.calls)
    assert calls == [5, 1]
    one, many = stores
    key = np.lexsort((many.frame, many.track))
    assert np.array_equal(one.frame[np.lexsort((one.frame, one.track))], many.frame[key])
    assert np.allclose(np.sort(one.vectors, axis=0), np.sort(many.vectors, axis=0))


def test_a_moved_copy_is_not_stored_twice_and_two_cameras_are_two_sources(footage, tmp_path):
    import shutil

    store, thumbs = MemoryStore(_info()), tmp_path / "thumbs"
    _ingest(footage, store, tmp_path)
    moved = tmp_path / "elsewhere" / "renamed.mp4"
    moved.parent.mkdir()
    shutil.copy(footage["video"], moved)
    with pytest.raises(CerberusError, match=r"renamed.mp4: already in the gallery as .*cam1.mp4 "
                       r"\(6 items\); --replace"):  # fmt: skip
        ingest_source(moved, store, ColourEmbedder(), camera="cam1", detections=footage["gt"],
                      thumbs=thumbs)  # fmt: skip
    # the same file seen as another camera's: a second source
    second = ingest_source(footage["video"], store, ColourEmbedder(), camera="cam2",
                           detections=footage["gt"], max_crops=3, thumbs=thumbs)  # fmt: skip
    name = source_name(footage["video"])
    assert second.source == f"{name}#cam2" and second.removed == 0
    assert sorted((s.name, s.count, s.complete) for s in store.sources()) == [
        (name, 6, True), (f"{name}#cam2", 6, True)]  # fmt: skip
    items = _all_items(store)
    assert sorted(set(zip(list(items.source), list(items.camera)))) == [
        (name, "cam1"), (f"{name}#cam2", "cam2")]  # fmt: skip
    from cerberus.footage.video import read_frame, source_location

    assert source_location(f"{name}#cam2") == name
    assert read_frame(source_location(f"{name}#cam2"), 3).shape == (144, 256, 3)


def test_a_damaged_file_is_recorded_done_with_its_damage(footage, tmp_path):
    from cerberus.footage.ingest import SourceLedger
    from tests.footage.test_video import _numbered_video

    whole = _numbered_video(tmp_path / "whole.mp4", 30, codec="mpeg4", gop=1,
                            faststart=True).read_bytes()  # fmt: skip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    store, thumbs = MemoryStore(_info()), tmp_path / "thumbs"
    report = ingest_source(cut, store, ColourEmbedder(), camera="c", stride=1,
                           detector=BoxDetector(footage["walkers"]), thumbs=thumbs)  # fmt: skip
    assert report.damage.startswith("frames 1-") and " of 30 decoded (" in report.damage
    assert "damaged: frames 1-" in report.line()
    [state] = store.sources()
    assert state.complete  # done: a rerun does not redo it
    entry = SourceLedger(thumbs).entries()[source_name(cut)]
    assert entry["status"] == "damaged" and entry["note"] == report.damage
    with pytest.raises(CerberusError, match=r"already in the gallery \(\d+ items; damaged: "):
        ingest_source(cut, store, ColourEmbedder(), camera="c", thumbs=thumbs,
                      detector=BoxDetector(footage["walkers"]))  # fmt: skip


def test_a_live_source_stopped_and_started_again_stores_nothing_twice(tmp_path):
    from cerberus.footage.ingest import SourceLedger
    from tests.footage.test_video import _StreamServer

    walkers = [Walker(1, (220, 30, 30), 1, 200, (10.0, 40.0), (1.0, 0.0)),
               Walker(2, (30, 60, 220), 1, 200, (200.0, 30.0), (-0.5, 0.2))]  # fmt: skip
    data = write_video(tmp_path / "live.ts", walkers, frames=60).read_bytes()
    store, thumbs = MemoryStore(_info()), tmp_path / "thumbs"
    runs = []
    with _StreamServer(data, serve=3) as server:
        for _ in range(2):  # stopped after 25 frames, then started again
            runs.append(ingest_source(server.url, store, ColourEmbedder(), camera="gate",
                                      detector=BoxDetector(walkers), stride=1, thumbs=thumbs,
                                      max_frames=25, max_crops=2))  # fmt: skip
            first = _all_items(store)
            if len(runs) == 1:
                before = first
    assert runs[1].removed == 0 and runs[1].tracks == 2
    [state] = store.sources()
    assert not state.complete and state.count == len(first) > len(before)
    assert SourceLedger(thumbs).entries()[server.url]["status"] == "live"
    new = ~np.isin(first.ids, before.ids)
    # the second session: frames after the first's, later times, new track ids
    assert first.frame[new].min() > before.frame.max()
    assert first.timestamp[new].min() > before.timestamp.max()
    assert set(first.track[new].tolist()).isdisjoint(before.track.tolist())
    pairs = list(zip(first.track.tolist(), first.frame.tolist()))
    assert len(pairs) == len(set(pairs))
    paths = store.paths(source=server.url)
    assert all(np.all(np.diff(p.frames) > 0) for p in paths)
    jpegs = sorted(p.name for p in thumbs.rglob("*.jpg"))
    assert len(jpegs) == len(first)  # the first session's thumbnails are kept


def test_start_from_name():
    from cerberus.footage.ingest import start_from_name

    assert start_from_name("/d/cam1_20261130_140000.mp4", "%Y%m%d_%H%M%S",
                           "Europe/Paris") == START_S  # fmt: skip
    assert start_from_name("x-2026-11-30T13-00-00Z.avi", "%Y-%m-%dT%H-%M-%S%z") == START_S
    with pytest.raises(CerberusError, match=r"cam1.mp4: no time in its name matches"):
        start_from_name("cam1.mp4", "%Y%m%d_%H%M%S")
    with pytest.raises(CerberusError, match=r"--name-zone 'Mars/Base': not a time zone"):
        start_from_name("a_20261130_140000.mp4", "%Y%m%d_%H%M%S", "Mars/Base")


def _three_files(tmp_path, footage):
    files = []
    for k in range(3):  # three different files (a different first frame each)
        walkers = [Walker(1, (220, 30 + 60 * k, 30), 1, 30, (10.0 + 20 * k, 40.0), (4.0, 0.0)),
                   *footage["walkers"][1:]]  # fmt: skip
        files.append(write_video(tmp_path / f"dvr{k}_2026113{k}_1{k}0000.mp4", walkers,
                                 frames=30))  # fmt: skip
    assert footage["gt"] == tmp_path / "gt.txt"
    return files


def _boxes_for_every_file(monkeypatch, footage):
    """The command's detector replaced by the walkers' true boxes (several files cannot share
    one --detections file)."""
    from cerberus.footage import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "make_detector",
                        lambda spec, **kw: BoxDetector(footage["walkers"]))  # fmt: skip


def test_an_interrupted_batch_rerun_skips_the_finished_files(
    cli, tiny_index, footage, tmp_path, monkeypatch
):
    from cerberus.store.open import open_store

    _boxes_for_every_file(monkeypatch, footage)
    files = _three_files(tmp_path, footage)
    manifest = tmp_path / "files.csv"
    manifest.write_text("path,camera,start\n"
                        f"{files[0].name},gate,2026-11-30T14:00:00+01:00\n"
                        f"{files[1].name},,2026-11-30T15:00:00+01:00\n"
                        f"{files[2]},hall,\n")  # fmt: skip
    gallery = tmp_path / "g"
    base = ["ingest", "--gallery", gallery, "--checkpoint", tiny_index["ckpt"], "--device",
            "cpu", "--max-crops", "2"]  # fmt: skip
    code, out, err = cli(*base, "--manifest", manifest, "--camera", "door")
    assert code == 0, err
    store = open_store(gallery)
    try:
        names = {s.name: s for s in store.sources()}
        assert len(names) == 3 and all(s.complete for s in names.values())
        items = store.get(store.ids(), vectors=False)
        cams = {(Path(s).name, c) for s, c in zip(list(items.source), list(items.camera))}
        assert cams <= {(files[0].name, "gate"), (files[1].name, "door"), (files[2].name, "hall")}
        # the start of each file from the manifest; none for the third (no creation time)
        t0 = items.timestamp[[Path(s).name == files[0].name for s in items.source]]
        assert len(t0) and (t0 >= START_S).all() and (t0 < START_S + 4).all()
        # as if the run had been killed in file 1: its source left incomplete
        one = str(files[1].resolve())
        part = store.get(store.ids(make_filter(sources=[one])))
        store.remove(source=one)
        store.add(part.take([0]), complete=False)
    finally:
        store.close()
    code, out, err = cli(*base, "--manifest", manifest, "--camera", "door")
    assert code == 0, err
    lines = out.strip().splitlines()
    skipped = [x for x in lines if "skipped" in x]
    assert len(skipped) == 2 and all("already in the gallery" in x for x in skipped)
    assert any(files[1].name in x and "frames" in x and "skipped" not in x for x in lines)
    store = open_store(gallery)
    try:
        assert all(s.complete for s in store.sources()) and len(store.sources()) == 3
    finally:
        store.close()


def test_start_from_name_on_the_command_line(cli, tiny_index, footage, tmp_path):
    from cerberus.store.open import open_store

    files = _three_files(tmp_path, footage)
    gallery = tmp_path / "g"
    code, out, err = cli("ingest", files[0], "--camera", "dvr", "--gallery", gallery,
                         "--checkpoint", tiny_index["ckpt"], "--device", "cpu", "--detections",
                         tmp_path / "gt.txt", "--start-from-name", "%Y%m%d_%H%M%S",
                         "--name-zone", "Europe/Paris")  # fmt: skip
    assert code == 0, err
    assert "x real time (" in out and "s of start-up)" in out  # start-up counted too
    store = open_store(gallery)
    try:
        items = store.get(store.ids(), vectors=False)
        # dvr0_20261130_100000.mp4: 10:00 in Paris, 09:00 UTC
        assert items.timestamp.min() >= START_S - 4 * 3600
        assert (items.timestamp < START_S - 4 * 3600 + 3).all()
    finally:
        store.close()


def test_a_stream_that_cannot_be_opened_fails_before_the_model_loads(cli, tmp_path):
    gallery = tmp_path / "g"
    code, out, err = cli("ingest", "rtsp://user:pw@127.0.0.1:1/x", "--camera", "c", "--gallery",
                         gallery, "--checkpoint", tmp_path / "no-such-model.pt")  # fmt: skip
    assert code == 2
    assert err.strip() == (
        "error: rtsp://127.0.0.1:1/x: could not open the stream (Connection refused)"
    )
    assert not gallery.exists()


def test_a_full_disk_during_a_batch_leaves_the_gallery_as_before(
    cli, tiny_index, footage, tmp_path, monkeypatch
):
    import errno as errnos

    from cerberus.footage import ingest as ingest_module
    from cerberus.store.open import open_store

    _boxes_for_every_file(monkeypatch, footage)
    files = _three_files(tmp_path, footage)
    gallery = tmp_path / "g"
    base = ["ingest", "--gallery", gallery, "--checkpoint", tiny_index["ckpt"], "--device",
            "cpu", "--camera", "c", "--detections", tmp_path / "gt.txt"]  # fmt: skip
    assert cli(*base, files[0])[0] == 0  # what the gallery holds before the batch
    store = open_store(gallery)
    before = (store.sources(), sorted(store.ids().tolist()))
    store.close()
    thumbs_before = sorted(p.name for p in (gallery / "thumbs").rglob("*.jpg"))
    real = ingest_module._write_jpeg
    written = []

    def filling(path, crop):  # the disk fills up in the batch's second file
        if len(written) >= 5:
            raise OSError(errnos.ENOSPC, "No space left on device", str(path))
        written.append(path)
        real(path, crop)

    monkeypatch.setattr(ingest_module, "_write_jpeg", filling)
    args = [*base[:-2], "--manifest", tmp_path / "m.csv"]
    (tmp_path / "m.csv").write_text("path\n" + "\n".join(str(f) for f in files[1:]) + "\n")
    code, out, err = cli(*args)
    assert code == 2
    lines = [x for x in err.strip().splitlines() if not x.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1 and lines[0].startswith("error: disk full while ingesting ")
    assert "the gallery is as it was before" in lines[0]
    store = open_store(gallery)
    try:
        assert (store.sources(), sorted(store.ids().tolist())) == before
    finally:
        store.close()
    assert sorted(p.name for p in (gallery / "thumbs").rglob("*.jpg")) == thumbs_before
