"""Exact inner-product top-k (method §9.1), the one every backend uses: the memory reference, the
local gallery's segments, an ``.npz`` view's filtered search and the recall an approximate
index is measured by.

Vectors come in blocks (``(m, D)`` vectors with their ``(m,)`` ids), scored as they come: a large
gallery is never copied whole. Ties go to the smaller id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from cerberus.store.base import Hits

Block = tuple[np.ndarray, np.ndarray]
"""``(vectors (m, D), ids (m,))``: a block of candidates."""

FEW_QUERIES = 4
"""Up to this many queries are scored by NumPy's own loop on one thread (``einsum``): a product
of a few queries with many vectors is bound by memory, and a BLAS thread pool on busy cores
costs more than it gains (measured on the shared 2-core machine: 4 ms against 14 ms for one
query x 2184 vectors of 2560)."""


def scores_of(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Inner products ``(Q, m)`` of ``queries`` ``(Q, D)`` with ``vectors`` ``(m, D)``."""
    if len(queries) <= FEW_QUERIES:
        return np.einsum("qd,nd->qn", queries, vectors, optimize=False)
    return queries @ vectors.T


SAMPLED_TOP = 65536
"""From this many scores on, :func:`top_indices` finds a threshold on a sample first."""


def top_indices(scores: np.ndarray, take: int) -> np.ndarray:
    """Positions of the ``take`` largest of ``scores`` ``(n,)`` (any order; ``nan`` counts as
    the least), as ``np.argpartition(-scores, take - 1)[:take]`` gives them, in a fraction of
    its time at a million scores (0.3-0.5 ms against 9 ms: ``benchmarks/bench_top_indices.py``).

    A threshold is read off every ``n // 16384``-th score: about twice as many scores of the
    sample as its share of ``take``, and 16 more, are at or above it. Every score at or above it
    is a candidate; when there are at least ``take`` of them the ``take`` largest are all among
    them (each is at least the ``take``-th largest, which is at least the threshold), else
    the whole array is partitioned."""
    n = len(scores)
    take = min(take, n)
    if take <= 0:
        return np.zeros(0, np.int64)
    if n < SAMPLED_TOP or take * 64 > n:
        return np.argpartition(-scores, take - 1)[:take]
    step = n // 16384
    sample = -scores[::step]
    j = min(len(sample) - 1, 2 * take // step + 16)
    bar = -np.partition(sample, j)[j]
    cand = np.flatnonzero(scores >= bar)  # nan: never (nor a nan bar)
    if len(cand) < take:
        return np.argpartition(-scores, take - 1)[:take]
    return cand[np.argpartition(-scores[cand], take - 1)[:take]]


def top_k_merge(
    best_s: np.ndarray | None,
    best_i: np.ndarray | None,
    scores: np.ndarray,
    ids: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a block's ``scores`` ``(Q, m)`` (columns ``ids``) into the running top-k
    ``(Q, <=k)``; ties go to the smaller id. Returns the new (scores, ids)."""
    cand_i = np.broadcast_to(ids, scores.shape)
    if best_s is not None:
        scores = np.concatenate([best_s, scores], axis=1)
        cand_i = np.concatenate([best_i, cand_i], axis=1)
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # keep every column tied with the k-th score, so the smaller id can win the tie
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        keep = scores >= kth
        if keep.sum(axis=1).max() > k:
            rows_s, rows_i = [], []
            for r in range(len(scores)):
                cols = np.flatnonzero(keep[r])
                o = np.lexsort((cand_i[r, cols], -scores[r, cols]))[:k]
                rows_s.append(scores[r, cols[o]])
                rows_i.append(cand_i[r, cols[o]])
            return np.stack(rows_s), np.stack(rows_i)
        scores = np.take_along_axis(scores, part, axis=1)
        cand_i = np.take_along_axis(cand_i, part, axis=1)
    o = np.lexsort((cand_i, -scores), axis=1) if scores.size else np.zeros(scores.shape, int)
    return np.take_along_axis(scores, o, axis=1), np.take_along_axis(cand_i, o, axis=1)


def exact_top_k(queries: np.ndarray, blocks: Iterable[Block], k: int) -> list[Hits]:
    """Per query ``(Q, D)``, the top-k of every block's vectors by inner product, ties to the
    smaller id; scores in the dtype of the inputs (float64 inputs: the memory reference),
    returned as float32."""
    best_s = best_i = None
    for vectors, ids in blocks:
        if len(ids) and k > 0:
            scores = scores_of(queries, vectors)
            best_s, best_i = top_k_merge(best_s, best_i, scores, np.asarray(ids, np.int64), k)
    if best_s is None:
        return [Hits(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in queries]
    return [Hits(i.astype(np.int64), s.astype(np.float32)) for s, i in zip(best_s, best_i)]


def array_blocks(
    vectors: np.ndarray,
    ids: np.ndarray | None = None,
    *,
    chunk: int = 65536,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[Block]:
    """Blocks of ``chunk`` rows of ``vectors`` (through ``transform`` if given, e.g. raw
    ``(N, 5, d)`` features -> retrieval vectors), with ``ids`` (default: row numbers)."""
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    for start in range(0, len(vectors), chunk):
        part = vectors[start : start + chunk]
        part = transform(part) if transform is not None else part
        yield np.ascontiguousarray(part, dtype=np.float32), ids[start : start + chunk]


def recall_at_k(
    index,
    vectors: np.ndarray,
    *,
    k: int = 10,
    num_queries: int = 1000,
    seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> float:
    """Mean fraction of the exact top-k (inner product, :func:`exact_top_k`) that the faiss
    ``index`` returns: the recall@k an approximate index is stated with.

    Queries are ``num_queries`` random rows of ``vectors`` (through ``transform`` if given);
    each query's own row is left out of both lists.
    """
    n = len(vectors)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, min(num_queries, n), replace=False))
    queries = vectors[rows]
    queries = np.ascontiguousarray(
        transform(queries) if transform is not None else queries, dtype=np.float32
    )
    kk = min(k + 1, n)
    truth = exact_top_k(queries, array_blocks(vectors, transform=transform), kk)
    _, found = index.search(queries, kk)
    hits = []
    for r, t, f in zip(rows, truth, found):
        t = [i for i in t.ids if i != r][:k]
        f = {i for i in f if i != r and i >= 0}
        if t:
            hits.append(len(f.intersection(t)) / len(t))
    return float(np.mean(hits)) if hits else 1.0
