"""The local gallery's approximate index (issue 31): recall measured when it is built, stored and
shown; the nprobe chosen from it reaches recall@10 0.95 on random, clustered and low-rank
vectors, filtered or not; exact search and the broad-filter path agree with brute force; a bad
nprobe is one line on every backend."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from cerberus.attributes.schema import GROUPS
from cerberus.inference.scoring import embed_features
from cerberus.store import Filter, GalleryInfo, Items, MemoryStore, StoreError
from cerberus.store import ann as ann_module
from cerberus.store.local import LocalStore
from cerberus.store.npz import NpzIndex, NpzStore
from tests.store.test_contract import T0, info
from tests.store.test_npz import random_features

N, DIM, CAMERAS = 20_000, 64, 10


def vectors(kind: str, n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """``(n, dim)`` unit vectors: ``random`` (no structure), ``clustered`` (64 centres) or
    ``lowrank`` (8 directions and a little noise); one seed, one distribution."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        v = rng.standard_normal((n, dim))
    elif kind == "clustered":
        centres = rng.standard_normal((64, dim))
        v = centres[rng.integers(0, 64, n)] + 0.35 * rng.standard_normal((n, dim))
    else:
        v = rng.standard_normal((n, 8)) @ rng.standard_normal((8, dim))
        v += 0.05 * rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def items(
    v: np.ndarray, seed: int = 1, cameras: np.ndarray | None = None, source: str = "s"
) -> Items:
    rng = np.random.default_rng(seed)
    if cameras is None:
        cameras = rng.integers(0, CAMERAS, len(v))
    return Items.make(
        v,
        source=source,
        num_attributes=3,
        camera=[f"c{i}" for i in cameras],
        timestamp=T0 + rng.uniform(0, 3600, len(v)),
    )


def galleries(tmp_path, kind: str, exact_limit: int = 300):
    """A local gallery of N items of ``kind`` with its index built (searches of more than
    ``exact_limit`` candidates use it), the same items in a memory store, and 200 held-out
    queries of the same distribution."""
    v = vectors(kind, N + 200)
    store = LocalStore.create(tmp_path / kind, info(DIM), exact_limit=exact_limit)
    reference = MemoryStore(info(DIM))
    batch = items(v[:N])
    store.add(batch)
    reference.add(batch)
    store.build_index()
    return store, reference, v[N:]


def recall(got, want) -> float:
    """Mean share of each exact top-k (``want``) found (``got``)."""
    shares = [len(set(g.ids) & set(w.ids)) / max(1, len(w)) for g, w in zip(got, want)]
    return float(np.mean(shares))


def cams(*names: int, minutes: float | None = None) -> Filter:
    """Items of cameras ``c<name>`` (and of the first ``minutes`` of the hour, if given)."""
    before = None if minutes is None else T0 + 60 * minutes
    return Filter(cameras=frozenset(f"c{i}" for i in names), before=before)


NARROW = cams(3, minutes=20)
"""A thirtieth of the gallery (about 650 items): the id-bitmap path."""


# ---------------------------------------------------------------- measured and stored


def test_recall_is_measured_at_build_stored_with_the_index_and_shown(tmp_path):
    d = 12  # five parts of 12: the gallery's prototypes make description queries
    rng = np.random.default_rng(0)
    protos = {g: rng.normal(size=(4, d)).astype(np.float32) for g in GROUPS}
    gallery = GalleryInfo(dim=5 * d, fingerprint="f" * 64, schema={"name": "t"}, prototypes=protos)
    store = LocalStore.create(tmp_path / "g", gallery, exact_limit=500)
    store.add(items(vectors("clustered", 6000, dim=5 * d)))
    assert store.index_facts() is None
    store.build_index()
    facts = store.index_facts()
    r = facts["recall"]
    assert facts["items"] == 6000 and r["measured_on"] == 6000
    assert r["queries"] == {"photo": ann_module.PHOTO_QUERIES, "description": 50}
    assert r["recall_at_10"] >= 0.95 and 1 <= r["nprobe"] <= r["nlist"]
    assert r["curve"][str(r["nprobe"])] == r["recall_at_10"]
    assert all(x >= 0.95 for x in r["filtered_recall"].values())
    on_disk = json.loads((tmp_path / "g" / "ann" / "ann.json").read_text())
    assert on_disk["recall"] == r
    store.close()
    again = LocalStore.open(tmp_path / "g", exact_limit=500)
    again.search(vectors("clustered", 3, seed=5, dim=5 * d), 10)
    assert again._ann.recall == r and again._ann.default_nprobe() == r["nprobe"]
    from cerberus.cli.gallery import index_line
    from cerberus.search import Gallery

    shown = Gallery(again).index_facts()  # what summary() and `gallery info` show
    assert shown == facts
    line = index_line(shown)
    assert f"recall@10 {r['recall_at_10']:.3f} at nprobe {r['nprobe']}" in line
    assert r["description"] == {"path": "sid columns", "recall_at_10": 1.0, "reached": True}
    assert "descriptions from the SID columns: recall@10 1.000 on 50" in line
    assert "on 150 gallery crops" in line
    # measured before the kinds were told apart: one setting, said once for both
    older = {**facts, "recall": {key: v for key, v in r.items() if key != "description"}}
    assert "150 gallery crops + 50 descriptions" in index_line(older)
    assert "id bitmap" not in line and r["bitmap_below"] is None  # not timed at this size
    timed = {**facts, "recall": {**r, "bitmap_below": 0.13}}
    assert "under 13% of the gallery by the id bitmap (faster)" in index_line(timed)


def described_galleries(tmp_path, n: int, d: int):
    """A local gallery (index not built yet) and a memory store of the same ``n`` clustered
    ``5 d``-d items, with SID prototypes (4 a group) that description queries are made of."""
    rng = np.random.default_rng(0)
    protos = {g: rng.normal(size=(4, d)).astype(np.float32) for g in GROUPS}
    gallery = GalleryInfo(dim=5 * d, fingerprint="f" * 64, schema={"name": "t"}, prototypes=protos)
    store = LocalStore.create(tmp_path / "g", gallery, exact_limit=300)
    reference = MemoryStore(gallery)
    batch = items(vectors("clustered", n, dim=5 * d))
    store.add(batch)
    reference.add(batch)
    return store, reference, protos


def test_descriptions_are_answered_exactly_from_the_sid_columns(tmp_path, monkeypatch):
    """Description queries never go through the cells: the SID columns answer them, equal to
    brute force filtered or not, after items are added and removed, after the gallery is
    opened again, and when the columns were not saved (filled again from the vectors); a
    vector that is no description is searched exactly."""
    d = 12
    store, reference, protos = described_galleries(tmp_path, N, d)
    store.build_index()
    probed = []
    for name in ("search", "search_within"):
        real = getattr(ann_module.AnnIndex, name)

        def spy(self, *a, real=real, **kw):
            probed.append(1)
            return real(self, *a, **kw)

        monkeypatch.setattr(ann_module.AnnIndex, name, spy)
    fresh = ann_module.description_queries(protos, 5 * d, 30, seed=9)

    def same(s, wheres=(None, cams(*range(9)), cams(2, 5), NARROW)):
        for where in wheres:
            got = s.search(fresh, 10, where, kind="description")
            for g, w in zip(got, reference.search(fresh, 10, where)):
                np.testing.assert_array_equal(g.ids, w.ids)

    same(store)
    assert not probed  # the index's cells were never searched
    more = items(vectors("clustered", 3000, seed=4, dim=5 * d), seed=2, source="t")
    store.add(more)
    reference.add(more)
    store.remove(camera="c1")
    reference.remove(camera="c1")
    same(store, (None, cams(2, 5)))
    store.close()
    again = LocalStore.open(tmp_path / "g", exact_limit=300)
    same(again, (None,))
    assert again._ann.sids.rows == again._ann.covered and not probed
    again.close()
    meta = tmp_path / "g" / "ann" / "ann.json"  # an index saved without its columns
    facts = json.loads(meta.read_text())
    meta.write_text(json.dumps({**facts, "sid_rows": None}))
    (tmp_path / "g" / "ann" / "sid.npy").unlink()
    older = LocalStore.open(tmp_path / "g", exact_limit=300)
    same(older, (None, cams(2, 5)))
    assert older._ann.sids.rows == older._ann.covered
    odd = vectors("random", 3, seed=7, dim=5 * d)  # no description: searched exactly
    for g, w in zip(older.search(odd, 10, kind="description"), reference.search(odd, 10)):
        np.testing.assert_array_equal(g.ids, w.ids)
    assert not probed
    older.close()


def test_description_queries_are_made_like_an_attribute_query():
    d = 6
    rng = np.random.default_rng(1)
    protos = {g: rng.normal(size=(3, d)).astype(np.float32) for g in GROUPS}
    q = ann_module.description_queries(protos, 5 * d, 40, seed=3)
    assert q.shape == (40, 5 * d) and np.isfinite(q).all()
    zero_parts = (np.abs(q.reshape(40, 5, d)).sum(axis=2) == 0).sum(axis=1)
    assert set(zero_parts) <= {2, 3, 4} and len(set(zero_parts)) > 1  # 1 to 3 groups given
    # one given group: the prototype's unit vector in its slot, scaled by sqrt 5
    one = q[zero_parts == 4][0].reshape(5, d)
    g = int(np.flatnonzero(np.abs(one).sum(axis=1))[0])
    unit = protos[GROUPS[g]] / np.linalg.norm(protos[GROUPS[g]], axis=1, keepdims=True)
    sid = int(np.argmax(unit @ one[g]))
    np.testing.assert_allclose(one[g], unit[sid] * np.sqrt(5), atol=1e-5)
    assert ann_module.description_queries({"H": protos["H"]}, 5 * d, 10).shape == (0, 5 * d)
    assert ann_module.description_queries(protos, 5 * d + 1, 10).shape == (0, 5 * d + 1)


@pytest.mark.parametrize("kind", ["random", "clustered", "lowrank"])
def test_the_chosen_nprobe_reaches_the_target_filtered_or_not(tmp_path, kind):
    store, reference, queries = galleries(tmp_path, kind)
    r = store.index_facts()["recall"]
    assert r["nlist"] == store._ann.nlist and r["nprobe"] is not None
    if kind != "random":  # structure the index can use: far fewer cells than all
        assert r["nprobe"] <= r["nlist"] // 4
    # held-out queries (not in the gallery), every filter path: unfiltered, broad (9, 5 and 1
    # cameras of 10), id bitmap (1 camera for half the hour)
    for where in (None, cams(*range(9)), cams(*range(5)), cams(3), NARROW):
        assert store.count(where) > store.exact_limit
        got = store.search(queries, 10, where)
        assert recall(got, reference.search(queries, 10, where)) >= 0.95, where
        for g, q in zip(got[:20], queries):  # scores are the exact inner products
            np.testing.assert_allclose(g.scores, reference.get(g.ids).vectors @ q, atol=1e-5)
    store.close()


def test_a_filter_correlated_with_the_vectors_reaches_the_target(tmp_path):
    """Cameras that each see a few clusters: a camera filter keeps whole regions, so its
    top-10 lie far from a query of another region (the broad path must not answer those)."""
    v = vectors("clustered", N + 200)
    centre = np.argmax(v @ np.random.default_rng(0).standard_normal((DIM, 16)), axis=1)
    store = LocalStore.create(tmp_path / "g", info(DIM))
    reference = MemoryStore(info(DIM))
    batch = items(v[:N], cameras=centre[:N] % CAMERAS)
    store.add(batch)
    reference.add(batch)
    store.build_index()
    measured = store.index_facts()["recall"]["filtered_recall"]  # whole-cell filters measured
    assert {"cells 0.5", "cells 0.2", "random 0.5"} <= set(measured)
    queries = v[N:]
    for where in (cams(*range(5)), cams(*range(8)), cams(2)):
        assert store.count(where) > store.exact_limit
        got = store.search(queries, 10, where)
        assert recall(got, reference.search(queries, 10, where)) >= 0.95, where
    store.close()


def test_recall_is_measured_again_when_the_gallery_grows_by_a_tenth(tmp_path, monkeypatch):
    store, _, _ = galleries(tmp_path, "clustered")
    q = vectors("clustered", 3, seed=9)
    store.add(items(vectors("clustered", N // 20, seed=3), source="a"))  # 5%: not yet
    store.search(q, 10)
    assert store.index_facts()["recall"]["measured_on"] == N
    assert "due" not in store.index_facts()
    store.add(items(vectors("clustered", N // 16, seed=4), source="b"))  # now 11.25% more
    from cerberus.cli.gallery import index_line

    assert store.index_facts()["due"] and "due to be measured again" in index_line(
        store.index_facts()
    )  # what `gallery info` shows until it is measured
    measuring, release = threading.Event(), threading.Event()
    measure = ann_module.AnnIndex.measure

    def slow(self, *args, **kwargs):  # the measurement runs while searches go on
        measuring.set()
        assert release.wait(30), "a search waited for the measurement"
        return measure(self, *args, **kwargs)

    monkeypatch.setattr(ann_module.AnnIndex, "measure", slow)
    store.search(q, 10)  # answered with the settings measured before; measuring starts
    assert measuring.wait(10) and store._measuring.is_alive()
    assert len(store.search(q, 10, cams(*range(5)))[0]) == 10  # not waiting for it
    assert store._measuring.is_alive()
    release.set()
    store.wait_measured()
    assert store.measure_error is None
    assert store.index_facts()["recall"]["measured_on"] == N + N // 20 + N // 16
    assert "due" not in store.index_facts()
    store.close()
    again = LocalStore.open(tmp_path / "clustered", exact_limit=300)
    again.search(q, 10)  # measured and saved: nothing to measure again
    assert again._measuring is None
    again.close()


def test_where_no_setting_reaches_the_target_searches_are_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(ann_module, "TARGET", 1.01)  # unreachable: as on data with no structure
    store, reference, queries = galleries(tmp_path, "random")
    r = store.index_facts()["recall"]
    assert r["nprobe"] is None and store._ann.exact
    assert r["cover"] and all(c is None for c in r["cover"].values())
    assert store._ann.cover(0.5) is None and store._ann.cover(0.001) is None
    from cerberus.cli.gallery import index_line

    assert "searches are exact" in index_line(store.index_facts())
    for where in (None, cams(*range(9)), NARROW):
        got = store.search(queries[:20], 10, where)
        for g, w in zip(got, reference.search(queries[:20], 10, where)):
            np.testing.assert_array_equal(g.ids, w.ids)
    store.close()


# ---------------------------------------------------------------- exact, nprobe, broad


def test_exact_agrees_with_brute_force_and_nprobe_is_honoured(tmp_path):
    store, reference, queries = galleries(tmp_path, "random")
    q = queries[:30]
    for where in (None, cams(*range(9)), cams(3), NARROW):
        got = store.search(q, 10, where, exact=True)
        for g, w in zip(got, reference.search(q, 10, where)):
            np.testing.assert_array_equal(g.ids, w.ids)
            np.testing.assert_allclose(g.scores, w.scores, atol=1e-5)
    nlist = store._ann.nlist
    every = store.search(q, 10, nprobe=nlist)  # every cell: only the 8-bit codes can err
    assert recall(every, reference.search(q, 10)) >= 0.99
    one = store.search(q, 10, nprobe=1)  # one cell of random data: most neighbours missed
    assert recall(one, reference.search(q, 10)) < 0.5
    broad = cams(*range(9))
    assert recall(store.search(q, 10, broad, nprobe=1), reference.search(q, 10, broad)) < 0.5
    store.close()


def broad_answers(store) -> list:
    """What the store's broad path answers, call by call (``None``: it did not apply)."""
    calls = []
    broad = store._broad

    def spy(*args, **kwargs):
        calls.append(broad(*args, **kwargs))
        return calls[-1]

    store._broad = spy
    return calls


def test_the_broad_path_returns_the_exact_filtered_answer_when_enough_pass(tmp_path):
    store, reference, queries = galleries(tmp_path, "clustered")
    calls = broad_answers(store)
    nlist = store._ann.nlist
    for where in (cams(*range(9)), cams(*range(5))):
        got = store.search(queries, 10, where, nprobe=nlist)
        assert calls[-1] is not None  # answered by the broad path
        for g, w in zip(got, store.search(queries, 10, where, exact=True)):
            np.testing.assert_array_equal(g.ids, w.ids)
            np.testing.assert_allclose(g.scores, w.scores, atol=1e-5)
    calls.clear()
    store.search(queries[:5], 10, NARROW)  # a thirtieth of the gallery: the id-bitmap path
    assert calls == [None]
    store.close()


def test_the_broad_path_checks_only_the_candidates_against_the_filter(tmp_path, monkeypatch):
    """A broad camera filter costs its count (per camera and source) and a check of the
    candidates drawn: no mask over every item is built (1-2 ms at a million items, as much
    as the whole unfiltered search)."""
    store, reference, queries = galleries(tmp_path, "clustered")
    store.search(queries[:1], 10)  # the index and the filter columns are ready
    cols, _ = store._filter_columns()
    keep = type(cols).keep
    checked: list[int] = []

    def spy(self, where, at=None):
        checked.append(len(self.ids) if at is None else len(at))
        return keep(self, where, at)

    monkeypatch.setattr(type(cols), "keep", spy)
    where, q = cams(*range(9)), queries[:5]
    got = store.search(q, 10, where)
    assert checked and max(checked) < len(cols.ids) // 10  # 5 queries' candidates only
    assert recall(got, reference.search(q, 10, where)) >= 0.95
    checked.clear()
    store.search(queries[:5], 10, NARROW)  # a thirtieth: the id-bitmap path needs the mask
    assert checked.count(len(cols.ids)) == 1  # built once: counted and searched with it
    store.close()


@pytest.mark.parametrize("left_near, handed_on", [(0.7, False), (0.95, True)])
def test_a_query_whose_neighbourhood_keeps_the_measured_fraction_stays_on_the_broad_path(
    tmp_path, monkeypatch, left_near, handed_on
):
    """A filter keeping about half of the gallery but less near the query: under 3/4 of the
    share there, yet at or above the fraction whose setting is taken (0.2 here), the broad
    answer stands; under that fraction too, the id-bitmap path answers."""
    v = vectors("clustered", N)
    near = v @ v[0] > 0.6
    assert near.sum() > 250  # more than the 201 candidates a half draws
    rng = np.random.default_rng(3)
    left = np.where(near, left_near, 0.5)  # camera 0: what the filter leaves out
    cameras = np.where(rng.random(N) < left, 0, 1 + np.arange(N) % (CAMERAS - 1))
    store = LocalStore.create(tmp_path / "g", info(DIM))
    reference = MemoryStore(info(DIM))
    batch = items(v, cameras=cameras)
    store.add(batch)
    reference.add(batch)
    store.build_index()
    where = cams(*range(1, CAMERAS))
    assert 0.45 < store.count(where) / N < 0.55
    monkeypatch.setattr(store._ann, "broad_setting", lambda share: (0.2, store._ann.nlist))
    handed = []
    search = store._search

    def spy(q, k, where, exact, nprobe, kind="photo", broad=True):
        handed.append(broad)
        return search(q, k, where, exact, nprobe, kind, broad)

    store._search = spy
    got = store.search(v[:1], 10, where)
    assert handed == ([True, False] if handed_on else [True])
    assert recall(got, reference.search(v[:1], 10, where)) >= 0.9
    store.close()


def test_the_broad_path_hands_a_query_with_too_few_passing_hits_on(tmp_path):
    """A filter keeping most of the gallery but none of the query's neighbourhood: the
    unfiltered candidates hold too few passing items, the id-bitmap path answers it."""
    v = vectors("clustered", N)
    near = v @ v[0] > 0.6
    store = LocalStore.create(tmp_path / "g", info(DIM))
    reference = MemoryStore(info(DIM))
    batch = items(v, cameras=np.where(near, 0, 1 + np.arange(N) % (CAMERAS - 1)))
    store.add(batch)
    reference.add(batch)
    store.build_index()
    where = cams(*range(1, CAMERAS))
    assert store.count(where) > 0.8 * N
    handed = []
    search = store._search

    def spy(q, k, where, exact, nprobe, kind="photo", broad=True):
        handed.append((len(q), broad))
        return search(q, k, where, exact, nprobe, kind, broad)

    store._search = spy
    ranked = []
    rerank = store._rerank

    def spy_rerank(q, k, found, located=None):
        ranked.append(len(q))
        return rerank(q, k, found, located)

    store._rerank = spy_rerank
    queries = v[[0, int(np.argmin(v @ v[0]))]]  # one query in the left-out region, one far
    got = store.search(queries, 10, where)
    assert handed == [(2, True), (1, False)]  # the broad path handed the first query on
    assert sorted(ranked) == [1, 1]  # each query re-ranked once: the one handed on, there
    want = reference.search(queries, 10, where)
    assert recall(got, want) >= 0.9 and [len(h) for h in got] == [10, 10]
    store.close()


@pytest.mark.parametrize("bad", [0, -3, 1.5, "4", True])
def test_a_bad_nprobe_is_one_line_on_every_backend(tmp_path, bad):
    v = vectors("clustered", 300)
    local = LocalStore.create(tmp_path / "g", info(DIM))
    memory = MemoryStore(info(DIM))
    for s in (local, memory):
        s.add(items(v))
    fs = random_features(300)
    npz = NpzStore(NpzIndex.build(fs, kind="ivf-sq8", nlist=4, recall_queries=20))
    for s, q in ((local, v[:2]), (memory, v[:2]), (npz, embed_features(fs.features[:2]))):
        with pytest.raises(StoreError, match="nprobe") as e:
            s.search(q, 5, nprobe=bad)
        assert "\n" not in str(e.value) and "at least 1" in str(e.value)
        assert len(s.search(q, 5, nprobe=3.0)[0]) == 5  # a whole float is a whole number
    local.close()


def test_an_npz_index_takes_exact_and_nprobe():
    fs = random_features(3000, seed=2)
    q = embed_features(random_features(30, seed=3).features)
    flat = NpzStore(NpzIndex.build(fs, kind="flat"))
    ivf = NpzStore(NpzIndex.build(fs, kind="ivf", nlist=32, nprobe=1, recall_queries=20))
    want = flat.search(q, 10)
    for g, w in zip(ivf.search(q, 10, exact=True), want):
        np.testing.assert_array_equal(g.ids, w.ids)
    assert recall(ivf.search(q, 10), want) < 0.5  # one cell of random vectors
    assert recall(ivf.search(q, 10, nprobe=32), want) == 1.0  # every cell, flat codes
    assert recall(flat.search(q, 10, nprobe=5), want) == 1.0  # a flat index has no cells
    from cerberus.cli.gallery import index_line

    assert flat.index_facts() is None
    facts = ivf.index_facts()
    assert facts["kind"] == "ivf" and facts["nlist"] == 32 and facts["nprobe"] == 1
    assert f"recall@10 {facts['recall_at_10']:.3f}" in index_line(facts)
    hnsw = NpzStore(NpzIndex.build(fs, kind="hnsw", recall_queries=20))
    with pytest.raises(StoreError, match="hnsw index has no cells") as e:
        hnsw.search(q, 10, nprobe=4)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- the measurement's fast parts


def test_the_pruned_ground_truth_equals_brute_force_ties_to_the_smaller_id():
    from cerberus.store.topk import top_k_merge

    v = vectors("clustered", 5000, seed=4)
    v[4000:4100] = v[100]  # ties: the smaller id wins
    ids = np.arange(5000, dtype=np.int64) * 3 + 7
    rng = np.random.default_rng(2)
    q = np.concatenate([vectors("clustered", 30, seed=6), v[[100, 7]]])
    masks = {("m", f): rng.random(5000) < f for f in (0.6, 0.1, 0.02, 0.001)}
    got = ann_module._truths(q, ids, lambda p: v[p], masks, 11, chunk=700)
    for key in (None, *masks):
        keep = np.ones(5000, bool) if key is None else masks[key]
        _, want = top_k_merge(None, None, q @ v[keep].T, ids[keep], 11)
        if want.shape[1] < 11:  # fewer than k pass: -1 padding
            want = np.pad(want, ((0, 0), (0, 11 - want.shape[1])), constant_values=-1)
        np.testing.assert_array_equal(got[key], want, err_msg=str(key))


def test_the_ground_truth_floor_allows_for_rounding():
    # the floor comes from the sample's scores, an item's score from its block's matmul: they
    # can differ in their last bits (kernels chosen by shape and alignment), as here where the
    # sample (all 5000 items, gathered in one call) scores a few ulps high
    v = vectors("clustered", 5000, seed=4)
    ids = np.arange(5000, dtype=np.int64)
    q = vectors("clustered", 40, seed=6)

    def gather(p):
        out = v[p]
        return out * np.float32(1 + 1e-6) if len(p) == len(v) else out

    got = ann_module._truths(q, ids, gather, {}, 11, chunk=700)[None]
    want = np.argsort(-(q @ v.T), axis=1, kind="stable")[:, :11]
    np.testing.assert_array_equal(got, want)


def built_index(kind: str = "clustered", n: int = 6000):
    """An AnnIndex over ``n`` vectors of ``kind`` (ids = positions) and the vectors."""
    import tempfile
    from pathlib import Path

    v = vectors(kind, n, seed=8)
    ann = ann_module.AnnIndex(Path(tempfile.gettempdir()), DIM)
    ann.build(np.arange(n, dtype=np.int64), lambda p: v[p])
    return ann, v


def test_the_probes_needed_bound_equals_a_search_that_keeps_every_probed_item():
    ann, v = built_index()
    q = vectors("clustered", 40, seed=9)
    truth = np.argsort(-(q @ v.T), axis=1)[:, :10]
    truth[3, 5:] = -1  # a query with fewer neighbours
    needed = ann.probes_needed(ann.cell_ranks(q), truth)
    valid = truth >= 0
    assert needed[~valid].max() == 0 and needed[valid].min() >= 1
    for p in (1, 2, 5, ann.nlist // 2, ann.nlist):
        found = ann.search(q, len(v), p)  # every item of the probed cells comes back
        real = (truth[:, :, None] == found[:, None, :]).any(axis=2) & valid
        np.testing.assert_array_equal(real, (needed <= p) & valid, err_msg=f"nprobe {p}")


def test_the_items_before_bound_equals_the_id_bitmap_search():
    ann, v = built_index()
    ann.recall = {"nprobe": 3}  # the base nprobe search_within scales the cover by
    q = vectors("clustered", 40, seed=10)
    rng = np.random.default_rng(3)
    passing = np.flatnonzero(rng.random(len(v)) < 0.1)
    bits = np.zeros(len(v), bool)
    bits[passing] = True
    bitmap = np.packbits(bits, bitorder="little")
    scores = np.where(bits, q @ v.T, -np.inf)
    truth = np.argsort(-scores, axis=1)[:, :10]
    before = ann.items_before(ann.cell_ranks(q), truth, passing)
    scanned = 3 / ann.nlist * len(v)
    centroids = ann.index.quantizer.reconstruct_n(0, ann.nlist)
    cell_of = ann.lists_of()
    for cover in (0.05, 0.2, 1, 4):
        target = max(10, min(len(passing), cover * scanned))
        reached = np.zeros_like(before, bool)
        for r in range(len(q)):  # the slow obvious walk: nearest cells first, until enough
            held, chosen = 0, set()
            for cell in np.argsort(-(centroids @ q[r]), kind="stable"):
                in_cell = int(bits[cell_of == cell].sum())
                if in_cell and held < target:
                    chosen.add(int(cell))
                held += in_cell
            reached[r] = [cell_of[t] in chosen for t in truth[r]]
        np.testing.assert_array_equal(before < target, reached, err_msg=f"cover {cover}")
        found = ann.search_within(q, 10, bitmap, passing, cover=cover)
        real = (truth[:, :, None] == found[:, None, :]).any(axis=2)
        assert not (real & ~reached).any()  # a search finds nothing the bound misses
        assert real.mean() >= reached.mean() - 0.02  # and little less (8-bit codes)
    assert (before >= 0).all()


def test_measuring_settles_on_settings_a_real_search_confirms(tmp_path, monkeypatch):
    """The bound read off the cells is checked by real searches: when 8-bit codes or too few
    candidates lose neighbours the bound counts as found, a larger setting is taken."""
    store, _, _ = galleries(tmp_path, "lowrank")
    first = store.index_facts()["recall"]
    real_search = ann_module.AnnIndex.search

    def lossy(self, queries, kk, nprobe=None):  # loses a neighbour in 5 unless p is large
        found = real_search(self, queries, kk, nprobe)
        if (nprobe or 0) < 2 * first["nprobe"]:
            found[:, ::5] = -1
        return found

    monkeypatch.setattr(ann_module.AnnIndex, "search", lossy)
    store._ann.recall = None
    store._measure(store._ann)
    assert store._ann.recall["nprobe"] >= 2 * first["nprobe"]
    store.close()


def test_a_setting_whose_first_checks_lose_nothing_is_not_searched_further(tmp_path, monkeypatch):
    """Each setting is first checked on FIRST_VERIFIED queries; where those find every
    neighbour the bound counts, the loss is taken as the rule of three's 3 / m and the rest
    are not searched; where they lose one, the rest are (the bound less the mean loss)."""
    store, reference, queries = galleries(tmp_path, "clustered")
    sizes: list[int] = []
    real_within = ann_module.AnnIndex.search_within

    def counted(self, q, *args, **kwargs):
        sizes.append(len(q))
        return real_within(self, q, *args, **kwargs)

    monkeypatch.setattr(ann_module.AnnIndex, "search_within", counted)
    store._ann.recall = None
    store._measure(store._ann)
    quick = store._ann.recall
    first, rest = ann_module.FIRST_VERIFIED, ann_module.VERIFY_QUERIES - ann_module.FIRST_VERIFIED
    assert set(sizes) <= {first, rest} and sizes.count(first) > sizes.count(rest)
    # a check stopped at the first part counts 3 / m lost, so no estimate is the bound's 1.0
    assert max(quick["filtered_recall"].values()) < 1.0
    for where in (None, NARROW, cams(1, 2, 3, 4, 5, 6, 7, 8)):  # the settings still reach it
        want = reference.search(queries, 10, where)
        assert recall(store.search(queries, 10, where), want) >= 0.95

    def lossy(self, q, kk, *args, **kwargs):  # the first checks lose a neighbour in each
        found = real_within(self, q, kk, *args, **kwargs)
        sizes.append(len(q))
        if len(q) == first:
            found[:, 0] = -1
        return found

    monkeypatch.setattr(ann_module.AnnIndex, "search_within", lossy)
    sizes.clear()
    store._ann.recall = None
    store._measure(store._ann)
    assert sizes.count(rest) == sizes.count(first)  # every first check went on to the rest
    assert quick["filtered_recall"] != store._ann.recall["filtered_recall"], quick
    monkeypatch.setattr(ann_module.AnnIndex, "search_within", counted)
    monkeypatch.setattr(ann_module, "FIRST_VERIFIED", 1)  # 3 / m of 10: never enough alone
    sizes.clear()
    store._ann.recall = None
    store._measure(store._ann)
    assert sizes and sizes.count(1) == sizes.count(ann_module.VERIFY_QUERIES - 1)
    store.close()


def test_a_tracks_filter_left_to_sql_takes_the_same_paths(tmp_path):
    """A filter on tracks is evaluated by SQL, not the filter columns: broad and narrow ones
    still reach the target through the index paths."""
    store, reference, queries = galleries(tmp_path, "clustered")
    track = int(reference.get(reference.ids()[:1]).track[0])  # every item: source "s", one track
    seen = []
    select = store._select

    def spy(where):
        got = select(where)
        seen.append(got.cols is None)
        return got

    store._select = spy
    for where in (
        Filter(tracks=frozenset({("s", track)})),
        Filter(tracks=frozenset({("s", track)}), cameras=frozenset({"c3"}), before=T0 + 1200),
    ):
        assert store.count(where) > store.exact_limit
        got = store.search(queries, 10, where)
        assert recall(got, reference.search(queries, 10, where)) >= 0.95, where
    assert seen and all(seen)
    store.close()


def test_sid_columns_that_fall_short_at_the_check_leave_descriptions_exact(tmp_path, monkeypatch):
    """If the columns' top-10 misses the exact answers on the recall sample (a damaged cache),
    the measurement says so and description searches are exact."""
    from cerberus.store.sidcolumns import SidColumns

    d = 12
    store, reference, protos = described_galleries(tmp_path, 6000, d)
    top = SidColumns.top

    def damaged(self, q, kk, passing):  # as columns of other items would answer
        found = top(self, q, kk, passing)
        return np.where(found >= 0, (found + 1) % self.rows, -1)

    monkeypatch.setattr(SidColumns, "top", damaged)
    store.build_index()
    said = store.index_facts()["recall"]["description"]
    assert said["path"] == "sid columns" and said["recall_at_10"] < 0.5 and not said["reached"]
    assert not store._ann.sids_trusted()
    monkeypatch.setattr(SidColumns, "top", lambda *a: pytest.fail("columns used"))
    fresh = ann_module.description_queries(protos, 5 * d, 10, seed=9)
    for g, w in zip(store.search(fresh, 10, kind="description"), reference.search(fresh, 10)):
        np.testing.assert_array_equal(g.ids, w.ids)
    from cerberus.cli.gallery import index_line

    assert "descriptions searched exactly" in index_line(store.index_facts())
    store.close()


def test_the_sid_columns_are_read_only_for_a_description_and_written_only_when_changed(tmp_path):
    """A process answering photo queries never reads sid.npy, and saving its index (after
    items were added) leaves the file as it was; the first description query reads it and
    fills the columns of the items added since, from their vectors."""
    d = 12
    store, reference, protos = described_galleries(tmp_path, N, d)
    store.build_index()
    store.close()
    sid = tmp_path / "g" / "ann" / "sid.npy"
    written = sid.stat().st_mtime_ns
    again = LocalStore.open(tmp_path / "g", exact_limit=300)
    more = items(vectors("clustered", 3000, seed=4, dim=5 * d), seed=2, source="t")
    again.add(more)
    reference.add(more)
    photos = vectors("clustered", 5, seed=3, dim=5 * d)
    again.search(photos, 10)  # extends the index to the new items
    assert not again._ann._sid_read
    assert again._ann.save() and sid.stat().st_mtime_ns == written
    fresh = ann_module.description_queries(protos, 5 * d, 20, seed=9)
    got = again.search(fresh, 10, kind="description")
    assert again._ann._sid_read and again._ann.sids.rows == again._ann.covered
    for g, w in zip(got, reference.search(fresh, 10)):
        np.testing.assert_array_equal(g.ids, w.ids)
    assert again._ann.save() and sid.stat().st_mtime_ns != written  # now whole: written
    again.close()


def test_the_id_bitmap_cover_is_the_larger_of_the_fractions_on_either_side(tmp_path):
    ann = ann_module.AnnIndex(tmp_path, DIM)
    assert ann.cover(0.3) == float("inf")  # never measured: every cell holding a passing item
    ann.recall = {"cover": {"0.5": 16, "0.2": 4, "0.05": None, "0.01": 2}}
    assert ann.cover(0.9) == 16 and ann.cover(0.5) == 16  # above the largest: the largest's
    assert ann.cover(0.3) == 16  # between 0.5 and 0.2
    assert ann.cover(0.2) == 4  # measured there
    assert ann.cover(0.1) is None  # 0.05 fell short: exact
    assert ann.cover(0.02) is None
    assert ann.cover(0.01) == 2 and ann.cover(0.001) == 2  # below the smallest: the smallest's
    ann.recall = {"cover": {}}  # no fraction measured (a small gallery)
    assert ann.cover(0.3) == float("inf")
    ann.recall = {"cover": 8.0}  # an index measured with one factor for every fraction
    assert ann.cover(0.01) == 8.0
    ann.recall = {"cover": None}
    assert ann.cover(0.5) is None


def test_each_filter_fraction_gets_the_cover_its_filters_reach_the_target_with(tmp_path):
    store, reference, queries = galleries(tmp_path, "clustered")
    r = store.index_facts()["recall"]
    assert set(r["cover"]) == {str(f) for f in ann_module.FILTER_FRACTIONS if f * N > 300}
    for f, c in r["cover"].items():
        assert c is not None
        for kind in ("random", "cells"):
            assert r["filtered_recall"][f"{kind} {f}"] >= ann_module.TARGET
    from cerberus.cli.gallery import index_line

    line = index_line(store.index_facts())
    assert all(f"x{c:g} at {float(f):.3g}" in line for f, c in r["cover"].items()), line
    store.close()


def test_a_single_query_shares_its_cells_among_the_threads_and_finds_the_same(monkeypatch):
    """One query (fewer than the threads) is searched with faiss ``parallel_mode`` 1, a batch
    with mode 0; a query alone finds what it finds in a batch, unfiltered or through a bitmap."""
    faiss = ann_module.faiss_module()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        ann, v = built_index()
        modes = []
        run = ann.index.search

        def spy(*a, **kw):
            modes.append(ann.index.parallel_mode)
            return run(*a, **kw)

        monkeypatch.setattr(ann.index, "search", spy)
        q = vectors("clustered", 12, seed=11)
        batch = ann.search(q, 50, 4)
        alone = np.concatenate([ann.search(q[i : i + 1], 50, 4) for i in range(len(q))])
        assert modes == [0] + [1] * len(q)
        ann.search(q[:2], 50, 4)  # as many queries as threads: one each
        assert modes[-1] == 0
        np.testing.assert_array_equal(np.sort(alone, axis=1), np.sort(batch, axis=1))
        passing = np.flatnonzero(np.random.default_rng(4).random(len(v)) < 0.2)
        bits = np.zeros(len(v), bool)
        bits[passing] = True
        bitmap = np.packbits(bits, bitorder="little")
        ann.recall = {"nprobe": 3}
        batch = ann.search_within(q, 20, bitmap, passing, cover=2)
        assert ann.index.parallel_mode == 0
        alone = [ann.search_within(q[i : i + 1], 20, bitmap, passing, cover=2) for i in range(12)]
        assert ann.index.parallel_mode == 1
        alone = np.sort(np.concatenate(alone), axis=1)
        np.testing.assert_array_equal(alone, np.sort(batch, axis=1))
    finally:
        faiss.omp_set_num_threads(threads)


def test_measuring_searches_once_per_nprobe(tmp_path, monkeypatch):
    """The unfiltered and every broad setting at one nprobe read their candidates off one
    real search, of the most candidates any of them draws: a search's first ``kk`` candidates
    are those a search of ``kk`` draws."""
    store, _, _ = galleries(tmp_path, "random")
    first = store.index_facts()["recall"]
    calls: list[tuple[int, int, int]] = []
    real_search = ann_module.AnnIndex.search

    def counted(self, queries, kk, nprobe=None):
        calls.append((nprobe, len(queries), kk))
        return real_search(self, queries, kk, nprobe)

    monkeypatch.setattr(ann_module.AnnIndex, "search", counted)
    store._ann.recall = None
    store._measure(store._ann)
    again = store._ann.recall
    pairs = [(p, nq) for p, nq, _ in calls]  # once per nprobe and part of the checking queries
    assert len(pairs) == len(set(pairs)) and len({kk for *_, kk in calls}) == 1
    probes = sorted({p for p, _ in pairs})
    assert len(probes) < 1 + len(again["broad"])  # settings share a search (random data)
    for p in probes:  # the first part first, the rest only after it
        parts = [nq for q, nq in pairs if q == p]
        assert parts[0] == ann_module.FIRST_VERIFIED and len(parts) <= 2
    for key in ("nprobe", "broad", "cover", "recall_at_10", "broad_recall"):
        assert again[key] == first[key], key
    q = vectors("random", 30, seed=12)
    for p in (1, 7, again["nprobe"]):
        most = real_search(store._ann, q, 2001, p)
        for kk in (11, 101, 313):
            np.testing.assert_array_equal(most[:, :kk], real_search(store._ann, q, kk, p))
    store.close()


@pytest.mark.parametrize("seed", range(6))
def test_spans_cover_every_position_once_and_end_at_breaks_that_leave_a_run(seed):
    """The blocks an add or the exact answers read: in order, none over ``chunk``, every
    position once; a block ends at the first break inside it when that leaves it at least
    MIN_RUN rows (so it is one run of a segment: a view), else it is a whole chunk."""
    rng = np.random.default_rng(seed)
    n, chunk = int(rng.integers(1, 40_000)), int(rng.choice([500, 4096, 32768]))
    every = [int(rng.integers(100, 9000)), 1][seed % 2]  # segment-like runs, or fragments
    breaks = np.unique(np.r_[np.arange(every, n, every), rng.integers(1, n + 1, 3)])
    got = list(ann_module.spans(n, chunk, breaks))
    want, start = [], 0  # the slow obvious walk
    while start < n:
        stop = min(n, start + chunk)
        inside = [b for b in breaks.tolist() if start < b < stop]
        if inside and inside[0] - start >= min(ann_module.MIN_RUN, chunk):
            stop = inside[0]
        want.append((start, stop))
        start = stop
    assert got == want
    assert [a for a, _ in got][1:] == [b for _, b in got][:-1] and got[-1][1] == n
    assert list(ann_module.spans(n, chunk)) == [(a, min(n, a + chunk)) for a in range(0, n, chunk)]


def test_filters_take_the_id_bitmap_path_below_the_share_where_it_was_timed_faster(
    tmp_path, monkeypatch
):
    """A large gallery's measurement times both filtered paths, one query at a time, from the
    smallest broad fraction up (on as many queries again where they come out close), and
    stops at the first where the broad path is not slower (by FASTER): filters keeping less
    than that take the id-bitmap path, the others the broad path as measured, and both
    answer as brute force does. No gallery of this size is large enough to be timed unless
    TIMED_PATHS_FROM says so."""
    timed = []

    within = []

    def fake(fraction, paths, queries):  # the bitmap is faster below a quarter
        timed.append(fraction)
        assert set(paths) == {"broad", "bitmap"} and len(queries) == ann_module.TIMED_QUERIES
        for run in paths.values():  # each path answers the query
            assert run(queries[:1]).shape[0] == 1
        real = store._ann.search_within  # the broad path's queries handed on: both searches
        store._ann.search_within = lambda *a, **kw: within.append(1) or real(*a, **kw)
        with monkeypatch.context() as m:
            m.setattr(ann_module, "handed_on", lambda got, *a: np.ones(len(got), bool))
            paths["broad"](queries[:1])
        assert within == [1]
        within.clear()
        del store._ann.search_within
        return {"broad": 10.0, "bitmap": 5.0 if fraction < 0.25 else 9.0}

    monkeypatch.setattr(ann_module, "_timed_paths", fake)
    store, reference, queries = galleries(tmp_path, "clustered")
    assert timed == [] and store.index_facts()["recall"]["bitmap_below"] is None  # 20k: untimed
    monkeypatch.setattr(ann_module, "TIMED_PATHS_FROM", 0)
    store._ann.recall = None
    store._measure(store._ann)
    store._ann.save()
    r = store.index_facts()["recall"]
    fractions = sorted(float(f) for f, p in r["broad"].items() if p is not None)
    # up to the first not faster; the unsure one (9 against 10: near FASTER) timed twice
    assert timed == [f for f in fractions if f <= 0.32] + [0.32]
    assert r["bitmap_below"] == 0.32
    calls = broad_answers(store)
    for where, by_broad in ((cams(*range(5)), True), (cams(*range(2)), False)):  # 1/2, 1/5
        calls.clear()
        got = store.search(queries[:40], 10, where)
        assert (calls[-1] is not None) == by_broad
        assert recall(got, reference.search(queries[:40], 10, where)) >= 0.9
    assert store._ann.broad_setting(0.3) is None and store._ann.broad_setting(0.5) is not None
    store.close()


def test_where_the_broad_path_is_not_slower_no_share_leaves_it(tmp_path, monkeypatch):
    def fake(fraction, paths, queries):
        return {"broad": 4.0, "bitmap": 4.0 * (1 + ann_module.FASTER) / 2}  # not by FASTER

    monkeypatch.setattr(ann_module, "_timed_paths", fake)
    monkeypatch.setattr(ann_module, "TIMED_PATHS_FROM", 0)
    store, _, _ = galleries(tmp_path, "clustered")
    assert store.index_facts()["recall"]["bitmap_below"] is None
    assert store._ann.broad_setting(0.06) is not None
    store.close()


def test_timing_the_paths_takes_turns_and_gives_each_its_mean(monkeypatch):
    order = []

    def path(name):
        def run(q):
            order.append(name)
            return q

        return run

    costs = ann_module._timed_paths(0.1, {"a": path("a"), "b": path("b")}, np.zeros((5, 3)))
    assert order == ["a", "b"] * 5 and set(costs) == {"a", "b"}
    assert all(c >= 0 for c in costs.values())
    # a takes 1, 1 and 10 ms, b 1 ms each: the mean (4 ms), not the median (1 ms)
    stamps = iter([0, 1, 1, 2, 2, 3, 3, 4, 4, 14, 14, 15])

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            return next(stamps) / 1000.0

    monkeypatch.setattr(ann_module, "time", Clock)
    costs = ann_module._timed_paths(0.1, {"a": lambda q: q, "b": lambda q: q}, np.zeros((3, 3)))
    assert costs == pytest.approx({"a": 4.0, "b": 1.0})


def test_a_query_is_handed_on_when_too_few_or_too_small_a_share_of_its_candidates_pass():
    drawn = np.array([1001, 1001, 1001, 1001, 8])
    got = np.array([9, 60, 80, 200, 8])  # under k; under 3/4 of a tenth; at; well above; all
    np.testing.assert_array_equal(
        ann_module.handed_on(got, drawn, 10, 0.1, 0.08), [True, True, False, False, True]
    )  # the last: 8 < k = 10 pass (a query whose cells held few candidates)
    # measured at a smaller fraction than 3/4 of the share: that fraction is the bar
    assert not ann_module.handed_on(np.array([60]), np.array([1001]), 10, 0.5, 0.05).any()
    assert ann_module.handed_on(np.array([40]), np.array([1001]), 10, 0.5, 0.05).all()


def test_an_id_bitmap_holds_exactly_its_ids_in_faiss_bit_order():
    rng = np.random.default_rng(4)
    ids = np.unique(rng.integers(0, 1000, 300))
    bitmap = ann_module.id_bitmap(ids)
    assert len(bitmap) == (int(ids.max()) + 8) // 8
    for i in range(int(ids.max()) + 1):  # little-endian: id i is bit i % 8 of byte i // 8
        assert bool(bitmap[i // 8] >> (i % 8) & 1) == (i in set(ids.tolist()))
    asked = np.array([[-1, 0, int(ids[0]), int(ids[-1]), int(ids[-1]) + 9, 10**6]])
    want = [[False, 0 in ids, True, True, False, False]]
    np.testing.assert_array_equal(ann_module.in_bitmap(bitmap, asked), want)
    assert len(ann_module.id_bitmap(np.zeros(0, np.int64))) == 0
