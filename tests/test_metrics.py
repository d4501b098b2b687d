"""Metrics for reID, APS and PAR (SPEC section 6): hand-worked cases and slow references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cerberus import metrics as metrics_module
from cerberus.attributes import DUKEMTMC, GROUPS, MARKET1501
from cerberus.errors import CerberusError
from cerberus.metrics import (
    aps_chance,
    aps_metrics,
    aps_queries,
    par_accuracy,
    par_majority_chance,
    reid_chance,
    reid_metrics,
)

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


def reference_aps(scores, query_sids, gallery_sids, given, *, max_rank=10):
    aps, cmcs = [], []
    for i in range(len(query_sids)):
        order = np.argsort(-np.asarray(scores[i], dtype=np.float64), kind="stable")
        hits = np.ones(len(gallery_sids), dtype=bool)
        for k in range(5):
            if given[i, k]:
                hits &= gallery_sids[:, k] == query_sids[i, k]
        hits = hits[order]
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


# ---------------------------------------------------------------------------------------------
# PAR


def test_par_hand_case():
    hat, gender = MARKET1501.index("hat"), MARKET1501.index("gender")
    true = np.zeros((4, 12), dtype=np.int64)
    true[0, hat] = -1  # unknown: ignored
    pred = np.zeros_like(true)
    pred[0, hat] = 1  # ignored, the truth is unknown
    pred[1, hat] = 1  # hat: 2 of 3 labelled rows right
    pred[:, gender] = [1, 1, 0, 0]  # gender: 2 of 4 right
    m = par_accuracy(pred, true, MARKET1501)
    assert m["attribute_accuracy_score"]["hat"] == pytest.approx(2 / 3)
    assert m["attribute_accuracy_score"]["gender"] == 0.5
    assert m["attribute_accuracy_score"]["upper.color"] == 1.0
    assert m["num_labelled"]["hat"] == 3 and m["num_labelled"]["gender"] == 4
    assert m["mean_accuracy_score"] == pytest.approx((2 / 3 + 1 / 2 + 10) / 12)  # = 67/72


def test_par_counts_attributes_per_schema(schema):
    values = np.zeros((3, schema.num_attributes), dtype=np.int64)
    m = par_accuracy(values, values, schema)
    assert len(m["attribute_accuracy_score"]) == {"market1501": 12, "dukemtmc": 10}[schema.name]
    assert m["mean_accuracy_score"] == 1.0


def test_par_majority_chance():
    backpack = DUKEMTMC.index("backpack")
    train = np.zeros((5, 10), dtype=np.int64)
    train[:3, backpack] = 1  # majority: backpack
    train[4, 0] = -1  # unknown entries are not counted
    test = np.zeros((4, 10), dtype=np.int64)
    test[:1, backpack] = 1  # 1 of 4 test rows has a backpack
    m = par_majority_chance(train, test, DUKEMTMC)
    assert m["majority_value"]["backpack"] == 1
    assert m["attribute_accuracy_score"]["backpack"] == 0.25
    assert m["mean_accuracy_score"] == pytest.approx((9 + 0.25) / 10)


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
        ({"gallery_sids": APS_GALLERY - 1}, r"gallery_sids: negative"),
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
    [((), "groups"), (("X",), "groups"), (("U", "U"), "groups"), (GROUPS, "sids: negative")],
)
def test_aps_queries_input_errors(groups, match):
    with pytest.raises(CerberusError, match=match):
        aps_queries(np.array([[0, 0, 0, 0, -1]]), groups=groups)


def test_par_input_errors():
    ok = np.zeros((3, 12), dtype=np.int64)
    with pytest.raises(CerberusError, match=r"pred_values: expected shape \(n, 12\)"):
        par_accuracy(ok[:, :10], ok, MARKET1501)
    with pytest.raises(CerberusError, match="pred_values: shape"):
        par_accuracy(ok[:2], ok, MARKET1501)
    bad = ok.copy()
    bad[1, MARKET1501.index("age")] = 4
    with pytest.raises(CerberusError, match=r"true_values: age value 4 out of range \[-1, 4\)"):
        par_accuracy(ok, bad, MARKET1501)
    with pytest.raises(CerberusError, match="pred_values: -1"):
        par_accuracy(ok - 1, ok, MARKET1501)
    with pytest.raises(CerberusError, match="true_values: no labelled entry"):
        par_accuracy(ok, ok - 1, MARKET1501)
    with pytest.raises(CerberusError, match="expected integer"):
        par_accuracy(ok.astype(float), ok, MARKET1501)
