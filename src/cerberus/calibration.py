"""Calibration of "is this the same person?": thresholds on the reID similarity at chosen FPRs.

:func:`calibrate` embeds a labelled split with an :class:`~cerberus.inference.InferenceModel`
(the same path as ``search`` and ``verify``: no flip), forms same / different identity pairs
(all, or the seeded sample of :func:`~cerberus.metrics.verification.sample_pairs`), and computes
the ROC of the rule *same person if similarity > t* (similarity = the SPEC 5 mean part cosine)
and the threshold at each target FPR. The result is a plain dict (JSON-able):

- ``points``: per target FPR: ``fpr_target``, ``threshold``, ``tpr``, ``fpr`` (measured),
  ``false_positives``, ``resolved`` (enough different-identity pairs to measure it);
- ``chosen_fpr``: the operating point ``verify`` and ``search`` use unless told otherwise;
- ``split``, ``data``, ``num_images``, ``num_identities``, ``num_same_pairs``,
  ``num_different_pairs``, ``sampled``, ``seed``, ``max_pairs``, ``auc_score``, ``rule``;
- ``fingerprint``: the weights it was measured with (another model ignores it).

:func:`store_calibration` writes it into the checkpoint's ``meta`` (the file rewritten
atomically) or a weights pair's JSON; :func:`operating_point` and :func:`verdict` read it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cerberus.checkpoints import load_checkpoint, save_checkpoint
from cerberus.data.datasets import ImageSet, ReIDDataset
from cerberus.errors import CerberusError
from cerberus.inference import InferenceModel, embed_features, extract_features
from cerberus.metrics.verification import (
    DEFAULT_FPRS,
    DEFAULT_MAX_PAIRS,
    operating_points,
    pair_similarities,
    roc_auc,
    roc_curve,
    sample_pairs,
)
from cerberus.weights import is_weights_pair, update_metadata

SPLITS = ("test", "query", "gallery", "train")
RULE = "same person if similarity > threshold (similarity: mean part cosine, SPEC 5)"


def labelled_split(dataset: ReIDDataset, split: str) -> ImageSet:
    """The images of ``split`` with a real identity (no junk ``-1`` or distractor ``0``).

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
    return images.subset(images.pids > 0)


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
    pairs = sample_pairs(np.asarray(pids), max_pairs=max_pairs, seed=seed)
    scores = pair_similarities(embed_features(features), pairs.i, pairs.j)
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
