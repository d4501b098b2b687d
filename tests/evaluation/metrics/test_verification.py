"""Verification metrics: pairs, ROC and thresholds at a target FPR, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.errors import CerberusError
from cerberus.evaluation.metrics.verification import (
    operating_points,
    pair_similarities,
    roc_auc,
    roc_curve,
    sample_pairs,
    threshold_at_fpr,
)


def brute_force_threshold(scores, same, target):
    """The smallest observed score t (or -inf) whose FPR of "same if s > t" is <= target."""
    candidates = sorted(set(float(s) for s in scores)) + [float("inf")]
    negatives = [float(s) for s, m in zip(scores, same) if not m]
    positives = [float(s) for s, m in zip(scores, same) if m]
    for t in [float("-inf")] + candidates:
        fp = sum(1 for s in negatives if s > t)
        if fp / len(negatives) <= target:
            tp = sum(1 for s in positives if s > t)
            return t, tp / len(positives), fp / len(negatives)
    raise AssertionError("unreachable")


def random_pairs(seed: int, n: int = 3000, ties: bool = False):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.3
    scores = np.where(same, rng.normal(0.6, 0.15, n), rng.normal(0.2, 0.15, n))
    if ties:
        scores = np.round(scores, 2)
    return scores, same


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False)])
@pytest.mark.parametrize("target", [1e-1, 1e-2, 1e-3, 1e-4])
def test_threshold_matches_brute_force_on_random_pairs(seed, ties, target):
    scores, same = random_pairs(seed, ties=ties)
    t, tpr, fpr = brute_force_threshold(scores, same, target)
    point = threshold_at_fpr(scores, same, target)
    if point["resolved"]:
        assert point["threshold"] == t
    else:  # too few different pairs: the highest different score, FPR 0
        assert point["threshold"] == max(scores[~same]) and t <= point["threshold"]
        _, tpr, fpr = brute_force_threshold(scores, same, 0.0)
    assert point["tpr"] == pytest.approx(tpr)
    assert point["fpr"] == pytest.approx(fpr) and point["fpr"] <= target


def test_roc_curve_matches_a_loop():
    scores, same = random_pairs(3, n=300, ties=True)
    fpr, tpr, thresholds = roc_curve(scores, same)
    assert thresholds[0] == np.inf and (np.diff(thresholds) < 0).all()
    for f, r, t in zip(fpr, tpr, thresholds):
        assert f == pytest.approx(np.mean(scores[~same] > t))
        assert r == pytest.approx(np.mean(scores[same] > t))
    assert fpr[-1] == pytest.approx(1 - np.mean(scores[~same] == scores.min()))
    # AUC = P(positive > negative) + P(tie) / 2
    pos, neg = scores[same], scores[~same]
    auc = np.mean(pos[:, None] > neg[None]) + 0.5 * np.mean(pos[:, None] == neg[None])
    assert roc_auc(fpr, tpr) == pytest.approx(auc)


def test_hand_worked_points():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    same = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0], bool)  # 3 same, 7 different
    p = threshold_at_fpr(scores, same, 1 / 7 + 1e-6)  # one false positive allowed
    assert p["threshold"] == 0.5 and p["tpr"] == 1.0 and p["false_positives"] == 1
    p = threshold_at_fpr(scores, same, 0.1)  # none allowed: above the best different pair
    assert p["threshold"] == 0.7 and p["tpr"] == pytest.approx(2 / 3) and not p["resolved"]
    assert [q["fpr_target"] for q in operating_points(scores, same, (0.5, 0.2))] == [0.5, 0.2]


def test_all_pairs_when_few_and_a_seeded_sample_when_many():
    pids = np.repeat(np.arange(10), 4)  # 40 images, 780 pairs, 60 same
    every = sample_pairs(pids, max_pairs=10_000)
    assert not every.sampled and len(every.i) == 780 and every.same.sum() == 60
    assert (every.i < every.j).all()
    np.testing.assert_array_equal(every.same, pids[every.i] == pids[every.j])

    a = sample_pairs(pids, max_pairs=200, seed=5)
    b = sample_pairs(pids, max_pairs=200, seed=5)
    np.testing.assert_array_equal(a.i, b.i)
    assert a.sampled and len(a.i) == 200 and a.same.sum() == 60  # every same pair kept
    np.testing.assert_array_equal(a.same, pids[a.i] == pids[a.j])
    codes = a.i * 40 + a.j
    assert len(np.unique(codes)) == 200 and (a.i < a.j).all()

    few = sample_pairs(pids, max_pairs=50, seed=0)  # same pairs capped at half
    assert len(few.i) == 50 and few.same.sum() == 25


def test_pair_similarities_are_row_inner_products():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(20, 8)).astype(np.float32)
    i, j = np.array([0, 3, 5]), np.array([1, 4, 19])
    np.testing.assert_allclose(
        pair_similarities(v, i, j, chunk=2), [v[a] @ v[b] for a, b in zip(i, j)], rtol=1e-5
    )


def test_bad_inputs_are_named():
    with pytest.raises(CerberusError, match="must be between 0 and 1"):
        threshold_at_fpr(np.zeros(2), np.array([True, False]), 0.0)
    with pytest.raises(CerberusError, match="got 2 same and 0 different"):
        roc_curve(np.zeros(2), np.ones(2, bool))
    with pytest.raises(CerberusError, match="at least 2 images"):
        sample_pairs(np.array([1]))
