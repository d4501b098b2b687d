"""The one exact top-k (method §9.1) against the slow obvious answer: float64 scores, sorted by
score then id."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.store.topk import array_blocks, exact_top_k


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
