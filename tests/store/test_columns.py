"""The local gallery's filter columns in memory (issue 31): a filter evaluated on them passes
exactly the items SQL and the reference rule (:meth:`Filter.matches`) pass, through appends,
removals, replacements and compactions by this or another process."""

from __future__ import annotations

import sqlite3

import numpy as np

from cerberus.store import Filter, Items, MemoryStore
from cerberus.store.columns import Columns, state
from cerberus.store.local import DATABASE, LocalStore
from cerberus.store.rows import compile_filter
from tests.store.test_contract import T0, info

DIM = 8


def batch(n: int, source: str, seed: int) -> Items:
    rng = np.random.default_rng(seed)
    ts = T0 + rng.uniform(0, 3600, n)
    ts[rng.random(n) < 0.1] = np.nan  # items without a time never pass a time condition
    ts[:3] = T0 + 1800.0  # on the boundary of a window
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return Items.make(
        v / np.linalg.norm(v, axis=1, keepdims=True),
        source=source,
        num_attributes=2,
        camera=[["door", "hall", "caf\u00e9", "a,b", "x;y"][i] for i in rng.integers(0, 5, n)],
        timestamp=ts,
    )


FILTERS = [
    None,
    Filter(cameras=frozenset({"door"})),
    Filter(cameras=frozenset({"caf\u00e9", "x;y", "nowhere"})),
    Filter(cameras=frozenset({"a,b"}), after=T0 + 1800.0),
    Filter(before=T0 + 1800.0),
    Filter(sources=frozenset({"s1", "s3"}), after=T0 + 600, before=T0 + 2400),
    Filter(sources=frozenset({"gone"})),
    Filter(cameras=frozenset({"door", "hall", "x;y"}), sources=frozenset({"s2", "s3"})),
    Filter(cameras=frozenset(), sources=frozenset({"s1"})),
]


def sql_ids(store: LocalStore, where: Filter | None) -> np.ndarray:
    return store._snapshot_where(*compile_filter(where))[0]


def check(store: LocalStore, reference: MemoryStore) -> None:
    got = store._filter_columns()
    assert got is not None
    cols, files = got
    for where in FILTERS:
        ids, seg, row, names = store._snapshot(where)
        want = reference.ids(where)
        np.testing.assert_array_equal(ids, want, err_msg=str(where))
        np.testing.assert_array_equal(np.sort(sql_ids(store, where)), want)
        assert cols.count(where) == len(want) == int(cols.keep(where).sum()), str(where)
        vecs = store._segments.gather(names, seg, row)  # the vectors are where they say
        np.testing.assert_array_equal(vecs, reference.get(ids).vectors.astype(np.float32))
    wanted = np.array([5, 3, 3, 10**9, -1, 40], np.int64)
    ids, *_ = store._lookup(wanted, FILTERS[1])
    held = set(reference.ids(FILTERS[1]).tolist())
    assert ids.tolist() == sorted({int(i) for i in wanted if int(i) in held})


def test_filters_on_the_columns_agree_with_sql_and_the_reference_through_changes(tmp_path):
    store = LocalStore.create(tmp_path / "g", info(DIM))
    reference = MemoryStore(info(DIM))
    for x in (store, reference):
        x.add(batch(500, "s1", 1))
    check(store, reference)
    first = store._columns
    for x in (store, reference):
        x.add(batch(300, "s2", 2))
    check(store, reference)
    assert store._columns is not first and len(store._columns.ids) == 800  # appended
    for x in (store, reference):
        x.remove(camera="door")
    check(store, reference)
    for x in (store, reference):
        x.add(batch(200, "s1", 3), replace=True)
        x.add(batch(100, "s3", 4))
    check(store, reference)
    store.compact()
    check(store, reference)
    # another process (here: another connection) removes and adds more: not an append
    other = LocalStore.open(tmp_path / "g")
    for x in (other, reference):
        x.remove(source="s3")
        x.add(batch(400, "s4", 5))
    check(store, reference)
    other.close()
    store.close()


def test_an_append_reads_only_the_new_items_and_a_removal_reads_all(tmp_path, monkeypatch):
    store = LocalStore.create(tmp_path / "g", info(DIM))
    store.add(batch(100, "s1", 1))
    store._filter_columns()
    reads = []
    real = Columns.read.__func__

    def spy(cls, conn, since=None):
        reads.append(since is not None)
        return real(cls, conn, since)

    monkeypatch.setattr(Columns, "read", classmethod(spy))
    store.add(batch(10, "s2", 2))
    store._filter_columns()
    store.remove(source="s2")
    store._filter_columns()
    store._filter_columns()  # unchanged: nothing read
    assert reads == [True, False]
    conn = sqlite3.connect(tmp_path / "g" / DATABASE)
    assert state(conn) == (1, 110, 100)
    conn.close()
    store.close()
