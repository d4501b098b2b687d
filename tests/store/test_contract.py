"""The gallery store's contract (method §9.1): every backend gives the answers of the brute-force
reference (:class:`MemoryStore`) for the same adds, removes, filters and searches."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from cerberus.store import (
    Filter,
    GalleryInfo,
    GalleryStore,
    Items,
    MemoryStore,
    StoreError,
    TrackPath,
    make_filter,
)

DIM = 8
T0 = 1_790_000_000.0  # 2026-09-21, seconds since the epoch


def info(dim: int = DIM) -> GalleryInfo:
    rng = np.random.default_rng(0)
    return GalleryInfo(
        dim=dim,
        fingerprint="f" * 64,
        schema={"name": "test"},
        prototypes={"H": rng.normal(size=(3, 2)).astype(np.float32)},
        checkpoint="model.pt",
    )


def _memory(tmp_path: Path, gallery: GalleryInfo) -> GalleryStore:
    return MemoryStore(gallery)


def _local(tmp_path: Path, gallery: GalleryInfo) -> GalleryStore:
    from cerberus.store.local import LocalStore

    return LocalStore.create(tmp_path, gallery)


_MILVUS_DB: dict[str, Path] = {}
_MILVUS_COLLECTIONS = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _milvus_lite_file(tmp_path_factory):
    """One Milvus Lite file per test session (its in-process server starts once); each store
    is a fresh collection in it."""
    _MILVUS_DB["uri"] = tmp_path_factory.mktemp("milvus") / "galleries.db"


def _milvus(tmp_path: Path, gallery: GalleryInfo) -> GalleryStore:
    from cerberus.store.milvus import MilvusStore

    return MilvusStore.create(
        str(_MILVUS_DB["uri"]), gallery, collection=f"g{next(_MILVUS_COLLECTIONS)}"
    )


BACKENDS: dict[str, Callable[[Path, GalleryInfo], GalleryStore]] = {
    "memory": _memory,
    "local": _local,
    "milvus": _milvus,
}
"""name -> factory(folder, info): a new empty store of that backend (each backend adds itself)."""


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request, tmp_path):
    made = []

    def make(gallery: GalleryInfo | None = None) -> GalleryStore:
        store = BACKENDS[request.param](tmp_path / f"g{len(made)}", gallery or info())
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def batch(n: int, *, source: str, seed: int, cameras=("c1", "c2", "c3")) -> Items:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    t = T0 + rng.uniform(0, 3600, n)
    t[rng.random(n) < 0.1] = np.nan
    return Items.make(
        v,
        source=source,
        num_attributes=3,
        camera=[cameras[i] for i in rng.integers(0, len(cameras), n)],
        timestamp=t,
        frame=rng.integers(0, 1000, n),
        track=rng.integers(0, 5, n),
        path=[f"{source}/{i}.jpg" for i in range(n)],
        pid=rng.integers(1, 20, n),
        values=rng.integers(-1, 2, (n, 3)),
    )


FILTERS = [
    None,
    Filter(),
    Filter(cameras=frozenset({"c1"})),
    Filter(cameras=frozenset({"c1", "c3"}), after=T0 + 600, before=T0 + 2400),
    Filter(after=T0 + 1800),
    Filter(before=T0 + 100),
    Filter(sources=frozenset({"b"})),
    Filter(tracks=frozenset({("a", 1), ("b", 2)})),
    Filter(cameras=frozenset({"nowhere"})),
    # conditions together: each narrows the others' answer
    Filter(cameras=frozenset({"c1", "c2"}), sources=frozenset({"a"})),
    Filter(cameras=frozenset({"c3"}), tracks=frozenset({("a", 1), ("b", 2), ("a", 3)})),
]


def _filter_id(where) -> str:
    """A test id that does not depend on the hash seed (pytest-xdist workers must agree)."""
    if where is None:
        return "none"
    parts = []
    for name in ("cameras", "after", "before", "sources", "tracks"):
        value = getattr(where, name)
        if value is not None:
            parts.append(f"{name}={sorted(value) if isinstance(value, frozenset) else value}")
    return ",".join(parts) or "all"


@pytest.mark.parametrize("where", FILTERS, ids=_filter_id)
def test_search_matches_the_reference(make_store, where):
    store, reference = make_store(), MemoryStore(info())
    for s, seed in (("a", 1), ("b", 2)):
        store.add(batch(300, source=s, seed=seed))
        reference.add(batch(300, source=s, seed=seed))
    queries = batch(5, source="q", seed=9).vectors
    assert store.count(where) == reference.count(where)
    for got, want in zip(store.search(queries, 10, where), reference.search(queries, 10, where)):
        np.testing.assert_array_equal(np.sort(got.ids), np.sort(want.ids))
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)


def test_time_window_includes_after_and_excludes_before(make_store):
    """``after`` is inclusive and ``before`` exclusive (method §9.1): items exactly on either
    end of the window, in count, ids and search alike; an item without a time never passes."""
    store = make_store()
    times = [T0 - 1, T0, T0 + 0.5, T0 + 10, T0 + 11, np.nan]
    items = batch(len(times), source="a", seed=5)
    items.timestamp = np.array(times)
    ids = store.add(items)
    cases = [
        (Filter(after=T0, before=T0 + 10), [1, 2]),
        (Filter(after=T0), [1, 2, 3, 4]),
        (Filter(before=T0), [0]),
        (Filter(after=T0 + 10, before=T0 + 11), [3]),
        (Filter(after=T0 + 10, before=T0 + 10), []),
    ]
    for where, rows in cases:
        want = sorted(int(ids[r]) for r in rows)
        assert store.count(where) == len(rows), where
        assert sorted(store.ids(where).tolist()) == want, where
        (hits,) = store.search(items.vectors[:1], 10, where)
        assert sorted(hits.ids.tolist()) == want, where


def test_names_with_quotes_backslashes_and_line_breaks_filter_exactly(make_store):
    """Camera and source names are data, never filter syntax: quotes, backslashes, tabs and
    line breaks in them select exactly their own items."""
    odd = ['gate "1"', "a\\b", "x\ny", "t\tz\r", "plain"]
    store = make_store()
    for i, name in enumerate(odd):
        store.add(batch(3, source=name, seed=i, cameras=(name,)))
    for name in odd:
        for where in (Filter(cameras=frozenset({name})), Filter(sources=frozenset({name}))):
            assert store.count(where) == 3, (name, where)
            got = store.get(store.ids(where), vectors=False)
            assert set(got.camera) == {name} and set(got.source) == {name}


def test_get_returns_what_was_added(make_store):
    store = make_store()
    items = batch(50, source="a", seed=3)
    ids = store.add(items)
    back = store.get(ids[::-1])
    np.testing.assert_array_equal(back.ids, ids[::-1])
    np.testing.assert_allclose(back.vectors, items.vectors[::-1], atol=1e-6)
    assert back.camera == items.camera[::-1] and back.path == items.path[::-1]
    np.testing.assert_array_equal(back.pid, items.pid[::-1])
    np.testing.assert_array_equal(back.values, items.values[::-1])
    np.testing.assert_allclose(back.timestamp, items.timestamp[::-1], atol=1e-3, equal_nan=True)
    with pytest.raises(StoreError, match="no item"):
        store.get([int(ids.max()) + 1000])


def test_same_source_twice_is_refused_or_replaced(make_store):
    store = make_store()
    store.add(batch(20, source="a", seed=1))
    with pytest.raises(StoreError, match="already in the gallery"):
        store.add(batch(20, source="a", seed=2))
    assert store.count() == 20
    store.add(batch(7, source="a", seed=2), replace=True)
    assert store.count() == 7
    assert [(s.name, s.count, s.complete) for s in store.sources()] == [("a", 7, True)]


def test_incomplete_source_grows_then_finishes(make_store):
    store = make_store()
    store.add(batch(5, source="v.mp4", seed=1), complete=False)
    store.add(batch(6, source="v.mp4", seed=2), complete=False)
    assert [(s.count, s.complete) for s in store.sources()] == [(11, False)]
    store.finish("v.mp4")
    with pytest.raises(StoreError, match="already in the gallery"):
        store.add(batch(1, source="v.mp4", seed=3))


def test_a_source_with_no_items_can_be_finished(make_store):
    """A video with nobody in it is recorded as done: listed with count 0, a second add of it
    refused, replaceable."""
    store = make_store()
    store.add(batch(3, source="a", seed=1))
    store.finish("empty.mp4")
    assert [(s.name, s.count, s.complete) for s in store.sources()] == [
        ("a", 3, True),
        ("empty.mp4", 0, True),
    ]
    with pytest.raises(StoreError, match="already in the gallery"):
        store.add(batch(2, source="empty.mp4", seed=2))
    store.add(batch(2, source="empty.mp4", seed=2), replace=True)
    assert [(s.name, s.count) for s in store.sources()] == [("a", 3), ("empty.mp4", 2)]
    assert store.count() == 5


def test_remove_by_source_and_camera(make_store):
    store, reference = make_store(), MemoryStore(info())
    for s in (store, reference):
        s.add(batch(100, source="a", seed=1))
        s.add(batch(100, source="b", seed=2))
        s.add(batch(5, source="only_c2", seed=3, cameras=("c2",)))
        s.finish("empty.mp4")  # finished with no items: no camera's removal touches it
    assert store.remove(source="a") == reference.remove(source="a") == 100
    assert store.remove(camera="c2") == reference.remove(camera="c2")
    assert store.count() == reference.count()
    assert store.cameras() == reference.cameras() == ["c1", "c3"]
    listed = [(s.name, s.count, s.complete) for s in store.sources()]
    assert listed == [(s.name, s.count, s.complete) for s in reference.sources()]
    assert [name for name, *_ in listed] == ["b", "empty.mp4"]


def test_make_filter_refuses_bad_input():
    with pytest.raises(StoreError, match="camera c9: not in this gallery"):
        make_filter(cameras=["c9"], known_cameras=["c1", "c2"])
    with pytest.raises(StoreError, match="no time zone"):
        make_filter(after="2026-11-30T14:00:00")
    with pytest.raises(StoreError, match="not an ISO-8601 time"):
        make_filter(after="half past two")
    with pytest.raises(StoreError, match="earlier than"):
        make_filter(after="2026-11-30T15:00:00Z", before="2026-11-30T14:00:00Z")
    f = make_filter(after="2026-11-30T14:00:00+01:00", before="2026-11-30T14:30:00Z")
    assert f.before - f.after == 5400


def test_make_filter_builds_every_condition_and_says_what_is_wrong_exactly():
    """Sources and tracks pass through (names as strings, track numbers as ints); an empty
    window (after == before) is refused like an inverted one; each line names the front end's
    labels, the unknown names and up to 20 known ones ("none" for an empty gallery)."""
    f = make_filter(
        cameras=("c1",), sources=["a", "b"], tracks=[("a", "1"), ("b", 2)],
        known_cameras=["c1", "c2"], known_sources=["a", "b", "c"],
    )  # fmt: skip
    assert f == Filter(
        cameras=frozenset({"c1"}),
        sources=frozenset({"a", "b"}),
        tracks=frozenset({("a", 1), ("b", 2)}),
    )
    assert make_filter() == Filter() and make_filter().empty
    with pytest.raises(StoreError) as e:
        make_filter(sources=["z", "y"], known_sources=["b", "a"])
    assert str(e.value) == "source y, z: not in this gallery (it has: a, b)"
    with pytest.raises(StoreError) as e:
        make_filter(cameras=["c9"], known_cameras=[])
    assert str(e.value) == "camera c9: not in this gallery (it has: none)"
    many = [f"c{i:02d}" for i in range(30)]
    with pytest.raises(StoreError) as e:
        make_filter(cameras=["x"], known_cameras=many)
    assert str(e.value).endswith(f"(it has: {', '.join(many[:20])})")
    with pytest.raises(StoreError) as e:
        make_filter(sources=[])
    assert str(e.value) == "source filter: no names given"
    t = "2026-11-30T14:00:00Z"
    with pytest.raises(StoreError) as e:
        make_filter(after=t, before=t, labels=("after", "before"))
    assert str(e.value) == (
        "time window 2026-11-30T14:00:00+00:00 .. 2026-11-30T14:00:00+00:00: after must be "
        "earlier than before"
    )
    for kw, label in (({"after": "noon"}, "From"), ({"before": "noon"}, "Until")):
        with pytest.raises(StoreError, match=f"^{label} 'noon': not an ISO-8601 time"):
            make_filter(**kw, labels=("From", "Until"))
    assert make_filter(after=t).after == make_filter(before=t).before == 1_796_047_200.0


def test_a_time_that_is_no_number_is_refused_by_the_milvus_expression():
    from cerberus.store.milvus_rows import number

    assert number(1.5) == "1.5"
    with pytest.raises(StoreError) as e:
        number(float("inf"))
    assert str(e.value) == "time inf: not a finite number of seconds"


# ------------------------------------------------------- bad input: the same on every backend


def _npz(tmp_path: Path, gallery: GalleryInfo) -> GalleryStore:
    """A read-only ``.npz`` index (built from features of 40 random crops; its own dimension)."""
    from cerberus.attributes.schema_files import MARKET1501
    from cerberus.inference.features import FeatureSet
    from cerberus.store.npz import NpzStore

    rng = np.random.default_rng(0)
    n, d = 40, 2
    return NpzStore.build(
        FeatureSet(
            features=rng.normal(size=(n, 5, d)).astype(np.float32),
            paths=[f"g/{i:05d}.jpg" for i in range(n)],
            pids=rng.integers(1, 50, n),
            camids=rng.integers(0, 6, n),
            values=np.stack([rng.integers(0, a.num_values, n) for a in MARKET1501.attributes], 1),
            prototypes={
                g: rng.normal(size=(m, d)).astype(np.float32)
                for g, m in MARKET1501.num_sids.items()
            },
            meta={"schema": "market1501", "fingerprint": "abc123", "checkpoint": "m.pt"},
        )
    )


@pytest.fixture(params=sorted([*BACKENDS, "npz"]))
def searchable(request, tmp_path):
    """A store of each backend (the ``.npz`` index too) holding some items."""
    if request.param == "npz":
        store = _npz(tmp_path, info())
    else:
        store = BACKENDS[request.param](tmp_path / "g", info())
        store.add(batch(30, source="a", seed=1))
    yield store
    store.close()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_or_infinite_query_is_refused(searchable, bad):
    q = np.ones((2, searchable.info.dim), np.float32)
    q[1, 0] = bad
    with pytest.raises(StoreError, match="NaN or infinite"):
        searchable.search(q, 5)


@pytest.mark.parametrize("k", [1.5, 0, -1, True, "3", None])
def test_k_must_be_a_positive_whole_number(searchable, k):
    q = np.ones((1, searchable.info.dim), np.float32)
    with pytest.raises(StoreError, match="positive whole number"):
        searchable.search(q, k)
    assert len(searchable.search(q, np.int64(3))[0]) == 3  # a NumPy integer is a number


@pytest.mark.parametrize("kind", ["descriptions", "", None, 1])
def test_a_query_kind_that_is_not_known_is_refused(searchable, kind):
    q = np.ones((1, searchable.info.dim), np.float32)
    with pytest.raises(StoreError, match="query kind .* is not one of photo, description"):
        searchable.search(q, 3, kind=kind)
    assert len(searchable.search(q, 3, kind="description")[0]) == 3


def test_zero_queries_return_an_empty_list(searchable):
    assert searchable.search(np.zeros((0, searchable.info.dim), np.float32), 5) == []
    assert searchable.search(np.zeros((0, searchable.info.dim)), 5, Filter(after=T0)) == []


def test_an_empty_source_name_is_refused(make_store):
    with pytest.raises(StoreError, match="without a source name"):
        Items.make(np.ones((2, DIM)), source="", num_attributes=3)
    store = make_store()
    items = batch(3, source="a", seed=1)
    items.source = ["a", "", "a"]  # built around Items.make: the store checks again
    with pytest.raises(StoreError, match="without a source name"):
        store.add(items)
    assert store.count() == 0 and store.sources() == []


@pytest.mark.parametrize("bad", [np.inf, -np.inf, 1e18, -1e18])
def test_a_non_finite_or_impossible_timestamp_is_refused(make_store, bad):
    with pytest.raises(StoreError, match="not a time between"):
        Items.make(np.ones((2, DIM)), source="a", num_attributes=3, timestamp=[T0, bad])
    store = make_store()
    items = batch(3, source="a", seed=1)
    items.timestamp[1] = bad
    with pytest.raises(StoreError, match="not a time between"):
        store.add(items)
    assert store.count() == 0


@pytest.mark.parametrize(
    "bad, why",
    [
        ("yesterday", "not an ISO-8601 time"),
        (datetime(2026, 11, 30, 14, 0), "no time zone"),
        ([T0, "14:00"], "not an ISO-8601 time"),
        ([T0, object()], "not a time"),
        ([T0, b"2026"], "not a time"),
    ],
)
def test_a_string_or_datetime_timestamp_that_is_not_a_time_is_refused(make_store, bad, why):
    with pytest.raises(StoreError, match=why):
        Items.make(np.ones((2, DIM)), source="a", num_attributes=3, timestamp=bad)
    # one that is a time is taken: an aware datetime and an ISO-8601 string
    good = Items.make(
        np.ones((2, DIM)),
        source="a",
        num_attributes=3,
        timestamp=[datetime(2026, 11, 30, 13, 0, tzinfo=timezone.utc), "2026-11-30T14:00+01:00"],
    )
    store = make_store()
    ids = store.add(good)
    np.testing.assert_allclose(store.get(ids).timestamp, [1_796_043_600.0] * 2)


@pytest.mark.parametrize("where", ["camera", "source"])
def test_a_nul_in_a_name_is_refused(make_store, where):
    store = make_store()
    store.add(batch(20, source="a", seed=1))
    with pytest.raises(StoreError, match="NUL character"):
        Filter(**{f"{where}s": frozenset({"c1\x00junk" if where == "camera" else "a\x00b"})})
    with pytest.raises(StoreError, match="NUL character"):
        make_filter(**{f"{where}s": ["c1\x00junk"]})
    bad = batch(3, source="b", seed=2)
    setattr(bad, where, [f"{where}\x00x"] * 3)
    with pytest.raises(StoreError, match="NUL character"):
        store.add(bad)
    assert store.count() == 20


def test_another_attribute_count_is_refused(make_store):
    store = make_store()
    store.add(batch(5, source="a", seed=1))
    other = Items.make(np.ones((2, DIM)), source="b", num_attributes=4)
    with pytest.raises(StoreError, match="items with 4 attributes, the gallery holds 3"):
        store.add(other)
    assert store.count() == 5
    assert len(store.get(store.ids())) == 5


# ---------------------------------------------------------------- track paths


def track_path(source: str, track: int, frames, *, camera: str = "c1", seed: int = 0) -> TrackPath:
    """A walk of ``frames`` (increasing) with every third box a prediction."""
    frames = np.asarray(frames, np.int64)
    rng = np.random.default_rng(seed)
    n = len(frames)
    left = 100 + np.cumsum(rng.normal(0, 2, n))
    top = 50 + np.cumsum(rng.normal(0, 1, n))
    boxes = np.stack([left, top, left + 40, top + 100], axis=1)
    return TrackPath(source, camera, track, frames, boxes, np.arange(n) % 3 != 2)


def assert_same_paths(got: list[TrackPath], want: list[TrackPath]) -> None:
    assert [(p.source, p.camera, p.track, len(p)) for p in got] == [
        (p.source, p.camera, p.track, len(p)) for p in want
    ]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.frames, w.frames)
        np.testing.assert_array_equal(g.boxes, w.boxes)  # kept exactly (float32)
        np.testing.assert_array_equal(g.detected, w.detected)


def test_paths_are_kept_and_their_parts_joined(make_store):
    """A running track written in parts (the second overlapping the first by a frame) reads
    back as one path; paths are ordered by source then track and filtered by both."""
    store, reference = make_store(), MemoryStore(info())
    for s in (store, reference):
        s.add(
            batch(10, source="b.mp4", seed=1),
            complete=False,
            paths=[track_path("b.mp4", 7, range(0, 40, 2), seed=1),
                   track_path("b.mp4", 2, range(5, 9), camera="c2", seed=2)],
        )  # fmt: skip
        s.add(
            batch(4, source="b.mp4", seed=2),
            complete=False,
            paths=[track_path("b.mp4", 7, range(38, 3038), seed=3)],
        )
        s.add(batch(3, source="a.mp4", seed=3), paths=[track_path("a.mp4", 7, [3], seed=4)])
    got = store.paths()
    assert [(p.source, p.track) for p in got] == [("a.mp4", 7), ("b.mp4", 2), ("b.mp4", 7)]
    assert len(got[2]) == 20 + 3000 - 1  # frame 38 once: the first part's box kept
    assert_same_paths(got, reference.paths())
    assert_same_paths(store.paths(source="b.mp4"), reference.paths(source="b.mp4"))
    assert_same_paths(store.paths(track=7), reference.paths(track=7))
    assert_same_paths(store.paths("b.mp4", 2), reference.paths("b.mp4", 2))
    assert store.paths("nowhere.mp4") == [] and store.paths("a.mp4", 2) == []


def test_paths_go_with_their_source_or_camera(make_store):
    store, reference = make_store(), MemoryStore(info())
    for s in (store, reference):
        two = [track_path("a", 1, range(10)), track_path("a", 2, range(4), camera="c2")]
        s.add(batch(5, source="a", seed=1), paths=two)
        s.add(batch(5, source="b", seed=2), paths=[track_path("b", 1, range(6), camera="c2")])
        s.add(batch(5, source="c", seed=3), paths=[track_path("c", 3, range(6), camera="c3")])
    store.remove(source="a")
    reference.remove(source="a")
    assert_same_paths(store.paths(), reference.paths())
    assert [(p.source, p.track) for p in store.paths()] == [("b", 1), ("c", 3)]
    store.remove(camera="c2")
    reference.remove(camera="c2")
    assert [(p.source, p.track) for p in store.paths()] == [("c", 3)]
    assert_same_paths(store.paths(), reference.paths())


def test_replacing_a_source_replaces_its_paths(make_store):
    store, reference = make_store(), MemoryStore(info())
    for s in (store, reference):
        s.add(batch(5, source="a", seed=1), paths=[track_path("a", 1, range(10)),
                                                   track_path("a", 4, range(3))])  # fmt: skip
        s.add(batch(5, source="b", seed=2), paths=[track_path("b", 1, range(6))])
    with pytest.raises(StoreError, match="already in the gallery"):
        store.add(batch(2, source="c", seed=3), paths=[track_path("b", 9, range(2))])
    assert [(p.source, p.track) for p in store.paths()] == [("a", 1), ("a", 4), ("b", 1)]
    assert store.count() == 10  # the refused batch left nothing
    for s in (store, reference):
        s.add(batch(3, source="a", seed=4), replace=True,
              paths=[track_path("a", 1, range(100, 105), seed=5)])  # fmt: skip
    assert [(p.source, p.track, len(p)) for p in store.paths()] == [("a", 1, 5), ("b", 1, 6)]
    assert_same_paths(store.paths(), reference.paths())
    assert [(s.name, s.count) for s in store.sources()] == [("a", 3), ("b", 5)]


def test_paths_without_items(make_store):
    """A track with no crop (all too small) still has its path; an add of paths alone works
    and a path of a complete source alone is refused like its items would be."""
    store, reference = make_store(), MemoryStore(info())
    empty = batch(0, source="v", seed=0)
    for s in (store, reference):
        s.add(batch(2, source="v", seed=1), complete=False)
        assert len(s.add(empty, complete=False, paths=[track_path("v", 5, range(50))])) == 0
    assert_same_paths(store.paths(), reference.paths())
    assert store.count() == 2


def test_remove_a_camera_before_a_time_keeps_later_and_timeless_items(make_store):
    """Retention (``cerberus watch``): a camera's items older than the cut go, with the paths
    of tracks left without items; its later and time-less items, and other cameras, stay."""
    store = make_store()
    items = Items.make(
        np.eye(DIM, dtype=np.float32)[[0, 1, 2, 3, 4, 5]],
        source=["v"] * 6,
        num_attributes=3,
        camera=["c1", "c1", "c1", "c1", "c2", "c1"],
        timestamp=[T0, T0 + 10, T0 + 100, np.nan, T0, T0 + 5],
        track=[1, 1, 2, 3, 4, 5],
    )
    paths = [track_path("v", t, [1, 2, 3], camera="c2" if t == 4 else "c1") for t in range(1, 6)]
    store.add(items, complete=False, paths=paths)
    store.add(Items.make(np.eye(DIM, dtype=np.float32)[:2], source="w", num_attributes=3,
                         camera="c1", timestamp=[T0, T0 + 1]))  # fmt: skip
    assert store.remove(camera="c1", before=T0 + 50) == 5  # track 1 whole, track 5, all of w
    left = store.get(store.ids())
    assert sorted(zip(left.camera, left.track.tolist())) == [("c1", 2), ("c1", 3), ("c2", 4)]
    assert [p.track for p in store.paths()] == [2, 3, 4]
    # a source whose items all expired stays recorded as done (a restart does not redo it)
    listed = [(s.name, s.count, s.complete) for s in store.sources()]
    assert store.count() == 3 and listed == [("v", 3, False), ("w", 0, True)]
    assert store.cameras() == ["c1", "c2"]  # c1's later and time-less items
    with pytest.raises(StoreError, match="by camera only"):
        store.remove(source="v", before=T0)
