"""The embedded gallery (method §9.1) beyond the shared contract: reopening, the approximate path,
compaction, kill -9 and full disks during an add, readers during an add, refused folders."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cerberus
from cerberus.store import Filter, Items, MemoryStore, StoreError, backend_of, open_store
from cerberus.store import ann as ann_module
from cerberus.store import local as local_module
from cerberus.store import segments as segments_module
from cerberus.store.local import LocalStore
from tests.store.test_contract import DIM, T0, batch, info

SRC = str(Path(cerberus.__file__).resolve().parents[1])


def segment_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "vectors").iterdir())


def assert_same_answers(store, reference, queries, where=None, k=10, **how) -> None:
    assert store.count(where) == reference.count(where)
    got_all = store.search(queries, k, where, **how)
    for got, want in zip(got_all, reference.search(queries, k, where)):
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)


def test_reopen_gives_the_same_answers(tmp_path):
    store = LocalStore.create(tmp_path / "g", info())
    reference = MemoryStore(info())
    for s in (store, reference):
        s.add(batch(200, source="a", seed=1))
        s.add(batch(100, source="b", seed=2), complete=False)
    store.close()
    again = open_store(tmp_path / "g")
    assert isinstance(again, LocalStore)
    assert again.info.fingerprint == info().fingerprint and again.info.dim == DIM
    np.testing.assert_array_equal(again.info.prototypes["H"], info().prototypes["H"])
    assert again.sources() == reference.sources()
    queries = batch(4, source="q", seed=9).vectors
    for where in (None, Filter(cameras=frozenset({"c2"}), after=T0 + 900)):
        assert_same_answers(again, reference, queries, where)
    with pytest.raises(StoreError, match="is closed"):
        store.count()
    again.close()


def test_refuses_folders_that_are_not_galleries(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a gallery"):
        LocalStore.open(tmp_path / "empty")
    with pytest.raises(StoreError, match="no such gallery folder"):
        LocalStore.open(tmp_path / "missing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(StoreError, match="not an empty folder"):
        LocalStore.create(tmp_path / "full", info())


def test_refuses_a_gallery_of_a_newer_version(tmp_path):
    LocalStore.create(tmp_path / "g", info()).close()
    marker = tmp_path / "g" / local_module.MARKER
    facts = json.loads(marker.read_text())
    marker.write_text(json.dumps({**facts, "version": facts["version"] + 1}))
    with pytest.raises(StoreError, match="written by a newer Cerberus") as e:
        LocalStore.open(tmp_path / "g")
    assert "\n" not in str(e.value)


def test_refuses_a_corrupted_database_with_one_line(tmp_path):
    store = LocalStore.create(tmp_path / "g", info())
    store.add(batch(20, source="a", seed=1))
    store.close()
    db = tmp_path / "g" / local_module.DATABASE
    for extra in ("-wal", "-shm"):
        Path(str(db) + extra).unlink(missing_ok=True)
    db.write_bytes(b"this is not sqlite " * 200)
    with pytest.raises(StoreError, match="corrupted or not a gallery database") as e:
        LocalStore.open(tmp_path / "g")
    assert "\n" not in str(e.value)


def test_disk_full_while_writing_vectors_leaves_the_gallery_unchanged(tmp_path, monkeypatch):
    store = LocalStore.create(tmp_path / "g", info())
    store.add(batch(50, source="a", seed=1))
    before = segment_files(tmp_path / "g")

    def full(fh, array):
        fh.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segments_module, "_write_array", full)
    with pytest.raises(StoreError, match=r"disk full while adding 30 items; the gallery is unch"):
        store.add(batch(30, source="b", seed=2))
    assert store.count() == 50 and [s.name for s in store.sources()] == ["a"]
    assert segment_files(tmp_path / "g") == before  # no partial file left
    monkeypatch.undo()
    store.add(batch(30, source="b", seed=2))
    assert store.count() == 80


def test_disk_full_in_the_database_leaves_the_gallery_unchanged(tmp_path, monkeypatch):
    store = LocalStore.create(tmp_path / "g", info())
    store.add(batch(50, source="a", seed=1))
    before = segment_files(tmp_path / "g")

    def full(*args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(local_module, "item_rows", full)
    with pytest.raises(StoreError, match="disk full while adding 30 items; the gallery is unch"):
        store.add(batch(30, source="b", seed=2))
    assert store.count() == 50 and segment_files(tmp_path / "g") == before


def test_a_second_writer_waits_then_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(local_module, "BUSY_TIMEOUT_S", 0.3)
    store = LocalStore.create(tmp_path / "g", info())
    store.add(batch(10, source="a", seed=1))
    other = sqlite3.connect(tmp_path / "g" / local_module.DATABASE, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert store.count() == 10  # readers do not wait
        with pytest.raises(StoreError, match="another process is writing to this gallery"):
            store.add(batch(10, source="b", seed=2))
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.add(batch(10, source="b", seed=2))
    assert store.count() == 20


def clustered(n: int, *, seed: int, dim: int = 32, centres: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(123).normal(size=(centres, dim))
    v = c[rng.integers(0, centres, n)] + 0.5 * rng.normal(size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make_items(vectors: np.ndarray, *, source: str, seed: int) -> Items:
    rng = np.random.default_rng(seed)
    n = len(vectors)
    return Items.make(
        vectors,
        source=source,
        num_attributes=2,
        camera=[f"c{i}" for i in rng.integers(0, 4, n)],
        timestamp=T0 + rng.uniform(0, 3600, n),
    )


def test_approximate_path_reranks_exactly_and_drops_removed_items(tmp_path):
    dim = 32
    store = LocalStore.create(tmp_path / "g", info(dim), exact_limit=500)
    reference = MemoryStore(info(dim))
    for s, seed in (("a", 1), ("b", 2)):
        items = make_items(clustered(3000, seed=seed), source=s, seed=seed)
        store.add(items)
        reference.add(items)
    queries = clustered(20, seed=7)

    def recall(where=None) -> float:
        got = store.search(queries, 10, where)
        want = reference.search(queries, 10, where)
        for g, query in zip(got, queries):  # scores are the exact inner products, best first
            exact = reference.get(g.ids).vectors @ query
            np.testing.assert_allclose(g.scores, exact, atol=1e-5)
            assert np.all(np.diff(g.scores) <= 1e-7)
        return np.mean([len(set(g.ids) & set(w.ids)) / 10 for g, w in zip(got, want)])

    assert recall() == 1.0  # no index yet: exact
    assert not (tmp_path / "g" / "ann" / "ann.faiss").exists()
    store.build_index()
    assert recall() >= 0.9
    weak = Filter(cameras=frozenset({"c0", "c1", "c2"}))
    assert store.count(weak) > 500 and recall(weak) >= 0.9
    assert (tmp_path / "g" / "ann" / "ann.faiss").is_file()
    # removed items are never answered; items added after the index was built are found
    for s in (store, reference):
        s.remove(camera="c0")
    late = make_items(clustered(300, seed=3), source="late", seed=3)
    store.add(late)
    new_ids = reference.add(late)
    assert recall() >= 0.9 and recall(weak) >= 0.9
    answered = np.concatenate([h.ids for h in store.search(queries, 10)])
    assert set(answered) <= set(reference.ids())
    hits = store.search(late.vectors[:5], 1)
    assert [int(h.ids[0]) for h in hits] == [int(i) for i in new_ids[:5]]
    store.close()


def test_compaction_drops_removed_vectors_and_keeps_the_answers(tmp_path):
    store = LocalStore.create(tmp_path / "g", info())
    reference = MemoryStore(info())
    for s, seed in (("a", 1), ("b", 2), ("c", 3)):
        for x in (store, reference):
            x.add(batch(200, source=s, seed=seed))
    for x in (store, reference):
        x.remove(camera="c2")
        x.remove(source="b")
    dropped = store.compact()
    assert dropped == 600 - reference.count()
    assert len(segment_files(tmp_path / "g")) == 1
    queries = batch(4, source="q", seed=9).vectors
    assert_same_answers(store, reference, queries)
    assert_same_answers(store, reference, queries, Filter(cameras=frozenset({"c1"})))
    np.testing.assert_allclose(
        store.get(reference.ids()).vectors, reference.get(reference.ids()).vectors
    )
    assert store.compact() == 0
    store.close()
    assert_same_answers(LocalStore.open(tmp_path / "g"), reference, queries)


def test_many_small_adds_are_merged(tmp_path):
    store = LocalStore.create(tmp_path / "g", info())
    reference = MemoryStore(info())
    for i in range(local_module.MAX_SMALL_SEGMENTS + 6):
        for x in (store, reference):
            x.add(batch(3, source=f"track{i}", seed=i))
    assert len(segment_files(tmp_path / "g")) <= 8
    assert_same_answers(store, reference, batch(3, source="q", seed=99).vectors)


def test_searches_keep_answering_while_another_thread_adds(tmp_path):
    store = LocalStore.create(tmp_path / "g", info())
    store.add(batch(100, source="s0", seed=0))
    errors: list[BaseException] = []
    read = threading.Event()  # the writer adds a batch only after another read

    def writer() -> None:
        try:
            for i in range(1, 15):
                assert read.wait(60), "no read came"
                read.clear()
                store.add(batch(100, source=f"s{i}", seed=i))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    queries = batch(2, source="q", seed=99).vectors
    seen = []
    while thread.is_alive():
        n = store.count()
        assert n % 100 == 0  # never a part of a batch
        hits = store.search(queries, 5)
        assert all(len(h) == 5 for h in hits)
        seen.append(n)
        read.set()
    thread.join()
    assert not errors and store.count() == 1500 and seen == sorted(seen)
    assert any(100 < n < 1500 for n in seen)  # reads came while the writer was adding


CHILD = """
import sys, numpy as np
sys.path.insert(0, {src!r}); sys.path.insert(0, {root!r})
from cerberus.store.local import LocalStore
from tests.store.test_contract import batch
store = LocalStore.open({folder!r})
print("ready", flush=True)
for i in range({batches}):
    if {step}:  # one add per line the parent writes
        sys.stdin.readline()
    store.add(batch({n}, source="child%d-%d" % ({tag}, i), seed=i))
    print("added", flush=True)
"""


def child(folder: Path, *, n: int, batches: int, tag: int, step: bool = False) -> subprocess.Popen:
    """A process adding ``batches`` batches of ``n``; with ``step``, each after a stdin line."""
    code = CHILD.format(
        src=SRC,
        root=str(Path(__file__).resolve().parent),
        folder=str(folder),
        n=n,
        batches=batches,
        tag=tag,
        step=step,
    )
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE if step else None,
        text=True,
        env=env,
    )


def test_kill_during_an_add_leaves_the_old_gallery_or_the_whole_batch(tmp_path):
    folder = tmp_path / "g"
    LocalStore.create(folder, info()).close()
    rng = np.random.default_rng(0)
    queries = batch(2, source="q", seed=99).vectors
    big = 40_000
    for attempt in range(6):
        store = LocalStore.open(folder)
        before = store.count()
        store.close()
        proc = child(folder, n=big, batches=3, tag=attempt)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 1.5)))  # three adds take about that long
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = LocalStore.open(folder)
        after = store.count()
        assert (after - before) % big == 0, (before, after)
        for i in range(3):
            assert store.count(Filter(sources=frozenset({f"child{attempt}-{i}"}))) in (0, big)
        if after:
            assert all(len(h) == 5 for h in store.search(queries, 5))
        store.add(batch(5, source=f"after{attempt}", seed=attempt))  # a writer cleans orphans
        referenced = len(store.sources())
        assert len(segment_files(folder)) == referenced
        store.close()


def test_an_unreferenced_segment_is_ignored_then_cleaned(tmp_path):
    """What a kill between the segment's rename and the commit leaves."""
    store = LocalStore.create(tmp_path / "g", info())
    reference = MemoryStore(info())
    for x in (store, reference):
        x.add(batch(40, source="a", seed=1))
    orphan = tmp_path / "g" / "vectors" / "seg-orphan.npy"
    np.save(orphan, batch(40, source="b", seed=2).vectors)
    again = LocalStore.open(tmp_path / "g")
    assert_same_answers(again, reference, batch(3, source="q", seed=9).vectors)
    again.add(batch(5, source="c", seed=3))
    assert not orphan.exists() and len(segment_files(tmp_path / "g")) == 2


def test_a_search_from_another_process_keeps_answering_during_adds(tmp_path):
    folder = tmp_path / "g"
    store = LocalStore.create(folder, info())
    store.add(batch(500, source="first", seed=1))
    proc = child(folder, n=500, batches=8, tag=0, step=True)
    assert proc.stdout.readline().strip() == "ready"
    queries = batch(2, source="q", seed=99).vectors
    counts = []
    while proc.poll() is None:
        counts.append(store.count())
        assert counts[-1] % 500 == 0
        assert all(len(h) == 5 for h in store.search(queries, 5))
        try:  # the child adds its next batch only after this read
            proc.stdin.write("go\n")
            proc.stdin.flush()
        except BrokenPipeError:  # it has finished
            break
    proc.wait(timeout=60)
    assert proc.returncode == 0
    assert store.count() == 4500 and counts == sorted(counts)
    assert any(500 < c < 4500 for c in counts)  # reads came while the child was adding
    store.close()


def test_open_store_picks_the_backend():
    assert backend_of("galleries/market") == ("local", "galleries/market")
    assert backend_of("gallery.db") == ("milvus", "gallery.db")
    assert backend_of("milvus:gallery") == ("milvus", "gallery")
    assert backend_of("http://host:19530") == ("milvus", "http://host:19530")
    with pytest.raises(StoreError, match="no folder or URI"):
        backend_of(" ")


def test_a_broken_index_cache_is_rebuilt_from_the_segments(tmp_path):
    dim = 32
    store = LocalStore.create(tmp_path / "g", info(dim), exact_limit=100)
    items = make_items(clustered(2000, seed=1), source="a", seed=1)
    store.add(items)
    queries = clustered(5, seed=7)
    store.build_index()
    first = store.search(queries, 10)
    store.close()
    (tmp_path / "g" / "ann" / "ann.faiss").write_bytes(b"garbage")
    again = LocalStore.open(tmp_path / "g", exact_limit=100)
    for a, b in zip(first, again.search(queries, 10)):  # exact while there is no index
        np.testing.assert_array_equal(a.ids, b.ids)
    again.build_index()
    assert (tmp_path / "g" / "ann" / "ann.faiss").stat().st_size > 1000
    for a, b in zip(first, again.search(queries, 10)):
        np.testing.assert_array_equal(a.ids, b.ids)


def test_get_without_vectors_and_more_k_than_items(tmp_path):
    store = LocalStore.create(tmp_path / "g", info())
    ids = store.add(batch(7, source="a", seed=1))
    got = store.get(ids[:3], vectors=False)
    assert got.vectors.shape == (3, DIM) and not got.vectors.any()
    assert len(store.get([])) == 0
    hits = store.search(batch(2, source="q", seed=2).vectors, 50)
    assert [len(h) for h in hits] == [7, 7]
    with pytest.raises(StoreError, match="k=0: give a positive whole number"):
        store.search(batch(1, source="q", seed=2).vectors, 0)  # the contract: every backend


def test_the_index_never_selects_ids_past_the_end_of_the_bitmap(tmp_path):
    from cerberus.store.ann import AnnIndex

    vectors = clustered(3000, seed=1)
    ann = AnnIndex(tmp_path, 32)
    ann.build(np.arange(3000), lambda pos: vectors[pos])
    memory = np.full(400, 0xFF, np.uint8)  # what lies past the bitmap: every bit set
    memory[:10] = np.packbits(np.arange(80) % 2 == 0, bitorder="little")
    passing = np.arange(0, 80, 2)
    found = ann.search_within(clustered(5, seed=2), 20, memory[:10], passing, nprobe=ann.nlist)
    assert set(found[found >= 0].tolist()) <= set(range(0, 80, 2))


# ---------------------------------------------------------------- track paths


def test_a_gallery_written_before_paths_existed_opens_without_paths(tmp_path):
    """A gallery folder of the first layout (no paths table) opens, answers, removes, has no
    paths; its first add with paths creates the table in that add's transaction."""
    from tests.store.test_contract import assert_same_paths, track_path

    folder = tmp_path / "old"
    with LocalStore.create(folder, info()) as store:
        store.add(batch(20, source="a", seed=1))
        store.add(batch(20, source="b", seed=2))
    conn = sqlite3.connect(folder / "items.sqlite")
    conn.execute("DROP TABLE paths")  # the indexes go with it
    conn.commit()
    assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'paths%'").fetchall() == []
    conn.close()
    with LocalStore.open(folder) as store:
        assert store.paths() == [] and store.paths("a", 1) == []
        assert store.count() == 40 and store.remove(source="b") == 20
        with pytest.raises(StoreError, match="already in the gallery"):
            store.add(batch(2, source="a", seed=3), paths=[track_path("a", 1, range(5))])
        assert store.paths() == []
        new = track_path("c", 4, range(0, 90, 3))
        store.add(batch(3, source="c", seed=4), paths=[new])
        assert_same_paths(store.paths(), [new])
        assert store.remove(camera="c1") >= 0


CHILD_PATHS = """
import sys, numpy as np
sys.path.insert(0, {src!r}); sys.path.insert(0, {root!r})
from cerberus.store.local import LocalStore
from tests.store.test_contract import batch, track_path
store = LocalStore.open({folder!r})
print("ready", flush=True)
for i in range({batches}):
    source = "child%d-%d" % ({tag}, i)
    paths = [track_path(source, t, range(t, t + {frames})) for t in range(4)]
    store.add(batch({n}, source=source, seed=i), paths=paths)
"""


def test_a_kill_during_an_add_leaves_whole_paths_or_none(tmp_path):
    """Items and paths of a batch are one SQLite transaction: after a kill -9 a source has all
    its items and all its paths, or neither."""
    folder = tmp_path / "g"
    LocalStore.create(folder, info()).close()
    rng = np.random.default_rng(1)
    frames = 50_000
    for attempt in range(4):
        code = CHILD_PATHS.format(
            src=SRC, root=str(Path(__file__).resolve().parent), folder=str(folder),
            batches=3, tag=attempt, frames=frames, n=5_000,
        )  # fmt: skip
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with LocalStore.open(folder) as store:
            for i in range(3):
                source = f"child{attempt}-{i}"
                items = store.count(Filter(sources=frozenset({source})))
                paths = store.paths(source)
                assert items in (0, 5_000)
                assert [len(p) for p in paths] == ([frames] * 4 if items else [])


WRITER = """
import sys, time
sys.path[:0] = [{src!r}, {root!r}]
import numpy as np
from cerberus.store import Items, TrackPath
from cerberus.store.open import open_or_create
from test_contract import info
go = float(sys.argv[1])
time.sleep(max(0.0, go - time.time()))  # every writer starts at the same moment
store = open_or_create({folder!r}, info())
if sys.argv[2] == "hold":  # one writer keeps the lock for a short batch
    with store._writing("a slow batch"):
        print("holding", flush=True)
        time.sleep(1.5)
for k in range(8):
    v = np.random.default_rng(k).normal(size=(3, 8)).astype(np.float32)
    items = Items.make(v, source=sys.argv[2], num_attributes=3, camera="c", track=[k] * 3)
    store.add(items, complete=False, paths=[TrackPath(sys.argv[2], "c", k, [1, 2], np.zeros((2, 4)),
                                                      [True, True])])
store.finish(sys.argv[2])
print("done", flush=True)
"""


def test_writers_of_one_new_gallery_take_turns(tmp_path):
    """Item 6 of issue 30: several processes (``cerberus watch`` of camera groups) create and
    write one gallery folder at once; one holds the write lock for a short batch. Every one
    waits for its turn: none is refused, nothing is lost, no half-made gallery is seen."""
    folder = tmp_path / "shared"
    code = WRITER.format(src=SRC, root=str(Path(__file__).resolve().parent), folder=str(folder))
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    go = time.time() + 4.0
    names = ["hold", "w1", "w2", "w3"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(go), name],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for name in names
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for name, proc, (out, err) in zip(names, procs, outs):
        assert proc.returncode == 0, f"{name} was refused: {err.strip().splitlines()[-1:]}"
        assert out.strip().endswith("done")
    store = LocalStore.open(folder)
    assert store.count() == 4 * 8 * 3
    assert [(s.name, s.count, s.complete) for s in store.sources()] == [
        (name, 24, True) for name in sorted(names)
    ]
    assert len(store.paths()) == 4 * 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no building left


# ---------------------------------------------------------------- faults (issue 31 item 4)


def _faiss_full_disk(monkeypatch) -> None:
    """faiss's ``write_index`` on a full disk: part of the file written, then its RuntimeError."""
    faiss = ann_module.faiss_module()

    def full(index, path):
        Path(path).write_bytes(b"\0" * 64)
        raise RuntimeError(
            f"Error in void faiss::FileIOWriter::operator()(...): write error in {path}: "
            "0 != 4096 (No space left on device)"
        )

    monkeypatch.setattr(faiss, "write_index", full)


def test_a_full_disk_while_saving_the_index_loses_nothing_and_search_answers(tmp_path, monkeypatch):
    store = LocalStore.create(tmp_path / "g", info(), exact_limit=50)
    reference = MemoryStore(info())
    for s in (store, reference):
        s.add(batch(300, source="a", seed=1))
    store.build_index()
    assert (tmp_path / "g" / "ann" / "ann.faiss").is_file()
    _faiss_full_disk(monkeypatch)
    for s in (store, reference):
        s.add(batch(100, source="b", seed=2))  # a tenth more: the next search saves the index
    queries = batch(6, source="q", seed=9).vectors
    for where in (None, Filter(cameras=frozenset({"c1", "c2"}))):
        assert store.count(where) > 50  # through the index, every cell probed: exact answers
        assert_same_answers(store, reference, queries, where, nprobe=10**6)
    assert not list((tmp_path / "g" / "ann").glob("*.tmp"))
    with pytest.raises(StoreError, match=r"ann\.faiss: index not saved \(disk full\)") as e:
        store.build_index()
    assert "\n" not in str(e.value) and not list((tmp_path / "g" / "ann").glob("*.tmp"))
    assert_same_answers(store, reference, queries, nprobe=10**6)
    store.close()


def test_the_index_file_is_written_while_recall_is_measured_and_dropped_if_that_fails(
    tmp_path, monkeypatch
):
    from cerberus.store.ann import AnnIndex

    store = LocalStore.create(tmp_path / "g", info(), exact_limit=50)
    store.add(batch(300, source="a", seed=1))
    folder = tmp_path / "g" / "ann"
    seen = []

    def measure(self, *args, **kwargs):
        for _ in range(500):  # the file appears while the recall is being measured
            seen.extend(folder.glob("ann.faiss.*.tmp"))
            if seen:
                break
            time.sleep(0.01)
        raise RuntimeError("measuring failed")

    monkeypatch.setattr(AnnIndex, "measure", measure)
    with pytest.raises(RuntimeError, match="measuring failed"):
        store.build_index()
    assert seen and not list(folder.iterdir())  # nothing left: no index, no temporary file
    monkeypatch.undo()
    store.build_index()  # the same gallery then builds and saves whole
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".npy") == [
        "ann.faiss", "ann.json",
    ]  # fmt: skip
    store.close()


def test_an_index_file_written_ahead_of_a_rebuild_is_not_saved_for_it(tmp_path):
    store = LocalStore.create(tmp_path / "g", info(), exact_limit=50)
    store.add(batch(300, source="a", seed=1))
    store.build_index()
    ann = store._ann
    early = ann.write_ahead()
    ann.index = ann_module.faiss_module().clone_index(ann.index)  # rebuilt meanwhile
    ann.index.reset()
    assert ann.save(early)
    assert not list((tmp_path / "g" / "ann").glob("*.tmp"))
    reopened = LocalStore.open(tmp_path / "g")
    assert reopened._ann.load() and reopened._ann.index.ntotal == 0  # the index saved is the new
    reopened.close()
    store.close()


def test_a_damaged_segment_met_by_a_build_is_one_line_and_nothing_is_indexed(tmp_path):
    store = LocalStore.create(tmp_path / "g", info(), exact_limit=50)
    for s, seed in (("a", 1), ("b", 2)):
        store.add(batch(150, source=s, seed=seed))
    store.close()
    path = sorted((tmp_path / "g" / "vectors").glob("seg-*.npy"))[-1]
    data = bytearray(path.read_bytes())
    data[-100:-90] = os.urandom(10)
    path.write_bytes(bytes(data))
    store = LocalStore.open(tmp_path / "g", exact_limit=50)
    for _ in range(2):  # the checking thread's fault is not kept: the read that meets it says so
        with pytest.raises(StoreError, match="vector segment damaged") as e:
            store.build_index()
        assert str(path) in str(e.value) and "\n" not in str(e.value)
        assert not [p for p in (tmp_path / "g" / "ann").iterdir() if "faiss" in p.name]
    store.close()


def test_a_full_disk_while_compacting_is_one_line_naming_the_file(tmp_path, monkeypatch):
    store = LocalStore.create(tmp_path / "g", info())
    for s, seed in (("a", 1), ("b", 2)):
        store.add(batch(40, source=s, seed=seed))
    store.remove(source="a")
    before = segment_files(tmp_path / "g")

    def full(fh, array):
        fh.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segments_module, "_write_array", full)
    with pytest.raises(
        StoreError, match=r"disk full while compacting \(.*seg-\w+\.npy\); the gallery is unch"
    ):
        store.compact()
    assert segment_files(tmp_path / "g") == before and store.count() == 40
    assert store.check()[0] == []


def test_a_short_write_on_a_full_disk_says_disk_full_and_names_the_file(tmp_path, monkeypatch):
    """NumPy's own short-write error carries no errno ("N requested and M written")."""
    store = LocalStore.create(tmp_path / "g", info())
    store.add(batch(20, source="a", seed=1))

    def short(fh, array):
        fh.write(b"\0" * 100)
        raise OSError(f"{array.nbytes} requested and 100 written")

    monkeypatch.setattr(segments_module, "_write_array", short)
    monkeypatch.setattr(segments_module, "_free_bytes", lambda folder: 50)
    with pytest.raises(StoreError) as e:
        store.add(batch(30, source="b", seed=2))
    assert "disk full while adding 30 items; the gallery is unchanged" in str(e.value)
    assert str(tmp_path / "g" / "vectors" / "seg-") in str(e.value)
    assert "requested and" not in str(e.value) and "\n" not in str(e.value)
    assert store.count() == 20 and len(segment_files(tmp_path / "g")) == 1


def _two_sources(folder: Path) -> tuple[MemoryStore, dict[str, str]]:
    """A gallery of sources a and b (one segment each) in ``folder``, closed; the reference
    and each source's segment file."""
    store, reference = LocalStore.create(folder, info()), MemoryStore(info())
    files = {}
    for s, seed in (("a", 1), ("b", 2)):
        for x in (store, reference):
            x.add(batch(50, source=s, seed=seed))
        files[s] = next(iter(set(segment_files(folder)) - set(files.values())))
    store.close()
    return reference, files


def test_a_damaged_segment_is_reported_and_never_searched(tmp_path):
    reference, files = _two_sources(tmp_path / "g")
    sound = LocalStore.open(tmp_path / "g")
    assert sound.check() == ([], {"segments": 2, "items": 100, "unchecked": 0})
    sound.close()
    path = tmp_path / "g" / "vectors" / files["a"]
    data = bytearray(path.read_bytes())
    data[-100:-90] = os.urandom(10)  # random bytes in the vectors, the header intact
    path.write_bytes(bytes(data))
    store = LocalStore.open(tmp_path / "g")
    queries = batch(3, source="q", seed=9).vectors
    with pytest.raises(StoreError, match="vector segment damaged") as e:
        store.search(queries, 5)
    assert str(path) in str(e.value) and "gallery check" in str(e.value)
    with pytest.raises(StoreError, match="vector segment damaged"):
        store.get(store.ids(Filter(sources=frozenset({"a"})))[:2])
    only_b = Filter(sources=frozenset({"b"}))  # the sound segment still answers
    assert_same_answers(store, reference, queries, only_b)
    faults, facts = store.check()
    assert len(faults) == 1 and str(path) in faults[0] and "damaged" in faults[0]
    assert facts == {"segments": 2, "items": 100, "unchecked": 0}
    store.close()
    unverified = LocalStore.open(tmp_path / "g", verify=False)  # the opt-out reads it as it is
    assert len(unverified.search(queries, 5)) == 3 and unverified.check()[0] == faults
    unverified.close()


def test_a_deleted_segment_file_is_named_missing(tmp_path):
    _, files = _two_sources(tmp_path / "g")
    path = tmp_path / "g" / "vectors" / files["b"]
    path.unlink()
    store = LocalStore.open(tmp_path / "g")
    with pytest.raises(StoreError, match="vector segment file missing") as e:
        store.search(batch(2, source="q", seed=9).vectors, 5)
    assert str(path) in str(e.value) and "keep changing" not in str(e.value)
    faults, _ = store.check()
    assert faults == [f"{path}: vector segment file missing (the gallery references it)"]
    store.close()


def test_an_empty_database_file_is_named_and_left_alone(tmp_path):
    LocalStore.create(tmp_path / "g", info()).close()
    db = tmp_path / "g" / local_module.DATABASE
    db.write_bytes(b"")
    with pytest.raises(StoreError, match="the gallery's database is empty") as e:
        LocalStore.open(tmp_path / "g")
    assert str(db) in str(e.value) and "no such table" not in str(e.value)
    assert db.stat().st_size == 0


READ_ONLY_SCRIPT = """
import json, sys
import numpy as np
from cerberus.store import Filter, StoreError, open_store
from tests.store.test_contract import batch
store = open_store(sys.argv[1])
q = batch(2, source="q", seed=9).vectors
out = {"count": store.count(), "ids": [h.ids.tolist() for h in store.search(q, 5)],
       "filtered": store.count(Filter(cameras=frozenset({"c1"}))), "read_only": store.read_only}
try:
    store.add(batch(5, source="z", seed=3))
except StoreError as e:
    out["add"] = str(e)
print(json.dumps(out))
"""


def _without_file_permission_override() -> None:
    """In the child, before it runs: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    capability bounding set (prctl PR_CAPBSET_DROP), so that root too obeys a file's mode bits
    (CI runs as root, for whom a read-only folder is otherwise writable)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_read_only_gallery_opens_for_reading_and_refuses_writes(tmp_path):
    """Another process, for which the folder and its files are read-only (WAL's shared-memory
    file cannot be made), opens the gallery, counts, filters and searches, and is refused an
    add in one line; nothing in the folder changes."""
    folder = tmp_path / "g"
    store, reference = LocalStore.create(folder, info()), MemoryStore(info())
    for s in (store, reference):
        s.add(batch(60, source="a", seed=1))
    store.close()
    before = sorted(p.name for p in folder.rglob("*"))
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    root = str(Path(__file__).resolve().parents[2])
    try:
        done = subprocess.run(
            [sys.executable, "-c", READ_ONLY_SCRIPT, str(folder)],
            capture_output=True, text=True, timeout=120, cwd=root,
            preexec_fn=_without_file_permission_override if os.geteuid() == 0 else None,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([SRC, root])},
        )  # fmt: skip
    finally:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    q = batch(2, source="q", seed=9).vectors
    assert out["count"] == 60 and out["read_only"] is True
    assert out["ids"] == [h.ids.tolist() for h in reference.search(q, 5)]
    assert out["filtered"] == reference.count(Filter(cameras=frozenset({"c1"})))
    assert "the gallery folder is read-only" in out["add"] and str(folder) in out["add"]
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_a_run_of_one_segment_is_read_as_a_view_of_its_map_and_anything_else_copied(tmp_path):
    """``view=True``: rows that are one run of one segment come as a read-only view of the
    memory map (no copy), any other request as a copy; the same vectors either way. The
    blocks of an exact search are views where they are runs too, and a build reads the
    items' runs as views."""
    from cerberus.store.segments import Segments, run_breaks, segment_blocks

    rng = np.random.default_rng(1)
    data = [rng.normal(size=(50, 4)).astype(np.float32) for _ in range(2)]
    for i, d in enumerate(data):
        np.save(tmp_path / f"seg-{i}.npy", d)
    segs = Segments(tmp_path, 4)
    files = ["seg-0.npy", "seg-1.npy"]
    cases = {  # (seg, row): a view?
        "run": (np.zeros(10, np.int64), np.arange(5, 15), True),
        "run of another segment": (np.ones(3, np.int64), np.arange(47, 50), True),
        "two segments": (np.repeat([0, 1], 5), np.r_[np.arange(3, 8), np.arange(8, 13)], False),
        "a gap": (np.zeros(4, np.int64), np.array([3, 4, 6, 7]), False),
        "backwards": (np.zeros(3, np.int64), np.array([7, 6, 5]), False),
        "one row twice": (np.zeros(2, np.int64), np.array([4, 4]), False),
    }
    for name, (seg, row, is_view) in cases.items():
        got = segs.gather(files, seg, row, view=True)
        want = np.stack([data[s][r] for s, r in zip(seg, row)])
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert np.shares_memory(got, segs.map(files[int(seg[0])])) == is_view, name
        assert not np.shares_memory(segs.gather(files, seg, row), segs.map(files[0])), name
        assert got.flags.writeable is not is_view, name
    seg = np.r_[np.zeros(20, np.int64), np.ones(20, np.int64)]
    row = np.r_[np.arange(20), np.arange(30, 50)]
    np.testing.assert_array_equal(run_breaks(seg, row), [20])
    np.testing.assert_array_equal(run_breaks(np.zeros(4, np.int64), np.array([0, 1, 3, 4])), [2])
    blocks = list(segment_blocks(segs, files, np.arange(40), seg, row, chunk=8))
    assert all(np.shares_memory(v, segs.map(files[int(i[0] >= 20)])) for v, i in blocks)
    whole = np.concatenate([v for v, _ in blocks])
    np.testing.assert_array_equal(whole, segs.gather(files, seg, row))


def test_a_build_copies_blocks_for_faiss_and_reads_runs_as_views_for_the_exact_answers(
    tmp_path, monkeypatch
):
    """The items of a gallery filled batch by batch lie in runs of its segments: the exact
    answers of the recall measurement read each run as a view of a segment's map
    (``Segments.gather`` with ``view``), while faiss adds copies of the blocks (it added views
    more slowly: ``benchmarks/profile_build.py``)."""
    store = LocalStore.create(tmp_path / "g", info(), exact_limit=100)
    for b in range(4):
        store.add(batch(1500, source=f"s{b}", seed=b))
    real = segments_module.Segments.gather
    got: list[tuple[int, bool, bool]] = []

    def spy(self, files, seg, row, *, view=False):
        out = real(self, files, seg, row, view=view)
        got.append((len(seg), view, not out.flags.writeable))
        return out

    monkeypatch.setattr(segments_module.Segments, "gather", spy)
    store.build_index()
    big = [(asked, is_view) for n, asked, is_view in got if n >= ann_module.MIN_RUN]
    assert sum(is_view for _, is_view in big) == 4  # the 4 runs, for the exact answers
    added = [n for n, asked, is_view in got if not asked]
    assert sum(added) >= 6000 and not any(v for n, a, v in got if not a)  # faiss: copies
    assert len(big) - 4 - len([n for n in added if n >= ann_module.MIN_RUN]) <= 2  # samples
    assert store.index_facts()["recall"]["measured_on"] == 6000
    store.close()


def test_gather_reads_rows_in_any_order_runs_or_not(tmp_path):
    """Consecutive rows are read as one slice, any other order row by row: the same vectors
    as reading each row on its own (the slow obvious way)."""
    from cerberus.store.segments import Segments

    rng = np.random.default_rng(0)
    data = [rng.normal(size=(50, 4)).astype(np.float32) for _ in range(3)]
    for i, d in enumerate(data):
        np.save(tmp_path / f"seg-{i}.npy", d)
    segs = Segments(tmp_path, 4)
    files = [f"seg-{i}.npy" for i in range(3)]
    cases = [
        (np.zeros(10, np.int64), np.arange(5, 15)),  # one run
        (np.repeat([0, 2], 5), np.r_[np.arange(3, 8), np.arange(0, 5)]),  # two runs
        (np.zeros(4, np.int64), np.array([3, 5, 4, 6])),  # a permuted run
        (rng.integers(0, 3, 40), rng.integers(0, 50, 40)),  # anything
    ]
    for seg, row in cases:
        got = segs.gather(files, seg, row)
        want = np.stack([data[s][r] for s, r in zip(seg, row)])
        np.testing.assert_array_equal(got, want)


def test_a_segments_checksum_read_through_its_map_is_the_files(tmp_path):
    """The CRC-32 checked when a segment is first mapped is read through the map the rows are
    then read from: the same as the file's bytes' (and with no map, the file's own)."""
    import zlib

    from cerberus.store.segments import file_crc32

    for rows in (0, 3, 5000):
        path = tmp_path / f"seg-{rows}.npy"
        np.save(path, np.random.default_rng(rows).normal(size=(rows, 8)).astype(np.float32))
        want = zlib.crc32(path.read_bytes())
        assert file_crc32(path) == want
        assert file_crc32(path, np.load(path, mmap_mode="r")) == want
