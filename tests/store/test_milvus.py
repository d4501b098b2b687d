"""The Milvus backend's own cases (method §9.1): names Milvus expressions must escape, a server
that does not answer, reopening, a newer format, a batch cut short, agreement with exact search.
The common contract runs on it in tests/test_store.py."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cerberus.store import STORE_FORMAT_VERSION, Filter, Items, MemoryStore, StoreError
from cerberus.store import milvus as milvus_module
from cerberus.store.milvus import MilvusStore
from cerberus.store.milvus_rows import NO_TIME, quote
from tests.store.test_contract import T0, batch, info

NAMES = iter(f"t{i}" for i in itertools.count())
ODD = ['cam "north"', "cam\\south", "it's\nhere\t", 'end\\"', "plain"]


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One Milvus Lite file for the module (one in-process server); a collection per store."""
    return str(tmp_path_factory.mktemp("milvus") / "gallery.db")


def _rows_in_milvus(store: MilvusStore) -> int:
    """Rows in the items collection, committed or not."""
    rows = store._client.query(store.collection, filter="batch >= 0", output_fields=["count(*)"])
    return int(rows[0]["count(*)"])


@pytest.fixture
def store(uri):
    s = MilvusStore.create(uri, info(), collection=next(NAMES))
    yield s
    s.close()


def test_names_with_quotes_and_backslashes_filter_and_remove(store):
    reference = MemoryStore(info())
    for i, source in enumerate(['clip "a".mp4', "C:\\video\\b.mp4"]):
        items = batch(60, source=source, seed=i, cameras=ODD)
        store.add(items)
        reference.add(items)
    q = batch(3, source="q", seed=7).vectors
    filters = [
        Filter(cameras=frozenset(ODD[:3])),
        Filter(cameras=frozenset({'end\\"'}), sources=frozenset({'clip "a".mp4'})),
        Filter(tracks=frozenset({("C:\\video\\b.mp4", 1), ('clip "a".mp4', 2)})),
        Filter(cameras=frozenset({"cam"})),  # a prefix of real names: matches nothing
    ]
    for where in filters:
        assert store.count(where) == reference.count(where), where
        np.testing.assert_array_equal(store.ids(where), reference.ids(where))
        for got, want in zip(store.search(q, 10, where), reference.search(q, 10, where)):
            np.testing.assert_array_equal(got.ids, want.ids)
    assert store.cameras() == reference.cameras() == sorted(ODD)
    assert store.remove(camera="it's\nhere\t") == reference.remove(camera="it's\nhere\t") > 0
    assert store.remove(source='clip "a".mp4') == reference.remove(source='clip "a".mp4') > 0
    assert store.count() == reference.count()
    assert [(s.name, s.count) for s in store.sources()] == [
        (s.name, s.count) for s in reference.sources()
    ]


def test_quote_escapes_what_milvus_parses():
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


def test_times_unknown_far_and_tiny(store):
    t = np.array([np.nan, 1e-5, T0, 1e11, np.nan])
    items = Items.make(np.eye(5, 8, dtype=np.float32), source="s", num_attributes=1, timestamp=t)
    ids = store.add(items)
    assert store.count(Filter(before=T0 + 1)) == 2
    assert store.count(Filter(after=1e-6)) == 3
    assert store.count(Filter(after=NO_TIME - 1)) == 3  # unknown times never pass
    assert store.count(Filter(after=1e-5, before=1e11)) == 2
    back = store.get(ids)
    np.testing.assert_array_equal(np.isnan(back.timestamp), np.isnan(t))


def test_unreachable_server_is_one_line_and_quick():
    start = time.monotonic()
    with pytest.raises(StoreError, match=r"^http://127\.0\.0\.1:1: Milvus does not answer \("):
        MilvusStore.open("http://127.0.0.1:1", timeout=2)
    with pytest.raises(StoreError, match="Milvus does not answer"):
        MilvusStore.create("http://127.0.0.1:1", info(), timeout=2)
    assert time.monotonic() - start < 10


def test_missing_pymilvus_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(StoreError, match="pip install pymilvus milvus-lite"):
        MilvusStore.create(str(tmp_path / "g.db"), info())


def test_reopen_keeps_items_info_and_sources(uri):
    name, gallery = next(NAMES), info()
    gallery.meta = {"camera_labels": {"c1": "Hall"}}
    with MilvusStore.create(uri, gallery, collection=name) as s:
        ids = s.add(batch(40, source="a", seed=1))
        s.add(batch(10, source="b", seed=2), complete=False)
    with MilvusStore.open(uri, collection=name) as s:
        assert s.info.fingerprint == gallery.fingerprint and s.info.schema == gallery.schema
        assert s.info.meta == gallery.meta and s.info.checkpoint == gallery.checkpoint
        np.testing.assert_array_equal(s.info.prototypes["H"], gallery.prototypes["H"])
        assert [(x.name, x.count, x.complete) for x in s.sources()] == [
            ("a", 40, True),
            ("b", 10, False),
        ]
        new = s.add(batch(5, source="b", seed=3), complete=True)
        assert new.min() > ids.max() and s.count() == 55


def test_open_refuses_what_is_not_a_gallery_it_reads(uri, tmp_path):
    name = next(NAMES)
    with MilvusStore.create(uri, info(), collection=name) as s:
        s._client.upsert(
            s.meta_collection,
            [s._meta_row("format", "format", json.dumps({"version": STORE_FORMAT_VERSION + 1}))],
        )
    with pytest.raises(StoreError, match=f"newer Cerberus .*format {STORE_FORMAT_VERSION + 1}"):
        MilvusStore.open(uri, collection=name)
    with pytest.raises(StoreError, match="no gallery in collection nothing_here"):
        MilvusStore.open(uri, collection="nothing_here")
    with pytest.raises(StoreError, match="already exists"):
        MilvusStore.create(uri, info(), collection=name)
    with pytest.raises(StoreError, match="no such Milvus Lite file"):
        MilvusStore.open(str(tmp_path / "none.db"))
    with pytest.raises(StoreError, match="letters, digits and underscores"):
        MilvusStore.create(uri, info(), collection="bad-name")


def test_a_failed_add_leaves_the_gallery_as_it_was(store, monkeypatch):
    store.add(batch(30, source="a", seed=1))
    calls = []

    def failing(rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise OSError("disk full")
        MilvusStore._insert(store, rows)

    monkeypatch.setattr(milvus_module, "_INSERT_BYTES", 10 * 4 * 8)  # 10 rows per insert
    monkeypatch.setattr(store, "_insert", failing)
    with pytest.raises(OSError, match="disk full"):
        store.add(batch(50, source="b", seed=2))
    assert calls[0] == 10 and store.count() == 30
    assert [s.name for s in store.sources()] == ["a"]
    monkeypatch.undo()
    assert _rows_in_milvus(store) == 30  # the failed batch's first 10 rows are gone, not hidden
    store.add(batch(5, source="b", seed=2))
    assert store.count() == 35


CRASH = """
import os, sys
sys.path[:0] = {paths!r}
from cerberus.store import milvus
from cerberus.store.milvus import MilvusStore
from tests.store.test_contract import batch, info
store = MilvusStore.create({uri!r}, info(), collection="crash")
store.add(batch(30, source="a", seed=1))
milvus._INSERT_BYTES = 10 * 4 * 8
done = []
def insert(rows):
    if done:
        os._exit(9)  # killed between two inserts of one batch: no cleanup runs
    MilvusStore._insert(store, rows)
    done.append(1)
store._insert = insert
store.add(batch(50, source="b", seed=2))
"""


def test_a_process_killed_while_adding_leaves_the_gallery_as_it_was(tmp_path):
    uri = str(tmp_path / "crash.db")  # its own file: Milvus Lite serves one process
    here = Path(__file__).parent
    code = textwrap.dedent(CRASH).format(paths=[str(here.parent / "src"), str(here)], uri=uri)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 9, run.stderr[-2000:]
    with MilvusStore.open(uri, collection="crash") as s:
        assert s.count() == 30 and [(x.name, x.count) for x in s.sources()] == [("a", 30)]
        assert _rows_in_milvus(s) == 30  # the reopen deleted the 10 rows that did arrive
        ids = s.add(batch(5, source="b", seed=3))
        assert ids.min() >= 80 and s.count() == 35  # the dead batch's ids are never reused


def test_a_second_process_on_a_lite_file_is_one_line(store, uri):
    code = (
        "import sys; from cerberus.store.milvus import MilvusStore\n"
        "from cerberus.errors import CerberusError\n"
        f"try:\n    MilvusStore.open({uri!r}, collection={store.collection!r})\n"
        "except CerberusError as e:\n    print(e); sys.exit(2)\n"
    )
    env_path = str(Path(__file__).parents[2] / "src")
    run = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r})\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stdout + run.stderr[-2000:]
    assert "one process at a time" in run.stdout and run.stderr.count("\n") <= 1


def test_top10_agrees_with_exact_search_on_thousands(store):
    rng = np.random.default_rng(5)
    n, dim = 3000, 8
    cameras = [f"cam{i:02d}" for i in range(20)]
    reference = MemoryStore(info())
    for part in range(3):
        v = rng.normal(size=(n // 3, dim)).astype(np.float32)
        items = Items.make(
            v / np.linalg.norm(v, axis=1, keepdims=True),
            source=f"s{part}",
            num_attributes=2,
            camera=[cameras[i] for i in rng.integers(0, 20, n // 3)],
            timestamp=T0 + rng.uniform(0, 24 * 3600, n // 3),
        )
        store.add(items)
        reference.add(items)
    q = rng.normal(size=(20, dim)).astype(np.float32)
    for where in (
        None,
        Filter(cameras=frozenset(cameras[:2]), after=T0 + 3600, before=T0 + 7200 * 4),
        Filter(after=T0 + 12 * 3600, before=T0 + 13 * 3600),
    ):
        for got, want in zip(store.search(q, 10, where), reference.search(q, 10, where)):
            np.testing.assert_array_equal(got.ids, want.ids)
            np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)


def test_k_over_the_milvus_limit_is_refused(store):
    store.add(batch(3, source="a", seed=1))
    with pytest.raises(StoreError, match="at most 16384"):
        store.search(np.zeros((1, 8), np.float32), 20000)


def test_rows_arriving_are_invisible_until_the_commit(store, monkeypatch):
    store.add(batch(30, source="a", seed=1))
    q = batch(2, source="q", seed=4).vectors
    before = [h.ids for h in store.search(q, 5)]
    seen = []

    def watching(rows):
        MilvusStore._insert(store, rows)
        seen.append((store.count(), [h.ids for h in store.search(q, 5)]))

    monkeypatch.setattr(milvus_module, "_INSERT_BYTES", 10 * 4 * 8)
    monkeypatch.setattr(store, "_insert", watching)
    store.add(batch(300, source="a", seed=2), replace=True)  # 30 inserts, then the commit
    assert len(seen) == 30
    for count, ids in seen:
        assert count == 30
        for got, want in zip(ids, before):
            np.testing.assert_array_equal(got, want)
    assert store.count() == 300 and store.sources()[0].count == 300


def test_cameras_follow_replace_and_remove(store):
    reference = MemoryStore(info())
    for s in (store, reference):
        s.add(batch(20, source="a", seed=1, cameras=("c1", "c2")))
        s.add(batch(20, source="b", seed=2, cameras=("c2", "c3")))
        s.add(batch(20, source="a", seed=3, cameras=("c4",)), replace=True)
    assert store.cameras() == reference.cameras() == ["c2", "c3", "c4"]
    for s in (store, reference):
        s.remove(camera="c3")
    assert store.cameras() == reference.cameras() == ["c2", "c4"]
    assert store.count() == reference.count() and store.count(Filter()) == reference.count()
    a, b = store.sources()
    assert (a.count, b.count) == (20, reference.count() - 20)


# ---------------------------------------------------------------- track paths


def test_a_gallery_written_before_paths_existed_opens_without_paths(uri):
    """A gallery of the first layout (no paths collection) opens, answers and has no paths;
    its first add with paths creates the collection."""
    from tests.store.test_contract import assert_same_paths, track_path

    name = next(NAMES)
    with MilvusStore.create(uri, info(), collection=name) as s:
        s.add(batch(10, source="a", seed=1))
        s.add(batch(10, source="b", seed=2))
        s._client.drop_collection(s.paths_collection)
    with MilvusStore.open(uri, collection=name) as s:
        assert s.paths() == [] and s.count() == 20
        assert s.remove(source="b") == 10
        new = track_path("c", 4, range(0, 90, 3))
        s.add(batch(3, source="c", seed=4), paths=[new])
        assert_same_paths(s.paths(), [new])
    with MilvusStore.open(uri, collection=name) as s:
        assert_same_paths(s.paths(), [new])


def test_long_paths_are_stored_in_pieces(store):
    from tests.store.test_contract import assert_same_paths, track_path

    long = track_path("a", 1, range(0, 2 * 3700, 2), seed=3)  # 3,700 frames: 3 pieces
    store.add(batch(2, source="a", seed=1), paths=[long])
    rows = store._client.query(store.paths_collection, filter="batch >= 0", output_fields=["n"])
    assert sorted(r["n"] for r in rows) == [700, 1500, 1500]
    assert_same_paths(store.paths(), [long])


CRASH_PATHS = """
import os, sys
sys.path[:0] = {paths!r}
from cerberus.store import milvus_rows
from cerberus.store.milvus import MilvusStore
from tests.store.test_contract import batch, info, track_path
store = MilvusStore.create({uri!r}, info(), collection="crash")
store.add(batch(30, source="a", seed=1), paths=[track_path("a", 1, range(40))])
milvus_rows.PATH_PIECE = 10
done = []
def insert(rows):
    if done:
        os._exit(9)  # killed between two inserts of one batch's paths: no cleanup runs
    MilvusStore._insert_paths(store, rows)
    done.append(1)
store._insert_paths = insert
store.add(batch(5, source="b", seed=2), paths=[track_path("b", 2, range(2000))])
"""


def test_a_process_killed_while_adding_paths_leaves_no_part_of_them(tmp_path):
    uri = str(tmp_path / "crash.db")
    here = Path(__file__).parent
    code = textwrap.dedent(CRASH_PATHS).format(paths=[str(here.parent / "src"), str(here)], uri=uri)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 9, run.stderr[-2000:]
    with MilvusStore.open(uri, collection="crash") as s:
        assert [(p.source, p.track, len(p)) for p in s.paths()] == [("a", 1, 40)]
        assert s.count() == 35 - 5
        rows = s._client.query(s.paths_collection, filter="batch >= 0", output_fields=["n"])
        assert len(rows) == 1  # the reopen deleted the pieces that did arrive


# ---------------------------------------------------------------- retention (remove before)


def _tracked(n: int, source: str, seed: int) -> Items:
    """:func:`batch` with tracks of three items each (tracks that expire whole), a track's
    items on one camera (as ingest writes them) and a source's on several."""
    items = batch(n, source=source, seed=seed)
    items.track = np.arange(n, dtype=np.int64) // 3
    items.camera = [f"c{1 + (t + seed) % 3}" for t in items.track.tolist()]
    return items


def _with_paths(items: Items) -> list:
    """A path per ``(source, track)`` of ``items``, on the camera of its first item."""
    from tests.store.test_contract import track_path

    first: dict[tuple[str, int], str] = {}
    for s, t, c in zip(items.source, items.track.tolist(), items.camera):
        first.setdefault((s, t), c)
    return [track_path(s, t, range(t, t + 9), camera=c) for (s, t), c in sorted(first.items())]


def _same_as(store, reference) -> None:
    from tests.store.test_contract import assert_same_paths

    def rows(s):
        got = s.get(s.ids(), vectors=False)
        return sorted(zip(got.source, got.camera, got.track.tolist(), got.frame.tolist()))

    assert rows(store) == rows(reference)
    assert store.sources() == reference.sources() and store.cameras() == reference.cameras()
    assert_same_paths(store.paths(), reference.paths())


@pytest.mark.parametrize("listed", [True, False])
def test_retention_cuts_agree_with_the_folder_store(store, tmp_path, monkeypatch, listed):
    """Cuts at rising times on each camera in turn, on tracks spread over several cameras:
    the items, sources (recorded at count 0 when all expired), cameras and paths left are a
    gallery folder's, with the touched tracks listed in the plan or (too many) all of the
    camera's paths checked."""
    from cerberus.store.local import LocalStore

    if not listed:
        monkeypatch.setattr(milvus_module, "_LISTED_TRACKS", 0)

    reference = LocalStore.create(tmp_path / "g", info())
    for seed, name in enumerate(["a", "b", 'q"uote']):
        items = _tracked(40, name, seed)
        for s in (store, reference):
            s.add(items, complete=seed != 1, paths=_with_paths(items))
    cuts = [("c1", 600), ("c2", 1800), ("c1", 1800), ("c3", 3600), ("c2", 4000), ("c1", 4000)]
    for camera, dt in cuts:
        want = reference.remove(camera=camera, before=T0 + dt)
        assert store.remove(camera=camera, before=T0 + dt) == want
        _same_as(store, reference)
    assert store.count(Filter(before=T0 + 4000)) == 0 < store.count()  # no-time items stay
    assert store.remove(camera="c1", before=T0 + 4000) == 0
    listed = [(x.name, x.count, x.complete) for x in store.sources()]
    assert ("b", 0, False) in listed and len(listed) == 3  # all expired: still recorded
    reference.close()


CRASH_RETENTION = """
import os, sys
sys.path[:0] = {paths!r}
from cerberus.store.milvus import MilvusStore
from tests.store.test_contract import T0, batch, info
from tests.store.test_milvus import _tracked, _with_paths
store = MilvusStore.create({uri!r}, info(), collection="crash")
for seed, name in enumerate(["a", "b"]):
    items = _tracked(40, name, seed)
    store.add(items, paths=_with_paths(items))
def put_state(state):
    MilvusStore._put_state(store, state)
    if {at!r} == "plan" and (state["pending"] or {{}}).get("op") == "remove":
        os._exit(9)  # killed once the plan is written: nothing of it done
def drop_bare_paths(*args):
    os._exit(9)  # killed with the items deleted, their paths and counts not yet
store._put_state = put_state
if {at!r} == "paths":
    store._drop_bare_paths = drop_bare_paths
store.remove(camera="c2", before=T0 + 1800)
"""


@pytest.mark.parametrize("at", ["plan", "paths"])
def test_a_process_killed_while_removing_by_time_is_finished_at_reopen(tmp_path, at):
    uri = str(tmp_path / "crash.db")
    here = Path(__file__).parent
    code = textwrap.dedent(CRASH_RETENTION).format(
        paths=[str(here.parent.parent / "src"), str(here.parent.parent)], uri=uri, at=at
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 9, run.stderr[-2000:]
    reference = MemoryStore(info())
    for seed, name in enumerate(["a", "b"]):
        items = _tracked(40, name, seed)
        reference.add(items, paths=_with_paths(items))
    gone = reference.remove(camera="c2", before=T0 + 1800)
    assert 0 < gone and len(reference.paths()) < 28  # some items and paths do go
    with MilvusStore.open(uri, collection="crash") as s:
        _same_as(s, reference)
        assert s._state()["pending"] is None


def test_exact_and_nprobe_map_to_the_index_search_params(uri):
    """FLAT is exact (nprobe accepted, nothing to probe); IVF_FLAT's nprobe is Milvus' own and
    exact probes every cell; HNSW has no cells: either is refused with one line."""
    reference = MemoryStore(info())
    items = batch(3000, source="a", seed=4)
    reference.add(items)
    q = batch(20, source="q", seed=5).vectors
    want = reference.search(q, 10)
    ivf = MilvusStore.create(uri, info(), collection=next(NAMES), index="IVF_FLAT")
    try:
        ivf.add(items)
        nlist = milvus_module.INDEXES["IVF_FLAT"][0]["nlist"]
        assert ivf._search_params(True, None) == {"nprobe": nlist}
        assert ivf._search_params(False, 3) == {"nprobe": 3}
        for got in (ivf.search(q, 10, exact=True), ivf.search(q, 10, nprobe=10**6)):
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g.ids, w.ids)
        with pytest.raises(StoreError, match="nprobe 0 must be at least 1"):
            ivf.search(q, 10, nprobe=0)
    finally:
        ivf.close()
    flat = MilvusStore.create(uri, info(), collection=next(NAMES))
    try:
        flat.add(items)
        for g, w in zip(flat.search(q, 10, nprobe=2, exact=True), want):
            np.testing.assert_array_equal(g.ids, w.ids)
    finally:
        flat.close()
    hnsw = MilvusStore.create(uri, info(), collection=next(NAMES), index="HNSW")
    try:
        for how in ({"exact": True}, {"nprobe": 4}):
            with pytest.raises(StoreError, match="HNSW collection has no cells") as e:
                hnsw.search(q, 10, **how)
            assert "\n" not in str(e.value)
    finally:
        hnsw.close()
