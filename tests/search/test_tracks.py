"""A gallery's tracks (method §9.3): their crops, frames, times and paths, as
:func:`list_tracks` lists them for ``cerberus tracks`` and the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cerberus.errors import CerberusError
from cerberus.search import Gallery
from cerberus.search.rows import iso_time
from cerberus.search.tracks import frame_times, list_tracks
from cerberus.store import Items, MemoryStore
from cerberus.store.local import LocalStore
from tests.store.test_contract import DIM, T0, info, track_path

FPS = 10.0


def crops(source: str, camera: str, tracks: list[int], frames: list[int]) -> Items:
    """Crops of a file at :data:`FPS` starting at ``T0``: frame ``f`` at ``T0 + (f - 1) / FPS``."""
    rng = np.random.default_rng(len(frames))
    v = rng.normal(size=(len(frames), DIM)).astype(np.float32)
    frames_a = np.asarray(frames, np.int64)
    return Items.make(
        v / np.linalg.norm(v, axis=1, keepdims=True),
        source=source,
        num_attributes=3,
        camera=camera,
        timestamp=T0 + (frames_a - 1) / FPS,
        frame=frames_a,
        track=tracks,
    )


def footage(store) -> None:
    """Two videos: in ``a.mp4`` track 1 (3 crops, a path over frames 10..60), track 2 (one
    crop, no path), track 3 (a path, no crop); ``b.mp4`` track 1 (2 crops, a path in 2 parts);
    and an item without a track."""
    store.add(
        crops("a.mp4", "north", [1, 1, 2, 1, -1], [40, 12, 30, 55, 20]),
        paths=[track_path("a.mp4", 1, range(10, 61), camera="north"),
               track_path("a.mp4", 3, range(100, 110), camera="north")],
    )  # fmt: skip
    store.add(crops("b.mp4", "south", [1, 1], [5, 9]), complete=False,
              paths=[track_path("b.mp4", 1, range(3, 8), camera="south")])  # fmt: skip
    store.add(crops("b.mp4", "south", [1], [300]), paths=[
        track_path("b.mp4", 1, range(8, 301), camera="south", seed=2)])  # fmt: skip


def slow_times(frames, known_frames, known_times):
    """The rule, one frame at a time: interpolate between the neighbouring known frames; the
    line through the first and last known frame outside them."""
    pairs = sorted(zip(known_frames, known_times))
    out = []
    for f in frames:
        if len(pairs) == 1:
            out.append(pairs[0][1] if f == pairs[0][0] else np.nan)
            continue
        (f0, t0), (f1, t1) = pairs[0], pairs[-1]
        if f < f0 or f > f1:
            out.append(t0 + (f - f0) * (t1 - t0) / (f1 - f0))
            continue
        for (fa, ta), (fb, tb) in zip(pairs, pairs[1:]):
            if fa <= f <= fb:
                out.append(ta + (f - fa) * (tb - ta) / (fb - fa))
                break
    return np.array(out)


def test_frame_times_follow_the_rule():
    rng = np.random.default_rng(0)
    known = np.sort(rng.choice(1000, 12, replace=False))
    times = T0 + np.cumsum(rng.uniform(0.05, 0.2, 12))  # a stream: uneven times
    frames = rng.integers(-50, 1100, 200)
    np.testing.assert_allclose(
        frame_times(frames, known, times), slow_times(frames, known, times), rtol=0, atol=1e-6
    )
    # a file: every frame exact from two crops
    np.testing.assert_allclose(
        frame_times([1, 50, 700], [11, 31], T0 + (np.array([11, 31]) - 1) / FPS),
        T0 + (np.array([1, 50, 700]) - 1) / FPS,
    )
    one = frame_times([4, 5], [5, -1, 7], [T0, T0 + 1, np.nan])  # frame -1, nan: ignored
    assert np.isnan(one[0]) and one[1] == T0
    assert np.isnan(frame_times([4], [], [])).all()
    np.testing.assert_allclose(frame_times([2], [1, 1, 3], [T0, T0 + 2, T0 + 3]), [T0 + 2])


@pytest.mark.parametrize("backend", ["memory", "local"])
def test_list_tracks_gives_crops_frames_times_and_paths(backend, tmp_path):
    folder = tmp_path / "g"
    store = MemoryStore(info()) if backend == "memory" else LocalStore.create(folder, info())
    footage(store)
    rows = list_tracks(store)
    assert [(r["source"], r["track"]) for r in rows] == [
        ("a.mp4", 1), ("a.mp4", 2), ("a.mp4", 3), ("b.mp4", 1),
    ]  # fmt: skip
    a1, a2, a3, b1 = rows
    ids_a = store.ids()[:5]
    assert a1["crops"] == [int(ids_a[i]) for i in (1, 0, 3)]  # by frame: 12, 40, 55
    assert (a1["first_frame"], a1["last_frame"], a1["boxes"]) == (10, 60, 51)
    assert a1["start"] == iso_time(T0 + 0.9) and a1["end"] == iso_time(T0 + 5.9)
    assert a1["camera"] == "north" and a1["detected"] == int(np.sum(np.arange(51) % 3 != 2))
    want = track_path("a.mp4", 1, range(10, 61))
    assert a1["path"][0] == [10, *(round(float(x), 2) for x in want.boxes[0])]
    assert [p[0] for p in a1["path"]] == list(range(10, 61))
    assert a1["path_detected"] == want.detected.tolist()
    assert (a2["first_frame"], a2["last_frame"], a2["boxes"], a2["path"]) == (30, 30, 0, [])
    assert a3["crops"] == [] and a3["start"] == iso_time(T0 + 9.9)  # times from a.mp4's crops
    assert (b1["first_frame"], b1["last_frame"], b1["boxes"], len(b1["crops"])) == (3, 300, 298, 3)
    assert list_tracks(store, "b.mp4") == [b1]
    assert list_tracks(store, "a.mp4", 3) == [a3]
    assert list_tracks(store, "c.mp4") == []
    store.close()


def test_gallery_tracks_names_the_source_it_does_not_have(tmp_path, monkeypatch):
    store = LocalStore.create(tmp_path / "g", info())
    video = tmp_path / "v.mp4"
    store.add(crops(str(video), "c1", [4], [7]), paths=[track_path(str(video), 4, [6, 7])])
    gallery = Gallery(store)
    monkeypatch.chdir(tmp_path)
    assert [t["track"] for t in gallery.tracks("v.mp4")] == [4]  # relative: made absolute
    with pytest.raises(CerberusError, match="source w.mp4: not in this gallery"):
        gallery.tracks("w.mp4")
    assert Path(gallery.tracks()[0]["source"]) == video


def test_a_track_is_timed_by_its_own_crops_before_its_sources(tmp_path):
    """A stream's times are uneven: a track with crops on two frames or more is timed by its
    own crops (the line through them beyond), one with fewer by its source's."""
    store = MemoryStore(info())
    items = crops("rtsp://cam", "c1", [7, 7, 1, 1], [10, 20, 100, 110])
    items.timestamp = np.array([T0, T0 + 1, T0 + 50, T0 + 51])
    store.add(items, paths=[track_path("rtsp://cam", 1, range(90, 121)),
                            track_path("rtsp://cam", 2, range(60, 70))])  # fmt: skip
    rows = {r["track"]: r for r in list_tracks(store)}
    assert rows[1]["start"] == iso_time(T0 + 49) and rows[1]["end"] == iso_time(T0 + 52)
    # track 2 has no crop: the source's crops, interpolated between frames 20 and 100
    assert rows[2]["start"] == iso_time(T0 + 1 + 40 * 49 / 80)
    for t in (1, 2, 7):
        assert list_tracks(store, "rtsp://cam", t) == [rows[t]]


def test_iso_time_of_a_time_with_no_calendar_date_is_unknown():
    """A gallery written before infinite / 1e18 times were refused still summarises."""
    assert iso_time(float("inf")) is None and iso_time(1e18) is None and iso_time(-1e18) is None
    assert iso_time(float("nan")) is None and iso_time(0.0) == "1970-01-01T00:00:00+00:00"
