"""Verification ("is this the same person?"): pairs, ROC, thresholds at a false-positive rate.

Pure functions on arrays. A pair of crops is called *same person* when its similarity (the reID
similarity of method §5.1, the mean part cosine) is strictly greater than a threshold t:

    TPR(t) = #{same-identity pairs with s > t} / #same-identity pairs
    FPR(t) = #{different-identity pairs with s > t} / #different-identity pairs

:func:`threshold_at_fpr` gives the smallest t with FPR(t) <= a target: with the different-identity
scores sorted from the highest, n_(1) >= n_(2) >= ..., and k = floor(target * N_diff) false
positives allowed, t = n_(k+1) (an observed score; ties are counted on the safe side).

Pair sampling (:func:`sample_pairs`): a split of n images has n (n - 1) / 2 pairs. When that is at
most ``max_pairs``, all of them are used. Otherwise a seeded sample is drawn, each kind of pair
on its own, so that TPR and FPR each stay unbiased estimates over their own kind: every
same-identity pair (a uniform sample of ``max_pairs // 2`` of them if there are more), and
uniformly drawn distinct different-identity pairs for the rest of ``max_pairs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cerberus.errors import CerberusError

DEFAULT_FPRS = (1e-2, 1e-3, 1e-4)
DEFAULT_MAX_PAIRS = 4_000_000


@dataclass(frozen=True)
class Pairs:
    """Index pairs ``(i, j)``, ``i < j``, each of shape ``(P,)``, and ``same`` (bool, ``(P,)``).

    ``sampled`` tells whether they are a sample (see :func:`sample_pairs`) or all pairs.
    """

    i: np.ndarray
    j: np.ndarray
    same: np.ndarray
    sampled: bool


def _check_pids(pids: np.ndarray) -> np.ndarray:
    pids = np.asarray(pids)
    if pids.ndim != 1:
        raise CerberusError(f"pids: expected shape (N,), got {pids.shape}")
    if len(pids) < 2:
        raise CerberusError(f"pairs need at least 2 images, got {len(pids)}")
    return pids


def _same_identity_pairs(pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(i, j)``, ``i < j``, with ``pids[i] == pids[j]`` (per identity, no N x N matrix)."""
    order = np.argsort(pids, kind="stable")
    _, starts, counts = np.unique(pids[order], return_index=True, return_counts=True)
    ii, jj = [], []
    for s, c in zip(starts, counts):
        if c > 1:
            a, b = np.triu_indices(c, k=1)
            members = np.sort(order[s : s + c])
            ii.append(members[a])
            jj.append(members[b])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii).astype(np.int64), np.concatenate(jj).astype(np.int64)


def sample_pairs(pids: np.ndarray, *, max_pairs: int = DEFAULT_MAX_PAIRS, seed: int = 0) -> Pairs:
    """Same- and different-identity image pairs of a labelled split (all, or a seeded sample).

    Args:
        pids: identity of each image, shape ``(N,)``.
        max_pairs: largest number of pairs; above it the sample described in the module
            docstring is drawn (same ``seed``, same pairs).
        seed: seed of the sample.

    Returns:
        :class:`Pairs` with ``i < j``; all same-identity pairs first when sampled.
    """
    pids = _check_pids(pids)
    if max_pairs < 2:
        raise CerberusError(f"max_pairs {max_pairs}: must be at least 2")
    n = len(pids)
    total = n * (n - 1) // 2
    if total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return Pairs(i.astype(np.int64), j.astype(np.int64), pids[i] == pids[j], False)

    rng = np.random.default_rng(seed)
    si, sj = _same_identity_pairs(pids)
    different = total - len(si)
    if len(si) > max_pairs // 2:
        keep = np.sort(rng.choice(len(si), max_pairs // 2, replace=False))
        si, sj = si[keep], sj[keep]
    want = min(max_pairs - len(si), different)
    codes = np.zeros(0, np.int64)  # i * n + j of the different-identity pairs drawn so far
    while len(codes) < want:
        need = want - len(codes)
        a = rng.integers(0, n, size=2 * need + 16)
        b = rng.integers(0, n, size=2 * need + 16)
        ok = pids[a] != pids[b]
        lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
        fresh = np.setdiff1d(np.unique(lo * n + hi), codes)
        codes = np.concatenate([codes, rng.permutation(fresh)[:need]])
    codes = np.sort(codes)
    di, dj = codes // n, codes % n
    same = np.concatenate([np.ones(len(si), bool), np.zeros(len(di), bool)])
    return Pairs(np.concatenate([si, di]), np.concatenate([sj, dj]), same, True)


def pair_similarities(
    vectors: np.ndarray, i: np.ndarray, j: np.ndarray, *, chunk: int = 65536
) -> np.ndarray:
    """Inner products ``<vectors[i], vectors[j]>``, shape ``(P,)``, float64, ``chunk`` at a time.

    With retrieval vectors (:func:`cerberus.inference.scoring.embed_features`) this is the method
    §5.1 reID similarity, the mean over the five groups of the part cosines.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise CerberusError(f"vectors: expected shape (N, D), got {vectors.shape}")
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), chunk):
        a, b = vectors[i[s : s + chunk]], vectors[j[s : s + chunk]]
        out[s : s + chunk] = np.einsum("pd,pd->p", a, b, dtype=np.float64)
    return out


def _split_scores(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if scores.shape != same.shape or scores.ndim != 1:
        raise CerberusError(
            f"scores {scores.shape} and same {same.shape}: expected two arrays of shape (P,)"
        )
    if not np.isfinite(scores).all():
        raise CerberusError("scores: NaN or infinite similarities")
    pos, neg = scores[same], scores[~same]
    if len(pos) == 0 or len(neg) == 0:
        raise CerberusError(
            f"need same- and different-identity pairs, got {len(pos)} same and {len(neg)} different"
        )
    return pos, neg


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of the rule *same if s > t*, at every distinct score t.

    Args:
        scores: similarities, shape ``(P,)``.
        same: whether each pair is of one identity, shape ``(P,)``.

    Returns:
        ``(fpr, tpr, thresholds)``, each of shape ``(T + 1,)``: thresholds decreasing, the first
        ``+inf`` (nothing accepted, FPR = TPR = 0), then each distinct score.

    >>> fpr, tpr, t = roc_curve(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0], bool))
    >>> t.tolist(), fpr.tolist(), tpr.tolist()
    ([inf, 0.9, 0.8, 0.3, 0.1], [0.0, 0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5, 1.0])
    """
    pos, neg = _split_scores(scores, same)
    thresholds = np.concatenate([[np.inf], np.unique(np.concatenate([pos, neg]))[::-1]])
    pos, neg = np.sort(pos), np.sort(neg)
    # pairs with s > t: those right of t in the ascending order
    tp = len(pos) - np.searchsorted(pos, thresholds, side="right")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="right")
    return fp / len(neg), tp / len(pos), thresholds


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a ROC curve (trapezoids; ``fpr`` increasing, as :func:`roc_curve` gives it).

    The last point is extended to (1, 1): a threshold below every score accepts all pairs.
    """
    x = np.concatenate([np.asarray(fpr, np.float64), [1.0]])
    y = np.concatenate([np.asarray(tpr, np.float64), [1.0]])
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def threshold_at_fpr(
    scores: np.ndarray, same: np.ndarray, target_fpr: float
) -> dict[str, float | int | bool]:
    """The smallest threshold whose FPR is at most ``target_fpr``, with its TPR.

    Returns a dict: ``fpr_target``, ``threshold`` (same person if s > threshold), ``tpr``,
    ``fpr`` (measured, <= target), ``false_positives`` and ``resolved``: whether the different-
    identity pairs can measure the target at all (at least ``1 / target`` of them; otherwise the
    threshold is the highest different-identity score and the FPR measured is 0).
    """
    if not 0 < target_fpr < 1:
        raise CerberusError(f"target FPR {target_fpr!r}: must be between 0 and 1 (exclusive)")
    pos, neg = _split_scores(scores, same)
    k = int(np.floor(target_fpr * len(neg) + 1e-9))  # false positives allowed
    ranked = np.sort(neg)[::-1]
    t = float(ranked[min(k, len(neg) - 1)])
    fp = int(np.sum(neg > t))
    return {
        "fpr_target": float(target_fpr),
        "threshold": t,
        "tpr": float(np.mean(pos > t)),
        "fpr": fp / len(neg),
        "false_positives": fp,
        "resolved": k >= 1,
    }


def operating_points(
    scores: np.ndarray, same: np.ndarray, fprs: Sequence[float] = DEFAULT_FPRS
) -> list[dict[str, float | int | bool]]:
    """:func:`threshold_at_fpr` at each target FPR, in the given order."""
    return [threshold_at_fpr(scores, same, f) for f in fprs]


def rates_at_threshold(
    scores: np.ndarray, same: np.ndarray, threshold: float
) -> dict[str, float | int]:
    """TPR and FPR of *same if s > threshold* on pairs the threshold was not chosen on.

    Returns a dict: ``tpr``, ``fpr``, ``false_positives``, ``num_different_pairs``.

    >>> rates_at_threshold(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0], bool), 0.5)
    {'tpr': 0.5, 'fpr': 0.5, 'false_positives': 1, 'num_different_pairs': 2}
    """
    pos, neg = _split_scores(scores, same)
    fp = int(np.sum(neg > threshold))
    return {
        "tpr": float(np.mean(pos > threshold)),
        "fpr": fp / len(neg),
        "false_positives": fp,
        "num_different_pairs": int(len(neg)),
    }
