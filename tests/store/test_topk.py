"""The one exact top-k (method §9.1) against the slow obvious answer: float64 scores, sorted by
score then id."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.store import topk
from cerberus.store.topk import SAMPLED_TOP, array_blocks, exact_top_k, top_indices


def slow_top_k(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int):
    scores = np.asarray(queries, np.float64) @ np.asarray(vectors, np.float64).T
    out = []
    for s in scores:
        order = sorted(range(len(ids)), key=lambda j: (-s[j], ids[j]))[:k]
        out.append((ids[order], s[order]))
    return out


@pytest.mark.parametrize("k", [1, 5, 40, 200])
@pytest.mark.parametrize("chunk", [7, 1000])
def test_exact_top_k_is_the_slow_obvious_one_with_ties_to_the_smaller_id(k, chunk):
    rng = np.random.default_rng(k + chunk)
    vectors = rng.integers(-2, 3, size=(150, 6)).astype(np.float32)  # many tied scores
    ids = rng.permutation(1000)[:150].astype(np.int64)
    queries = rng.integers(-2, 3, size=(6, 6)).astype(np.float32)
    got = exact_top_k(queries, array_blocks(vectors, ids, chunk=chunk), k)
    for hits, (want_ids, want_scores) in zip(got, slow_top_k(queries, vectors, ids, k)):
        np.testing.assert_array_equal(hits.ids, want_ids)
        np.testing.assert_allclose(hits.scores, want_scores, atol=1e-5)
        assert hits.ids.dtype == np.int64 and hits.scores.dtype == np.float32


@pytest.mark.parametrize("k", [1, 5, 40])
@pytest.mark.parametrize("nq", [1, 3, 9])  # up to FEW_QUERIES by einsum, more by BLAS
def test_exact_top_k_without_ties_is_the_slow_obvious_one(k, nq):
    # distinct scores: the partition path (ties take the sorting path)
    rng = np.random.default_rng([k, nq])
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    ids = rng.permutation(5000)[:300].astype(np.int64)
    queries = rng.standard_normal((nq, 8)).astype(np.float32)
    got = exact_top_k(queries, array_blocks(vectors, ids, chunk=64), k)
    assert len(got) == nq
    for hits, (want_ids, want_scores) in zip(got, slow_top_k(queries, vectors, ids, k)):
        np.testing.assert_array_equal(hits.ids, want_ids)
        np.testing.assert_allclose(hits.scores, want_scores, rtol=1e-5, atol=1e-5)


def test_scores_of_few_and_many_queries_are_the_products():
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((50, 7)).astype(np.float32)
    for nq in (1, topk.FEW_QUERIES, topk.FEW_QUERIES + 1):
        q = rng.standard_normal((nq, 7)).astype(np.float32)
        got = topk.scores_of(q, vectors)
        assert got.shape == (nq, 50) and got.dtype == np.float32
        np.testing.assert_allclose(got, q.astype(np.float64) @ vectors.T.astype(np.float64),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip


def test_exact_top_k_of_nothing_is_empty():
    q = np.ones((2, 3), np.float32)
    assert [len(h) for h in exact_top_k(q, [], 5)] == [0, 0]
    for hits in exact_top_k(q, [], 5):
        assert hits.ids.shape == hits.scores.shape == (0,)
        assert hits.ids.dtype == np.int64 and hits.scores.dtype == np.float32
    assert [len(h) for h in exact_top_k(q, array_blocks(np.ones((4, 3), np.float32)), 0)] == [0, 0]


def test_array_blocks_cut_rows_number_them_and_apply_the_transform():
    vectors = np.arange(10 * 3, dtype=np.float64).reshape(10, 3)
    blocks = list(array_blocks(vectors, chunk=4, transform=lambda x: -x))
    assert [len(ids) for _, ids in blocks] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([ids for _, ids in blocks]), np.arange(10))
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v, _ in blocks)
    np.testing.assert_array_equal(np.concatenate([v for v, _ in blocks]), -vectors)
    given = list(array_blocks(vectors, ids=np.arange(10, 20, dtype=np.int32), chunk=100))
    assert given[0][1].dtype == np.int64 and given[0][1].tolist() == list(range(10, 20))


def slow_top_scores(scores: np.ndarray, take: int) -> np.ndarray:
    """The ``take`` largest scores, descending, ``nan`` last (sorted whole)."""
    order = sorted(range(len(scores)), key=lambda j: (np.isnan(scores[j]), -scores[j]))
    return scores[order[:take]]


@pytest.mark.parametrize("n", [1000, SAMPLED_TOP, 300_000])
@pytest.mark.parametrize("take", [1, 11, 101, 2001])
@pytest.mark.parametrize(
    "pattern", ["random", "ties", "sorted", "off the sample", "on the sample", "masked"]
)
def test_top_indices_are_the_largest_scores_whatever_their_order(n, take, pattern):
    rng = np.random.default_rng([n, take])
    s = rng.standard_normal(n).astype(np.float32)
    if pattern == "ties":
        s = np.round(s * 2).astype(np.float32)
    elif pattern == "sorted":
        s = np.sort(s)
    elif pattern == "off the sample":  # the best scores where the strided sample never looks
        s[:: max(1, n // 16384)] = -5.0
    elif pattern == "on the sample":  # a few sampled scores far above all others
        at = np.arange(0, n, max(1, n // 16384))
        s[at] = -5.0
        s[at[:300]] = 10.0 + rng.random(300)
    elif pattern == "masked":  # ids with no item (nan) and ids a filter leaves out (-inf)
        s[rng.random(n) < 0.3] = np.nan
        s[rng.random(n) < 0.6] = -np.inf
    got = top_indices(s, take)
    assert len(got) == len(set(got.tolist())) == min(take, n)
    want = slow_top_scores(s, take) if n <= SAMPLED_TOP else -np.sort(-s[~np.isnan(s)])[:take]
    np.testing.assert_array_equal(-np.sort(-s[got]), want)


def test_top_indices_partition_a_few_candidates_not_the_whole_array(monkeypatch):
    seen = []
    real = np.argpartition

    def spy(a, kth, *args, **kwargs):
        seen.append(len(a))
        return real(a, kth, *args, **kwargs)

    monkeypatch.setattr(topk.np, "argpartition", spy)
    # scores of one sign (a mirrored threshold would pass every score)
    s = np.random.default_rng(0).random(1_000_000).astype(np.float32)
    top_indices(s, 101)
    # the threshold keeps about (2 x 101 / 61 + 16) / 16384 of a million: some 1,200
    assert seen and max(seen) < 3_000
    assert len(top_indices(s[:5], 9)) == 5
    none = top_indices(s, 0)
    assert len(none) == 0 and none.dtype == np.int64
