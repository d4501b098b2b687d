"""Calibration of "is this the same person?": thresholds on the reID similarity at chosen FPRs.

:func:`calibrate` embeds a labelled split with an :class:`~cerberus.inference.embed.InferenceModel`
(the same path as ``search`` and ``verify``: no flip), forms same / different identity pairs
(all, or the seeded sample of :func:`~cerberus.evaluation.metrics.verification.sample_pairs`), and
computes the ROC of the rule *same person if similarity > t* (similarity = the method §5.1 mean part
cosine) and the threshold at each target FPR. The result is a plain dict (JSON-able):

- ``points``: per target FPR: ``fpr_target``, ``threshold``, ``tpr``, ``fpr`` (measured),
  ``false_positives``, ``resolved`` (enough different-identity pairs to measure it);
- ``chosen_fpr``: the operating point ``verify`` and ``search`` use unless told otherwise;
- ``split``, ``data``, ``num_images``, ``num_identities``, ``num_same_pairs``,
  ``num_different_pairs``, ``sampled``, ``seed``, ``max_pairs``, ``auc_score``, ``rule``;
- ``fingerprint``: the weights it was measured with (another model ignores it);
- ``heldout``: an honest estimate of the same points (:func:`heldout_estimate`): the
  thresholds of ``points`` are chosen on the very pairs their TPR / FPR are measured on, so the
  FPR they promise is optimistic; here the identities are split into two seeded halves, each
  half's thresholds are measured on the other half's pairs, and the two are averaged.

The images are distinct files: an image listed twice (in a dataset without cameras the same file
can be a query and a gallery image) is counted once, so no image is paired with itself.

:func:`store_calibration` writes it into the checkpoint's ``meta`` (the file rewritten
atomically) or a weights pair's JSON; :func:`operating_point` and :func:`verdict` read it back.
:func:`calibration_after_training` is the hook ``cerberus train`` hands the training loop: the
same calibration, on the test split of the training data, stored in the last checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cerberus.data.datasets import ImageSet, ReIDDataset
from cerberus.errors import CerberusError
from cerberus.evaluation.metrics.verification import (
    DEFAULT_FPRS,
    DEFAULT_MAX_PAIRS,
    operating_points,
    pair_similarities,
    rates_at_threshold,
    roc_auc,
    roc_curve,
    sample_pairs,
)
from cerberus.files import same_file_key
from cerberus.inference.embed import InferenceModel, embed_features, extract_features
from cerberus.training.checkpoints import load_checkpoint, save_checkpoint
from cerberus.training.weights import is_weights_pair, update_metadata

if TYPE_CHECKING:
    from cerberus.config import Config

logger = logging.getLogger(__name__)

SPLITS = ("test", "query", "gallery", "train")
RULE = "same person if similarity > threshold (similarity: mean part cosine, method §5.1)"


def labelled_split(dataset: ReIDDataset, split: str) -> ImageSet:
    """The images of ``split`` with a real identity (no junk ``-1`` or distractor ``0``), each
    file once (the first listing of a path, compared by :func:`~cerberus.files.same_file_key`).

    ``"test"`` is the query and gallery images together.
    """
    if split not in SPLITS:
        raise CerberusError(f"--split {split!r}: valid: {', '.join(SPLITS)}")
    if split == "test":
        q, g = dataset.query, dataset.gallery
        images = ImageSet(
            q.paths + g.paths,
            np.concatenate([q.pids, g.pids]),
            np.concatenate([q.camids, g.camids]),
            np.concatenate([q.labels, g.labels]),
            np.concatenate([q.values, g.values]),
            dataset.schema,
        )
    else:
        images = getattr(dataset, split)
    seen: set[str] = set()
    keys = map(same_file_key, images.paths)
    first = np.array([not (k in seen or seen.add(k)) for k in keys], bool)
    return images.subset((images.pids > 0) & first)


HELDOUT_METHOD = (
    "identities split into two seeded halves; each half's thresholds measured on the other "
    "half's pairs; TPR / FPR averaged over the two"
)


def identity_halves(pids: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(N,)`` bool: the images of a seeded random half of the identities (``floor(n / 2)`` of
    the ``n`` identities); the others are the second half."""
    ids = np.unique(pids)
    chosen = np.random.default_rng(seed).permutation(ids)[: len(ids) // 2]
    return np.isin(pids, chosen)


def _pair_scores(
    vectors: np.ndarray, pids: np.ndarray, max_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    pairs = sample_pairs(pids, max_pairs=max_pairs, seed=seed)
    return pair_similarities(vectors, pairs.i, pairs.j), pairs.same


def heldout_estimate(
    vectors: np.ndarray,
    pids: np.ndarray,
    fprs: Sequence[float],
    *,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    seed: int = 0,
) -> dict[str, Any]:
    """TPR / FPR of thresholds chosen on other identities' pairs (identity-disjoint halves).

    The identities are split by :func:`identity_halves`; for each half, the threshold at every
    target FPR is chosen on its pairs
    (:func:`~cerberus.evaluation.metrics.verification.operating_points`) and its TPR / FPR measured
    on the other half's pairs; ``points`` averages the two folds.

    Args:
        vectors: ``(N, D)`` retrieval vectors (:func:`~cerberus.inference.scoring.embed_features`).
        pids: ``(N,)`` identities.
        fprs: target false-positive rates.
        max_pairs, seed: the pair sample of each half (:func:`sample_pairs`); ``seed`` also
            draws the halves.

    Returns:
        ``{"method", "seed", "num_identities": [a, b], "folds": [{"chosen_on", "points"}, ...],
        "points": [{"fpr_target", "tpr", "fpr", "resolved"}, ...]}``, or ``{"method",
        "skipped": reason}`` when a half lacks same- or different-identity pairs.
    """
    half = identity_halves(pids, seed)
    sizes = [len(np.unique(pids[half])), len(np.unique(pids[~half]))]
    if min(sizes) < 2:
        return {
            "method": HELDOUT_METHOD,
            "skipped": f"{sum(sizes)} identities: too few for two halves of at least 2",
        }
    scored = []
    for part in (half, ~half):
        scores, same = _pair_scores(vectors[part], pids[part], max_pairs, seed)
        if same.all() or not same.any():
            return {
                "method": HELDOUT_METHOD,
                "skipped": "a half of the identities has no same-identity pair",
            }
        scored.append((scores, same))
    folds = []
    for k, name in enumerate(("first", "second")):
        (choose, choose_same), (report, report_same) = scored[k], scored[1 - k]
        points = []
        for p in operating_points(choose, choose_same, fprs):
            measured = rates_at_threshold(report, report_same, p["threshold"])
            resolved = p["resolved"] and measured["num_different_pairs"] * p["fpr_target"] >= 1
            points.append({"fpr_target": p["fpr_target"], "threshold": p["threshold"],
                           **measured, "resolved": bool(resolved)})  # fmt: skip
        folds.append({"chosen_on": f"{name} half", "points": points})
    mean = [
        {
            "fpr_target": a["fpr_target"],
            "tpr": (a["tpr"] + b["tpr"]) / 2,
            "fpr": (a["fpr"] + b["fpr"]) / 2,
            "resolved": a["resolved"] and b["resolved"],
        }
        for a, b in zip(folds[0]["points"], folds[1]["points"])
    ]
    return {
        "method": HELDOUT_METHOD,
        "seed": int(seed),
        "num_identities": sizes,
        "folds": folds,
        "points": mean,
    }


def calibrate_features(
    features: np.ndarray,
    pids: np.ndarray,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    chosen_fpr: float = 1e-3,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    seed: int = 0,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Calibration dict (see the module docstring) and the ROC ``(fpr, tpr)`` of raw features.

    Args:
        features: ``(N, 5, d)`` representations.
        pids: ``(N,)`` identities.
        fprs: target false-positive rates; ``chosen_fpr`` is added if missing.
    """
    features = np.asarray(features)
    if features.ndim != 3 or len(features) != len(pids):
        raise CerberusError(
            f"features {features.shape} and pids {np.shape(pids)}: expected (N, 5, d) and (N,)"
        )
    fprs = sorted(set(float(f) for f in fprs) | {float(chosen_fpr)}, reverse=True)
    pids = np.asarray(pids)
    vectors = embed_features(features)
    pairs = sample_pairs(pids, max_pairs=max_pairs, seed=seed)
    scores = pair_similarities(vectors, pairs.i, pairs.j)
    fpr, tpr, _ = roc_curve(scores, pairs.same)
    cal = {
        "rule": RULE,
        "chosen_fpr": float(chosen_fpr),
        "points": operating_points(scores, pairs.same, fprs),
        "auc_score": roc_auc(fpr, tpr),
        "num_images": int(len(pids)),
        "num_identities": int(len(np.unique(pids))),
        "num_same_pairs": int(pairs.same.sum()),
        "num_different_pairs": int((~pairs.same).sum()),
        "sampled": bool(pairs.sampled),
        "max_pairs": int(max_pairs),
        "seed": int(seed),
        "heldout": heldout_estimate(vectors, pids, fprs, max_pairs=max_pairs, seed=seed),
    }
    return cal, (fpr, tpr)


def calibrate(
    net: InferenceModel,
    dataset: ReIDDataset,
    *,
    split: str = "test",
    progress: bool = False,
    **kwargs: Any,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Embed a labelled split with ``net`` and :func:`calibrate_features` (same keywords)."""
    images = labelled_split(dataset, split)
    if len(np.unique(images.pids)) < 2:
        raise CerberusError(f"{dataset.root}: the {split} split has fewer than 2 identities")
    features = extract_features(
        net.model,
        images,
        height=net.height,
        width=net.width,
        batch_size=net.batch_size,
        num_workers=net.num_workers,
        device=net.device,
        progress=progress,
        desc=split,
    )
    cal, roc = calibrate_features(features, images.pids, **kwargs)
    cal.update(split=split, data=str(Path(dataset.root).resolve()), fingerprint=net.fingerprint)
    return cal, roc


def store_calibration(path: str | Path, calibration: dict[str, Any]) -> Path:
    """Write ``calibration`` into a checkpoint's ``meta`` (atomically) or a pair's JSON."""
    path = Path(path)
    if is_weights_pair(path):
        return update_metadata(path, "calibration", calibration)
    state = load_checkpoint(path)
    state["meta"] = {**state.get("meta", {}), "calibration": calibration}
    save_checkpoint(state, path)
    return path


AFTER_TRAINING_SPLIT = "test"
"""The data training calibrates on: the query and gallery images of the training dataset, whose
identities the model was not trained on (the Market / Duke protocols keep them apart)."""


def calibration_after_training(
    cfg: Config, dataset: ReIDDataset
) -> Callable[[Path], dict[str, Any] | None]:
    """The hook ``train(on_finish=...)`` calls with the last checkpoint (``train.calibrate``).

    It calibrates the checkpoint as ``cerberus calibrate`` does by default (the
    :data:`AFTER_TRAINING_SPLIT` split of ``dataset``, target FPRs 1e-2 / 1e-3 / 1e-4, chosen
    1e-3, all pairs up to 4 million) and stores the result with ``made_by: "train"``; the
    threshold then says which data it came from (``split`` and ``data``). Nothing is stored,
    and a warning says why, when the split has fewer than 2 identities or no image pair of one
    identity (no validation data); a checkpoint already calibrated with its weights (a resumed
    run with nothing left to train) is left as it is. Returns what was stored, or ``None``.
    """

    def finish(checkpoint: Path) -> dict[str, Any] | None:
        images = labelled_split(dataset, AFTER_TRAINING_SPLIT)
        ids, counts = np.unique(images.pids, return_counts=True)
        if len(ids) < 2 or not (counts > 1).any():
            logger.warning(
                "%s: not calibrated: the %s split of %s has %d identities, %d with two images "
                "or more (needed: 2 identities, one of them twice); `cerberus calibrate "
                "--checkpoint %s --data DATA` calibrates it on other labelled data",
                checkpoint, AFTER_TRAINING_SPLIT, dataset.root, len(ids), int((counts > 1).sum()),
                checkpoint,
            )  # fmt: skip
            return None
        net = InferenceModel.from_checkpoint(
            checkpoint,
            device=cfg.train.device,
            batch_size=cfg.eval.batch_size,
            num_workers=cfg.eval.num_workers,
        )
        if net.calibration is not None:
            return None
        cal, _ = calibrate(net, dataset, split=AFTER_TRAINING_SPLIT)
        cal["made_by"] = "train"
        store_calibration(checkpoint, cal)
        point = operating_point(cal)
        logger.info("%s: calibrated: %s", checkpoint, describe_point(point, cal))
        return cal

    return finish


def operating_point(calibration: dict[str, Any], fpr: float | None = None) -> dict[str, Any]:
    """The calibrated point at target ``fpr`` (default: the chosen one)."""
    want = float(calibration["chosen_fpr"] if fpr is None else fpr)
    for p in calibration["points"]:
        if np.isclose(p["fpr_target"], want, rtol=1e-6, atol=0):
            return p
    have = ", ".join(f"{p['fpr_target']:g}" for p in calibration["points"])
    raise CerberusError(f"--fpr {want:g}: not calibrated; calibrated FPRs: {have}")


def verdict(similarity: float, point: dict[str, Any]) -> bool:
    """Same person: ``similarity > point["threshold"]``."""
    return bool(similarity > point["threshold"])


def describe_point(point: dict[str, Any], calibration: dict[str, Any]) -> str:
    """``"threshold 0.6123 at FPR 1e-03 (TPR 93.2%, test split, 700,000 different pairs)"``."""
    note = "" if point.get("resolved", True) else ", too few pairs to measure this FPR"
    return (
        f"threshold {point['threshold']:.4f} at FPR {point['fpr_target']:.0e} "
        f"(TPR {100 * point['tpr']:.1f}%, {calibration.get('split', '?')} split, "
        f"{calibration.get('num_different_pairs', 0):,} different-identity pairs{note})"
    )
