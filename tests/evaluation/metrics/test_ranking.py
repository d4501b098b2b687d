"""Ranking metrics for reID and APS (method §6.1, §6.2): hand-worked cases, slow references,
exact chance levels and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cerberus.attributes.schema import GROUPS
from cerberus.errors import CerberusError
from cerberus.evaluation.metrics import (
    aps_chance,
    aps_metrics,
    aps_queries,
    reid_chance,
    reid_metrics,
)
from cerberus.evaluation.metrics import ranking as metrics_module

# ---------------------------------------------------------------------------------------------
# Slow, obviously-correct references: one query at a time.


def _average_precision_and_cmc(hits: np.ndarray, max_rank: int) -> tuple[float, np.ndarray]:
    """AP and CMC of one ranked 0/1 relevance vector (removed entries already dropped)."""
    cumulative = np.cumsum(hits)
    precision_at = cumulative / np.arange(1, len(hits) + 1)
    ap = float((precision_at * hits).sum() / hits.sum())
    cmc = (cumulative >= 1).astype(float)[:max_rank]
    cmc = np.concatenate([cmc, np.ones(max_rank - len(cmc))])  # short gallery: stays found
    return ap, cmc


def reference_reid(scores, qp, gp, qc, gc, *, max_rank=10, higher_is_better=True):
    """Market-1501 single-query protocol, one query at a time (the eval_market1501 logic)."""
    aps, cmcs = [], []
    for i in range(len(qp)):
        row = np.asarray(scores[i], dtype=np.float64)
        order = np.argsort(-row if higher_is_better else row, kind="stable")
        same_id = gp[order] == qp[i]
        removed = (same_id & (gc[order] == qc[i])) | (gp[order] == -1)
        hits = same_id[~removed]
        if not hits.any():
            continue  # no valid match: skipped
        ap, cmc = _average_precision_and_cmc(hits, max_rank)
        aps.append(ap)
        cmcs.append(cmc)
    if not aps:
        return float("nan"), None, 0
    return float(np.mean(aps)), np.mean(cmcs, 0), len(aps)


def reference_aps(scores, query_sids, gallery_sids, given, *, max_rank=10, alt_sids=None):
    """One query at a time; a gallery entry unknown (-1) in a given group is dropped."""
    aps, cmcs = [], []
    for i in range(len(query_sids)):
        order = np.argsort(-np.asarray(scores[i], dtype=np.float64), kind="stable")
        hits = np.ones(len(gallery_sids), dtype=bool)
        judged = np.ones(len(gallery_sids), dtype=bool)
        for j in range(len(gallery_sids)):
            for k in range(5):
                if not given[i, k]:
                    continue
                if gallery_sids[j, k] == -1:
                    judged[j] = False
                options = [gallery_sids[j, k]]
                if alt_sids is not None:
                    options += [a for a in alt_sids[j, :, k] if a >= 0]
                if query_sids[i, k] not in options:
                    hits[j] = False
        hits = hits[order][judged[order]]
        if not hits.any():
            continue
        ap, cmc = _average_precision_and_cmc(hits, max_rank)
        aps.append(ap)
        cmcs.append(cmc)
    if not aps:
        return float("nan"), None, 0
    return float(np.mean(aps)), np.mean(cmcs, 0), len(aps)


def random_reid_case(seed: int, num_q: int = 23, num_g: int = 61, *, ties: bool = False):
    rng = np.random.default_rng(seed)
    qp = rng.integers(1, 8, num_q)
    qc = rng.integers(1, 4, num_q)
    gp = rng.integers(-1, 8, num_g)  # includes junk (-1) and distractors (0)
    gc = rng.integers(1, 4, num_g)
    if ties:
        scores = rng.integers(0, 4, (num_q, num_g)).astype(np.float64) - 1.5
    else:  # distinct values, exactly representable in float32
        scores = rng.permutation(num_q * num_g).reshape(num_q, num_g) / 64.0 - 10.0
    return scores, qp, gp, qc, gc


# ---------------------------------------------------------------------------------------------
# reID


# Gallery (index: identity, camera). g3 is a distractor, g4 junk.
G_PIDS = np.array([1, 1, 2, 0, -1, 3, 2])
G_CAMS = np.array([1, 2, 1, 1, 2, 1, 2])
Q_PIDS = np.array([1, 2, 3, 1])
Q_CAMS = np.array([1, 2, 1, 3])
HAND_SCORES = np.array(
    [
        # q0 (1, cam 1): g0 removed (same id and camera), g4 junk. Kept order g3, g2, g1, g6, g5:
        # the true match g1 is at rank 3 -> AP 1/3 (rank 4 if junk were kept, 2 without g3).
        [0.9, 0.5, 0.7, 0.8, 0.95, 0.1, 0.2],
        # q1 (2, cam 2): g6 removed, g4 junk. Kept order g3, g2, g5, g1, g0: g2 at rank 2 -> AP 1/2.
        [0.1, 0.2, 0.6, 0.9, 0.3, 0.4, 0.99],
        # q2 (3, cam 1): its only match g5 is in the same camera -> no valid match, skipped.
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
        # q3 (1, cam 3): only junk removed. Order g0, g2, g3, g5, g6, g1: matches at ranks 1 and 6
        # -> AP (1/1 + 2/6) / 2 = 2/3.
        [0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.4],
    ]
)
# mAP = (1/3 + 1/2 + 2/3) / 3 = 1/2; first hits at ranks 3, 2, 1 -> CMC 1/3, 2/3, 1, 1, ...


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_reid_hand_case(dtype, chunk_size):
    m = reid_metrics(
        HAND_SCORES.astype(dtype), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5, chunk_size=chunk_size
    )
    assert m["map_score"] == pytest.approx(0.5, abs=1e-12)
    assert m["rank1_score"] == pytest.approx(1 / 3)
    assert m["rank5_score"] == 1.0 and m["rank10_score"] == 1.0
    np.testing.assert_allclose(m["cmc"], [1 / 3, 2 / 3, 1, 1, 1])
    assert m["num_valid_queries"] == 3 and m["num_skipped_queries"] == 1


def test_reid_distances_and_tensors_give_the_same_numbers():
    ref = reid_metrics(HAND_SCORES, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    dist = reid_metrics(-HAND_SCORES, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, higher_is_better=False)
    tens = reid_metrics(
        torch.from_numpy(HAND_SCORES).float(),
        torch.from_numpy(Q_PIDS),
        torch.from_numpy(G_PIDS),
        list(Q_CAMS),
        tuple(G_CAMS),
    )
    fortran = reid_metrics(np.asfortranarray(HAND_SCORES), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    for m in (dist, tens, fortran):
        assert m["map_score"] == pytest.approx(ref["map_score"])
        np.testing.assert_allclose(m["cmc"], ref["cmc"])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("higher_is_better", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_reid_matches_per_query_reference(seed, dtype, higher_is_better, chunk_size):
    scores, qp, gp, qc, gc = random_reid_case(seed)
    scores = scores.astype(dtype)
    ref_map, ref_cmc, ref_valid = reference_reid(
        scores, qp, gp, qc, gc, higher_is_better=higher_is_better
    )
    m = reid_metrics(
        scores,
        qp,
        gp,
        qc,
        gc,
        higher_is_better=higher_is_better,
        max_rank=10,
        chunk_size=chunk_size,
    )
    assert m["map_score"] == pytest.approx(ref_map, abs=1e-6)
    np.testing.assert_allclose(m["cmc"], ref_cmc, atol=1e-6)
    assert [m[f"rank{k}_score"] for k in (1, 5, 10)] == pytest.approx(ref_cmc[[0, 4, 9]])
    assert m["num_valid_queries"] == ref_valid
    assert m["num_valid_queries"] + m["num_skipped_queries"] == len(qp)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int16, np.int64, bool])
def test_reid_ties_break_by_gallery_index(seed, dtype):
    scores, qp, gp, qc, gc = random_reid_case(seed, ties=True)
    scores = (scores > 0) if dtype is bool else (scores * 2).astype(dtype)
    for hib in (True, False):
        ref_map, ref_cmc, _ = reference_reid(scores, qp, gp, qc, gc, higher_is_better=hib)
        m = reid_metrics(scores, qp, gp, qc, gc, higher_is_better=hib, max_rank=10, chunk_size=5)
        assert m["map_score"] == pytest.approx(ref_map, abs=1e-12)
        np.testing.assert_allclose(m["cmc"], ref_cmc, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_reid_all_tied_ranks_by_index_and_signed_zeros_are_equal(dtype, higher_is_better):
    # Four tied entries (+0.0 and -0.0 compare equal); the only match is gallery index 2.
    scores = np.array([[0.0, -0.0, 0.0, -0.0]], dtype=dtype)
    m = reid_metrics(
        scores, [5], [1, 2, 5, 3], [1], [2, 2, 2, 2], higher_is_better=higher_is_better
    )
    assert m["map_score"] == pytest.approx(1 / 3) and m["rank1_score"] == 0.0
    np.testing.assert_allclose(m["cmc"][:4], [0, 0, 1, 1])


def test_reid_memory_budget_chunking(monkeypatch):
    scores, qp, gp, qc, gc = random_reid_case(7, num_q=40, num_g=50)
    whole = reid_metrics(scores.astype(np.float32), qp, gp, qc, gc)
    monkeypatch.setattr(
        metrics_module, "DEFAULT_MEMORY_BUDGET", 3 * 50 * metrics_module._BYTES_PER_ENTRY
    )
    assert metrics_module._auto_chunk_rows(50) == 3
    chunked = reid_metrics(scores.astype(np.float32), qp, gp, qc, gc)
    assert chunked["map_score"] == pytest.approx(whole["map_score"], abs=1e-15)
    np.testing.assert_array_equal(chunked["cmc"], whole["cmc"])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_q=st.integers(1, 6),
    num_g=st.integers(1, 12),
    levels=st.integers(1, 5),
)
def test_reid_property_against_reference(seed, num_q, num_g, levels):
    rng = np.random.default_rng(seed)
    qp, qc = rng.integers(1, 4, num_q), rng.integers(1, 3, num_q)
    gp, gc = rng.integers(-1, 4, num_g), rng.integers(1, 3, num_g)
    scores = rng.integers(0, levels, (num_q, num_g)).astype(np.float32)
    ref_map, ref_cmc, ref_valid = reference_reid(scores, qp, gp, qc, gc, max_rank=5)
    if ref_valid == 0:
        with pytest.raises(CerberusError, match="no query"):
            reid_metrics(scores, qp, gp, qc, gc, max_rank=5)
        return
    m = reid_metrics(scores, qp, gp, qc, gc, max_rank=5, chunk_size=2)
    assert m["map_score"] == pytest.approx(ref_map, abs=1e-12)
    np.testing.assert_allclose(m["cmc"], ref_cmc, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# APS

APS_GALLERY = np.array(
    [
        [0, 1, 2, 0, 3],
        [0, 1, 2, 0, 3],
        [1, 1, 2, 0, 3],
        [0, 2, 2, 1, 3],
    ]
)


def test_aps_queries_full_and_partial():
    full = aps_queries(APS_GALLERY)
    np.testing.assert_array_equal(full, [[0, 1, 2, 0, 3], [0, 2, 2, 1, 3], [1, 1, 2, 0, 3]])
    partial = aps_queries(APS_GALLERY, groups=("L", "U"))  # order of the letters is irrelevant
    np.testing.assert_array_equal(partial, [[-1, 1, 2, -1, -1], [-1, 2, 2, -1, -1]])
    head = aps_queries(APS_GALLERY, groups=("H",))
    np.testing.assert_array_equal(head[:, 0], [0, 1])
    assert (head[:, 1:] == -1).all()


def reference_aps_queries(sids, groups):
    """Distinct rows over ``groups``, each row's unknown groups left out, one row at a time."""
    cols = [GROUPS.index(g) for g in groups]
    found = set()
    for row in sids:
        query = tuple(int(row[k]) if k in cols and row[k] >= 0 else -1 for k in range(5))
        if any(v >= 0 for v in query):
            found.add(query)
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 5)


def test_aps_queries_leave_an_identitys_unknown_groups_out():
    sids = np.array([[0, 1, 2, 0, 3], [0, 1, -1, 0, 3], [0, 1, -1, 0, 3], [-1, -1, -1, -1, -1]])
    # Identity 1 (and its duplicate 2): L unknown -> its full query gives H, U, I, C only;
    # identity 3 knows nothing -> no query.
    np.testing.assert_array_equal(aps_queries(sids), [[0, 1, -1, 0, 3], [0, 1, 2, 0, 3]])
    # Partial U + L: identity 1 gives U alone.
    np.testing.assert_array_equal(
        aps_queries(sids, groups=("U", "L")), [[-1, 1, -1, -1, -1], [-1, 1, 2, -1, -1]]
    )
    np.testing.assert_array_equal(aps_queries(sids, groups=("L",)), [[-1, -1, 2, -1, -1]])


@pytest.mark.parametrize("seed", range(6))
def test_aps_queries_with_unknowns_match_reference(seed):
    rng = np.random.default_rng(seed)
    sids = np.where(rng.random((40, 5)) < 0.3, -1, rng.integers(0, 3, (40, 5)))
    for size in (5, 3, 2, 1):
        groups = tuple(rng.choice(GROUPS, size, replace=False))
        np.testing.assert_array_equal(
            aps_queries(sids, groups=groups), reference_aps_queries(sids, groups)
        )


# Gallery g2 with an unknown U. A (full): g2 removed; order g1, g0, g3 -> hits 1, 2: AP 1.
# B (only U): g2 removed; order g3, g1, g0 -> hits 2, 3: AP (1/2 + 2/3) / 2 = 7/12.
# D (only L): g2 judged on L, every entry relevant: AP 1. mAP 31/36, R-1 2/3.
APS_UNKNOWN_GALLERY = np.array(
    [[0, 1, 2, 0, 3], [0, 1, 2, 0, 3], [1, -1, 2, 0, 3], [0, 2, 2, 1, 3]]
)
APS_UNKNOWN_QUERIES = np.array([[0, 1, 2, 0, 3], [-1, 1, -1, -1, -1], [-1, -1, 2, -1, -1]])
APS_UNKNOWN_SCORES = np.array([[0.2, 0.9, 0.5, 0.1], [0.1, 0.3, 0.2, 0.9], [0.4, 0.3, 0.2, 0.1]])


@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_aps_gallery_entry_unknown_in_a_given_group_is_removed_hand_case(chunk_size):
    m = aps_metrics(
        APS_UNKNOWN_SCORES,
        APS_UNKNOWN_QUERIES,
        APS_UNKNOWN_GALLERY,
        max_rank=4,
        chunk_size=chunk_size,
    )
    assert m["map_score"] == pytest.approx(31 / 36)
    assert m["rank1_score"] == pytest.approx(2 / 3)
    np.testing.assert_allclose(m["cmc"], [2 / 3, 1, 1, 1])
    assert m["num_valid_queries"] == 3


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_aps_with_unknown_sids_matches_per_query_reference(seed, chunk_size):
    rng = np.random.default_rng(100 + seed)
    ids = np.where(rng.random((30, 5)) < 0.25, -1, rng.integers(0, 2, (30, 5)))
    gallery = np.repeat(ids, 2, axis=0)  # two images per identity
    queries = np.concatenate([aps_queries(ids), aps_queries(ids, groups=("H", "L", "C"))])
    alt = np.where(rng.random((60, 1, 5)) < 0.1, rng.integers(0, 2, (60, 1, 5)), -1)
    alt[gallery[:, None, :] < 0] = -1  # no alternative to an unknown value
    scores = rng.standard_normal((len(queries), len(gallery))).astype(np.float32)
    given = queries >= 0
    ref_map, ref_cmc, ref_valid = reference_aps(scores, queries, gallery, given, alt_sids=alt)
    m = aps_metrics(
        scores, queries, gallery, gallery_alt_sids=alt, max_rank=10, chunk_size=chunk_size
    )
    assert m["map_score"] == pytest.approx(ref_map, abs=1e-6)
    np.testing.assert_allclose(m["cmc"], ref_cmc, atol=1e-6)
    assert m["num_valid_queries"] == ref_valid


APS_QUERIES = np.array([[0, 1, 2, 0, 3], [-1, 1, -1, -1, -1], [5, 5, 5, 5, 5]])
APS_SCORES = np.array(
    [
        # Full query A: relevant g0, g1. Order g1, g2, g0, g3 -> hits at 1, 3: AP (1 + 2/3)/2 = 5/6.
        [0.2, 0.9, 0.5, 0.1],
        # Partial query B (only U = 1): relevant g0, g1, g2. Order g3, g1, g2, g0 -> hits at
        # 2, 3, 4: AP (1/2 + 2/3 + 3/4) / 3 = 23/36.
        [0.1, 0.3, 0.2, 0.9],
        # Query C: nothing relevant -> skipped.
        [0.4, 0.3, 0.2, 0.1],
    ]
)
# mAP = (5/6 + 23/36) / 2 = 53/72; first hits at ranks 1, 2 -> CMC 1/2, 1, 1, 1.


@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_aps_hand_case(chunk_size):
    given_mask = APS_QUERIES >= 0
    for given_groups in (None, given_mask):
        m = aps_metrics(
            APS_SCORES,
            APS_QUERIES,
            APS_GALLERY,
            given_groups=given_groups,
            max_rank=4,
            chunk_size=chunk_size,
        )
        assert m["map_score"] == pytest.approx(53 / 72)
        assert m["rank1_score"] == 0.5 and m["rank5_score"] == 1.0
        np.testing.assert_allclose(m["cmc"], [0.5, 1, 1, 1])
        assert m["num_valid_queries"] == 2 and m["num_skipped_queries"] == 1


def test_aps_shared_mask_and_distances():
    # Mask (5,): only group U given for every query (query A then has 3 relevant entries too).
    queries = np.array([[0, 1, 2, 0, 3], [9, 1, 9, 9, 9]])
    only_u = np.array([False, True, False, False, False])
    m = aps_metrics(APS_SCORES[:2], queries, APS_GALLERY, given_groups=only_u)
    # A: order g1, g2, g0, g3 -> hits 1, 2, 3 -> AP 1. B: 23/36 as above.
    assert m["map_score"] == pytest.approx((1 + 23 / 36) / 2)
    d = aps_metrics(
        -APS_SCORES[:2], queries, APS_GALLERY, given_groups=only_u, higher_is_better=False
    )
    assert d["map_score"] == pytest.approx(m["map_score"])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_aps_matches_per_query_reference(seed, chunk_size):
    rng = np.random.default_rng(seed)
    gallery = rng.integers(0, 2, (70, 5))
    queries = np.concatenate(
        [aps_queries(gallery), aps_queries(gallery, groups=("U", "C")), rng.integers(0, 2, (5, 5))]
    )
    given_mask = queries >= 0
    given_mask[-5:] = rng.random((5, 5)) < 0.5
    given_mask[-5:, 0] = True
    scores = rng.standard_normal((len(queries), len(gallery))).astype(np.float32)
    ref_map, ref_cmc, ref_valid = reference_aps(scores, queries, gallery, given_mask)
    m = aps_metrics(
        scores, queries, gallery, given_groups=given_mask, max_rank=10, chunk_size=chunk_size
    )
    assert m["map_score"] == pytest.approx(ref_map, abs=1e-6)
    np.testing.assert_allclose(m["cmc"], ref_cmc, atol=1e-6)
    assert m["num_valid_queries"] == ref_valid


# Alternative SIDs (identities annotated with several colours): g0 may also be L = 7 (slot 0),
# g3 too (slot 1). Query A as above; B (only L = 7): ranks g1, g2, g0, g3 -> hits at 3, 4: AP
# (1/3 + 2/4) / 2 = 5/12; C (A with L = 7): only g0, at rank 3: AP 1/3. mAP 19/36, R-1 1/3.
APS_ALT = np.full((4, 2, 5), -1)
APS_ALT[0, 0, 2] = 7
APS_ALT[3, 1, 2] = 7
APS_ALT_QUERIES = np.array([[0, 1, 2, 0, 3], [-1, -1, 7, -1, -1], [0, 1, 7, 0, 3]])


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_aps_alternative_sids_hand_case(chunk_size):
    scores = np.tile(APS_SCORES[0], (3, 1))
    m = aps_metrics(
        scores, APS_ALT_QUERIES, APS_GALLERY, gallery_alt_sids=APS_ALT, chunk_size=chunk_size
    )
    assert m["map_score"] == pytest.approx(19 / 36)
    assert m["rank1_score"] == pytest.approx(1 / 3) and m["num_valid_queries"] == 3
    # Without the alternatives, B and C find nothing.
    plain = aps_metrics(scores, APS_ALT_QUERIES, APS_GALLERY)
    assert plain["num_valid_queries"] == 1 and plain["map_score"] == pytest.approx(5 / 6)
    # One slot may be given as (n_gallery, 5).
    one = aps_metrics(scores, APS_ALT_QUERIES, APS_GALLERY, gallery_alt_sids=APS_ALT.max(1))
    assert one["map_score"] == pytest.approx(19 / 36)


@pytest.mark.parametrize("seed", range(3))
def test_aps_alternative_sids_match_reference(seed):
    rng = np.random.default_rng(seed)
    gallery = rng.integers(0, 3, (40, 5))
    alt = np.where(rng.random((40, 2, 5)) < 0.2, rng.integers(0, 3, (40, 2, 5)), -1)
    queries = np.concatenate([aps_queries(gallery), aps_queries(gallery, groups=("L",))])
    scores = rng.standard_normal((len(queries), len(gallery)))
    given = queries >= 0
    ref_map, ref_cmc, ref_valid = reference_aps(scores, queries, gallery, given, alt_sids=alt)
    m = aps_metrics(scores, queries, gallery, gallery_alt_sids=alt, max_rank=10, chunk_size=7)
    assert m["map_score"] == pytest.approx(ref_map, abs=1e-12)
    np.testing.assert_allclose(m["cmc"], ref_cmc, atol=1e-12)
    assert m["num_valid_queries"] == ref_valid


# ---------------------------------------------------------------------------------------------
# Chance levels: exact formulas against exhaustive enumeration of every ranking.


def _all_rankings(num_queries: int, num_gallery: int) -> tuple[np.ndarray, np.ndarray]:
    """Every permutation of the gallery, for every query: scores and the query row each uses."""
    perms = np.array(list(itertools.permutations(range(num_gallery))), dtype=np.float64)
    scores = np.tile(perms, (num_queries, 1))
    rows = np.repeat(np.arange(num_queries), len(perms))
    return scores, rows


def test_reid_chance_equals_the_average_over_all_rankings():
    gp, gc = np.array([1, 1, 2, 0, -1, 3, 1]), np.array([1, 2, 1, 1, 2, 1, 3])
    qp, qc = np.array([1, 2, 3, 1]), np.array([1, 2, 1, 3])  # query 2 is skipped
    scores, rows = _all_rankings(len(qp), len(gp))
    exact = reid_metrics(scores, qp[rows], gp, qc[rows], gc, max_rank=7)
    chance = reid_chance(qp, gp, qc, gc, max_rank=7)
    assert chance["map_score"] == pytest.approx(exact["map_score"], abs=1e-12)
    for k in (1, 5, 10):
        assert chance[f"rank{k}_score"] == pytest.approx(exact[f"rank{k}_score"], abs=1e-12)
    np.testing.assert_allclose(chance["cmc"], exact["cmc"], atol=1e-12)
    assert chance["num_valid_queries"] == 3 and chance["num_skipped_queries"] == 1


def test_aps_chance_equals_the_average_over_all_rankings():
    gallery = np.array([[0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 1]] * 2)
    gallery = gallery[:7]
    queries = np.array([[0, 0, 0, 0, 0], [-1, 1, -1, -1, -1], [1, -1, -1, -1, 1]])
    scores, rows = _all_rankings(len(queries), len(gallery))
    exact = aps_metrics(scores, queries[rows], gallery, max_rank=7)
    chance = aps_chance(queries, gallery, max_rank=7)
    assert chance["map_score"] == pytest.approx(exact["map_score"], abs=1e-12)
    np.testing.assert_allclose(chance["cmc"], exact["cmc"], atol=1e-12)
    assert chance["num_skipped_queries"] == 1


def test_aps_chance_with_unknown_gallery_sids_equals_the_average_over_all_rankings():
    q, g = APS_UNKNOWN_QUERIES, APS_UNKNOWN_GALLERY
    scores, rows = _all_rankings(len(q), len(g))
    exact = aps_metrics(scores, q[rows], g, max_rank=4)
    chance = aps_chance(q, g, max_rank=4)
    assert chance["map_score"] == pytest.approx(exact["map_score"], abs=1e-12)
    np.testing.assert_allclose(chance["cmc"], exact["cmc"], atol=1e-12)


def test_aps_chance_with_alternatives_equals_the_average_over_all_rankings():
    scores, rows = _all_rankings(len(APS_ALT_QUERIES), len(APS_GALLERY))
    exact = aps_metrics(
        scores, APS_ALT_QUERIES[rows], APS_GALLERY, gallery_alt_sids=APS_ALT, max_rank=4
    )
    chance = aps_chance(APS_ALT_QUERIES, APS_GALLERY, gallery_alt_sids=APS_ALT, max_rank=4)
    assert chance["map_score"] == pytest.approx(exact["map_score"], abs=1e-12)
    np.testing.assert_allclose(chance["cmc"], exact["cmc"], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Input checks


def _reid_args(**changes):
    args = dict(
        scores=HAND_SCORES,
        query_pids=Q_PIDS,
        gallery_pids=G_PIDS,
        query_camids=Q_CAMS,
        gallery_camids=G_CAMS,
    )
    args.update(changes)
    return args


NAN_SCORES = HAND_SCORES.copy()
NAN_SCORES[2, 5] = np.nan


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"scores": HAND_SCORES[0]}, r"scores: expected shape"),
        ({"scores": np.zeros((0, 7))}, r"scores: empty"),
        ({"scores": HAND_SCORES.astype(str)}, r"scores: expected real numbers"),
        ({"scores": NAN_SCORES}, r"scores: NaN at query 2, gallery 5"),
        ({"query_pids": Q_PIDS[:3]}, r"query_pids: has 3 entries but scores has 4 queries"),
        ({"gallery_pids": G_PIDS[:6]}, r"gallery_pids: has 6 entries"),
        ({"query_camids": Q_CAMS[:, None]}, r"query_camids: expected a 1-D array"),
        ({"gallery_camids": G_CAMS[1:]}, r"gallery_camids: has 6 entries"),
        ({"query_pids": Q_PIDS.astype(float)}, r"query_pids: expected integers"),
        ({"ranks": (0, 5)}, r"ranks: expected positive"),
        ({"max_rank": 0}, r"max_rank"),
        ({"chunk_size": 0}, r"chunk_size"),
        ({"query_pids": np.array([7, 7, 7, 7])}, r"no query has a relevant gallery entry"),
    ],
)
def test_reid_input_errors(changes, match):
    with pytest.raises(CerberusError, match=match):
        reid_metrics(**_reid_args(**changes))


def test_reid_chance_input_errors():
    with pytest.raises(CerberusError, match="gallery_camids: has 6 entries but gallery_pids has 7"):
        reid_chance(Q_PIDS, G_PIDS, Q_CAMS, G_CAMS[1:])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"query_sids": APS_QUERIES[:, :4]}, r"query_sids: expected shape \(n, 5\)"),
        ({"query_sids": APS_QUERIES[:2]}, r"query_sids: has 2 rows but scores has 3"),
        ({"gallery_sids": APS_GALLERY[:3]}, r"gallery_sids: has 3 rows"),
        ({"gallery_sids": APS_GALLERY - 2}, r"gallery_sids: -2 is neither a SID nor -1"),
        ({"given_groups": np.ones(4, dtype=bool)}, r"given_groups: expected shape"),
        ({"given_groups": np.ones(5)}, r"given_groups: expected a bool mask"),
        ({"given_groups": np.ones(5, dtype=bool)}, r"query_sids: negative \(unknown\) SID"),
        ({"given_groups": np.zeros(5, dtype=bool)}, r"given_groups: query 0 gives no group"),
        ({"scores": APS_SCORES[:, :3]}, r"gallery_sids: has 4 rows but scores has 3"),
    ],
)
def test_aps_input_errors(kwargs, match):
    args = dict(scores=APS_SCORES, query_sids=APS_QUERIES, gallery_sids=APS_GALLERY)
    args.update(kwargs)
    scores = args.pop("scores")
    with pytest.raises(CerberusError, match=match):
        aps_metrics(scores, **args)


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ((), "groups"),
        (("X",), "groups"),
        (("U", "U"), "groups"),
        (("C",), "sids: no row has a known SID in the groups C; there is no APS query"),
    ],
)
def test_aps_queries_input_errors(groups, match):
    with pytest.raises(CerberusError, match=match):
        aps_queries(np.array([[0, 0, 0, 0, -1]]), groups=groups)
    with pytest.raises(CerberusError, match="sids: -2 is neither a SID nor -1"):
        aps_queries(np.array([[0, 0, 0, 0, -2]]))


def test_aps_alternative_input_errors():
    with pytest.raises(CerberusError, match=r"gallery_alt_sids: expected shape \(4, K, 5\)"):
        aps_metrics(APS_SCORES, APS_QUERIES, APS_GALLERY, gallery_alt_sids=APS_ALT[:3])
    with pytest.raises(CerberusError, match="gallery_alt_sids: -2 is neither a SID nor -1"):
        aps_metrics(APS_SCORES, APS_QUERIES, APS_GALLERY, gallery_alt_sids=APS_ALT - 1)
    with pytest.raises(CerberusError, match="gallery_alt_sids: expected integer SIDs"):
        aps_chance(APS_QUERIES, APS_GALLERY, gallery_alt_sids=APS_ALT.astype(float))


def test_docstring_examples_hold():
    import doctest

    import cerberus.evaluation.metrics.par as par_module

    for module in (metrics_module, par_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_reid_without_cameras_removes_only_the_query_image_itself():
    # Query 0 is gallery image 0 (key 10); identity 1 also has gallery images 1 and 3, one of
    # them in the query's camera, which the camera protocol would remove. Without cameras, only
    # the query image itself (and junk, image 4) is removed: kept ranking 2, 1, 3, 5 (scores),
    # relevant 1 and 3 at ranks 2 and 3 -> AP = (1/2 + 2/3) / 2, first hit at rank 2.
    scores = np.array([[0.99, 0.8, 0.9, 0.7, 0.95, 0.1]])
    gp = np.array([1, 1, 2, 1, -1, 3])
    keys = {"query_images": np.array([10]), "gallery_images": np.array([10, 11, 12, 13, 14, 15])}
    m = reid_metrics(scores, [1], gp, None, None, max_rank=4, **keys)
    assert m["map_score"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    np.testing.assert_allclose(m["cmc"], [0, 1, 1, 1])
    # Slow reference: drop the removed entries by hand, then rank.
    kept = [1, 2, 3, 5]
    order = np.argsort(-scores[0, kept], kind="stable")
    hits = np.nonzero(gp[kept][order] == 1)[0] + 1
    assert m["map_score"] == pytest.approx(np.mean(np.arange(1, len(hits) + 1) / hits))
    # Without image keys nothing but junk is removed: the query finds itself at rank 1.
    assert reid_metrics(scores, [1], gp, None, None)["rank1_score"] == 1.0
    # With cameras, image keys change nothing when no query image is in the gallery.
    a = reid_metrics(scores[:, 1:], [1], gp[1:], [0], [0, 1, 1, 1, 1])
    b = reid_metrics(
        scores[:, 1:],
        [1],
        gp[1:],
        query_camids=[0],
        gallery_camids=[0, 1, 1, 1, 1],
        query_images=[10],
        gallery_images=[11, 12, 13, 14, 15],
    )
    assert a["map_score"] == b["map_score"]
    chance = reid_chance([1], gp, None, None, max_rank=4, **keys)
    assert chance["num_valid_queries"] == 1 and 0 < chance["map_score"] < 1


def test_reid_without_cameras_input_errors():
    with pytest.raises(CerberusError, match="query_camids and gallery_camids: give both"):
        reid_metrics([[0.1, 0.2]], [1], [1, 2], [0], None)
    with pytest.raises(CerberusError, match="query_images and gallery_images: give both"):
        reid_metrics([[0.1, 0.2]], [1], [1, 2], None, None, query_images=[1])
    with pytest.raises(CerberusError, match="gallery_images: has 1 entries"):
        reid_metrics([[0.1, 0.2]], [1], [1, 2], None, None, query_images=[1], gallery_images=[1])


def test_aps_query_errors_name_the_bad_value_and_the_groups():
    """The first SID below -1 is the one named (not an unknown -1 before it); the group
    letters and the argument are spelled out; CMC is 50 ranks deep by default."""
    with pytest.raises(CerberusError) as e:
        aps_queries(np.array([[-1, 0, 0, 0, -2]]))
    assert str(e.value) == "sids: -2 is neither a SID nor -1 (unknown)"
    with pytest.raises(CerberusError) as e:
        aps_queries(np.array([[0, 0, 0]]))
    assert str(e.value) == "sids: expected shape (n, 5), got (1, 3)"
    with pytest.raises(CerberusError) as e:
        aps_queries(np.array([[0, 0, 0, 0, 0]]), groups=("Q",))
    assert str(e.value) == "groups: expected distinct letters among H, U, L, I, C, got ('Q',)"
    with pytest.raises(CerberusError) as e:
        aps_queries(np.array([[0, 0, -1, 0, -1]]), groups=("L", "C"))
    assert str(e.value) == "sids: no row has a known SID in the groups L, C; there is no APS query"
    rng = np.random.default_rng(0)
    gallery = rng.integers(0, 2, (60, 5))
    m = aps_metrics(rng.normal(size=(3, 60)), gallery[:3], gallery)
    assert len(m["cmc"]) == 50


def test_reid_ranks_float32_scores_that_differ_below_float32_precision_at_one():
    """Scores a billionth apart are ranked by their values, not tied (the packed float32 key
    keeps every bit); CMC is 50 ranks deep by default."""
    scores = np.array([[1e-9, 3e-9, -1e-9, 2e-9]], dtype=np.float32)
    for match, rank1 in ((1, 1.0), (3, 0.0)):
        gp = np.array([7, 7, 7, 7])
        gp[match] = 5
        m = reid_metrics(scores, [5], gp, [1], [2, 2, 2, 2])
        ref_map, _, _ = reference_reid(scores, np.array([5]), gp, np.array([1]), np.full(4, 2))
        assert m["rank1_score"] == rank1 and m["map_score"] == pytest.approx(ref_map)
    rng = np.random.default_rng(1)
    gp = rng.integers(0, 5, 60)
    m = reid_metrics(rng.normal(size=(2, 60)), gp[:2], gp, [0, 0], np.ones(60, int))
    assert len(m["cmc"]) == 50


def test_no_valid_query_is_refused_in_words():
    with pytest.raises(CerberusError) as e:
        reid_metrics(np.zeros((1, 2)), [9], [1, 2], [1], [1, 1])
    assert str(e.value) == "no query has a relevant gallery entry; metrics are undefined"
