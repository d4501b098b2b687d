"""A benchmark's test split -> the three tasks' metrics -> a report (method §6).

:func:`extract_test_features` embeds the query and gallery images once; :func:`evaluate_features`
applies the method §5 rules (:mod:`cerberus.inference.embed`) and the protocols of method §6
(:mod:`cerberus.evaluation.metrics`, pure functions on arrays) to reID, APS (full and
leave-one-group-out) and PAR, with chance levels; :func:`evaluate_checkpoint` does both for a
checkpoint file; :func:`format_report` prints the table; :func:`periodic_evaluation` is the hook the
training loop is handed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cerberus.attributes.schema import GROUPS, Schema
from cerberus.config import Config
from cerberus.data.datasets import ReIDDataset
from cerberus.data.table import SCHEMA_FILE, dataset_kind, open_dataset
from cerberus.devices import resolve_device
from cerberus.errors import CerberusError
from cerberus.evaluation.metrics import (
    aps_chance,
    aps_metrics,
    aps_queries,
    par_accuracy,
    par_label_majority_chance,
    par_label_mean_accuracy,
    par_majority_chance,
    par_official_accuracy,
    par_official_majority_chance,
    reid_chance,
    reid_metrics,
)
from cerberus.files import same_file_key
from cerberus.inference.embed import (
    SID_DECISIONS,
    attribute_query_scores,
    embed_features,
    extract_features,
    posterior_scores,
    prototype_scores,
    sid_log_prior,
)
from cerberus.inference.loading import load_model
from cerberus.modeling.model import Cerberus

logger = logging.getLogger(__name__)

PAR_IMAGE_SET = "test gallery without junk and distractors"
"""The images PAR is scored on: those of Lin et al.'s official protocol (one per image)."""

NO_CAMERA_PROTOCOL = (
    "cameras unknown: only the query image itself (same path) is removed from the gallery, "
    "not its identity's same-camera images"
)
"""What the report says of reID on a dataset without cameras (method §6.1 needs cameras)."""


def reid_camera_arguments(dataset: ReIDDataset) -> dict[str, Any]:
    """The camera arguments of :func:`~cerberus.evaluation.metrics.reid_metrics` for a dataset: the
    cameras (method §6.1), or, for a dataset without cameras, image keys so that a query is removed
    only where the gallery holds the same file."""
    q, g = dataset.query, dataset.gallery
    if dataset.cameras_known:
        return {"query_camids": q.camids, "gallery_camids": g.camids}
    keys: dict[str, int] = {}
    qk = [keys.setdefault(same_file_key(p), len(keys)) for p in q.paths]
    gk = [keys.setdefault(same_file_key(p), len(keys)) for p in g.paths]
    return {
        "query_camids": None,
        "gallery_camids": None,
        "query_images": np.asarray(qk, dtype=np.int64),
        "gallery_images": np.asarray(gk, dtype=np.int64),
    }


@dataclass(frozen=True)
class EvalFeatures:
    """Features of a benchmark's test images, extracted once and reused by the three tasks.

    Attributes:
        query, gallery: raw representations, shape ``(Q, 5, d)`` / ``(G, 5, d)``.
        prototypes: ``{group: (S_G, d)}`` SID prototypes.
    """

    query: np.ndarray
    gallery: np.ndarray
    prototypes: dict[str, np.ndarray]


def extract_test_features(
    model: Cerberus,
    dataset: ReIDDataset,
    *,
    height: int,
    width: int,
    batch_size: int = 128,
    num_workers: int = 2,
    device: str = "cpu",
    flip: bool = False,
    progress: bool = False,
) -> EvalFeatures:
    """Extract the query and gallery representations once (method §5)."""
    kw = dict(
        height=height,
        width=width,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        flip=flip,
        progress=progress,
    )
    return EvalFeatures(
        query=extract_features(model, dataset.query, desc="query", **kw),
        gallery=extract_features(model, dataset.gallery, desc="gallery", **kw),
        prototypes={g: p.detach().float().cpu().numpy() for g, p in model.prototypes.items()},
    )


def extract_with_config(
    model: Cerberus,
    dataset: ReIDDataset,
    cfg: Config,
    *,
    device: str = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = False,
) -> EvalFeatures:
    """:func:`extract_test_features` at the input size and with the evaluation settings of a
    config (``batch_size`` / ``num_workers`` override ``cfg.eval``)."""
    return extract_test_features(
        model,
        dataset,
        height=cfg.data.height,
        width=cfg.data.width,
        batch_size=batch_size or cfg.eval.batch_size,
        num_workers=cfg.eval.num_workers if num_workers is None else num_workers,
        device=device,
        flip=cfg.eval.flip_test,
        progress=progress,
    )


def evaluate_features(
    feats: EvalFeatures,
    dataset: ReIDDataset,
    *,
    chance: bool = True,
    decision: str = "cosine",
    prior_scale: float = 10.0,
    attribute_predictor: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """reID, APS (full and leave-one-group-out) and PAR metrics from extracted features.

    reID: method §5.1 similarity, Market protocol (without cameras: see
    :func:`reid_camera_arguments`). APS (method §6.2): one query per distinct combination
    of the given groups among the test identities (their first annotated colours); gallery =
    test gallery without junk and distractors, plus the query images; an identity annotated with
    several colours is relevant under any of them. PAR: nearest prototype per group, decoded,
    on the images of Lin et al.'s official protocol (see
    :func:`~cerberus.evaluation.metrics.par_official_accuracy`): the test gallery without junk and
    distractors, one prediction per image, no query image; scored three ways: mA (the paper's),
    the official protocol and label-based mA. Chance levels: random ranking (exact expectation)
    and the majority answer for each PAR metric.

    ``decision="posterior"`` scores SIDs by the prior-aware posterior of method §8.2
    (:func:`~cerberus.inference.embed.posterior_scores`, priors from the training identities) for
    both APS and PAR. ``attribute_predictor`` (``(N, 5, d) features -> (N, A) values``, e.g. a
    model's attribute heads) replaces the prototype rule for PAR only.
    """
    if decision not in SID_DECISIONS:
        raise CerberusError(f"decision must be one of {SID_DECISIONS}, got {decision!r}")
    q, g = dataset.query, dataset.gallery
    qe, ge = embed_features(feats.query), embed_features(feats.gallery)
    scores = qe @ ge.T
    cams = reid_camera_arguments(dataset)
    out: dict[str, Any] = {"reid": reid_metrics(scores, q.pids, g.pids, **cams)}
    if not dataset.cameras_known:
        out["reid"]["protocol"] = NO_CAMERA_PROTOCOL

    # APS gallery: test gallery without junk and distractors, plus the query images.
    keep = g.pids > 0
    aps_feats = np.concatenate([feats.gallery[keep], feats.query])
    aps_sids = np.concatenate([g.sids[keep], q.sids])
    aps_alt = np.concatenate([g.alt_sids[keep], q.alt_sids])
    known = (aps_sids >= 0).any(1)  # unknown groups are judged per query (aps_metrics)
    aps_feats, aps_sids, aps_alt = aps_feats[known], aps_sids[known], aps_alt[known]
    if decision == "posterior":
        prior = sid_log_prior(dataset.train_sid_counts())

    def sid_scores(features: np.ndarray) -> list[np.ndarray]:
        """Per group ``(S_G, N)`` scores of every SID under the chosen decision rule."""
        cos = prototype_scores(features, feats.prototypes)
        return posterior_scores(cos, prior, scale=prior_scale) if decision == "posterior" else cos

    per_group = sid_scores(aps_feats)
    test_ids = np.unique(np.concatenate([g.pids[keep], q.pids]))
    id_sids = dataset.test_attributes.sids[np.isin(dataset.test_attributes.ids, test_ids)]

    aps: dict[str, Any] = {}
    settings = [("full", np.ones(5, bool))] + [
        (f"without_{G}", np.arange(5) != k) for k, G in enumerate(GROUPS)
    ]
    for name, setting in settings:
        queries = aps_queries(id_sids, groups=[G for G, m in zip(GROUPS, setting) if m])
        given = queries >= 0  # (Q, 5): a query leaves out its identity's unknown groups
        s = attribute_query_scores(np.maximum(queries, 0), given, per_group)
        aps[name] = aps_metrics(s, queries, aps_sids, given_groups=given, gallery_alt_sids=aps_alt)
        aps[name]["num_queries"] = len(queries)
        aps[name]["num_queries_without_unknown_groups"] = int((given == setting).all(1).sum())
    out["aps"] = aps

    # PAR on the official protocol's images: the test gallery without junk and distractors.
    par_rows = keep & (g.values >= 0).any(1)
    values, alt = g.values[par_rows], g.alt_values[par_rows]
    if attribute_predictor is not None:
        pred = np.asarray(attribute_predictor(feats.gallery[par_rows]))
    else:
        par_scores = sid_scores(feats.gallery[par_rows])
        pred = dataset.schema.from_sids(np.stack([x.argmax(0) for x in par_scores], axis=1))
    out["par"] = {
        **par_accuracy(pred, values, dataset.schema),
        **par_official_accuracy(pred, values, dataset.schema, alt_values=alt),
        **par_label_mean_accuracy(pred, values, dataset.schema, alt_values=alt),
        "image_set": PAR_IMAGE_SET,
        "num_images": int(par_rows.sum()),
    }
    if chance:
        full = aps_queries(id_sids)
        train, schema = dataset.train.values, dataset.schema
        out["chance"] = {
            "reid": reid_chance(q.pids, g.pids, **cams),
            "aps": aps_chance(full, aps_sids, given_groups=full >= 0, gallery_alt_sids=aps_alt),
            "par": {
                **par_majority_chance(train, values, schema),
                **par_official_majority_chance(train, values, schema, alt_values=alt),
                **par_label_majority_chance(train, values, schema, alt_values=alt),
            },
        }
    return _jsonable(out)


def checkpoint_dataset(
    cfg: Config,
    trained: Schema,
    checkpoint: str | Path,
    data_root: str | Path | None = None,
    dataset: ReIDDataset | None = None,
) -> ReIDDataset:
    """The labelled data a checkpoint is evaluated on (its config's, or ``data_root``), checked
    to follow the schema the model was trained with. The layout of ``data_root`` is detected
    (:func:`~cerberus.data.table.dataset_kind`): a model trained on a table dataset can be
    evaluated on a benchmark tree and the other way round."""
    if dataset is None:
        root = data_root if data_root is not None else cfg.data.root
        attributes = None if data_root is not None else cfg.data.attributes
        kind = cfg.data.dataset if data_root is None else dataset_kind(root, cfg.data.dataset)
        schema: str | Schema | None = cfg.data.schema if kind == cfg.data.dataset else None
        if kind == "table":
            # The data's own schema.yaml, else the schema the checkpoint carries (the schema
            # file the run was configured with need not exist any more).
            schema = None if Path(root, SCHEMA_FILE).is_file() else trained
        dataset = open_dataset(root, kind, attributes=attributes, schema=schema)
    if dataset.schema.to_dict() != trained.to_dict():
        raise CerberusError(
            f"{checkpoint}: model trained with the {trained.name} schema, the data at "
            f"{dataset.root} follows {dataset.schema.name}"
            + (" (same name, other attributes)" if trained.name == dataset.schema.name else "")
        )
    return dataset


def evaluate_checkpoint(
    checkpoint: str | Path,
    dataset: ReIDDataset | None = None,
    *,
    data_root: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint, extract test features once and compute reID, APS and PAR metrics."""
    device = str(resolve_device(device, "--device"))
    # BN folded (inference only: same features, less work)
    loaded = load_model(checkpoint, device=device, fuse_bn=True)
    model, cfg = loaded.model, loaded.config
    dataset = checkpoint_dataset(cfg, loaded.schema, checkpoint, data_root, dataset)
    feats = extract_with_config(
        model,
        dataset,
        cfg,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    return evaluate_features(
        feats, dataset, decision=cfg.eval.decision, prior_scale=cfg.eval.prior_scale
    )


def periodic_evaluation(
    cfg: Config, dataset: ReIDDataset
) -> Callable[[Cerberus, int], dict[str, float]]:
    """The hook ``train(on_evaluate=...)`` calls every ``train.eval_every`` iterations.

    It extracts the test split on the model's device and returns reID mAP / R-1, APS mAP and
    PAR mA, which the training loop logs.
    """

    def evaluate(model: Cerberus, iteration: int) -> dict[str, float]:
        device = str(next(model.parameters()).device)
        feats = extract_with_config(model, dataset, cfg, device=device)
        m = evaluate_features(
            feats,
            dataset,
            chance=False,
            decision=cfg.eval.decision,
            prior_scale=cfg.eval.prior_scale,
        )
        out = {
            "reid_map_score": m["reid"]["map_score"],
            "reid_rank1_score": m["reid"]["rank1_score"],
            "aps_map_score": m["aps"]["full"]["map_score"],
            "par_mean_accuracy_score": m["par"]["mean_accuracy_score"],
            "par_official_accuracy_score": m["par"]["official_accuracy_score"],
            "par_label_mean_accuracy_score": m["par"]["label_mean_accuracy_score"],
        }
        logger.info(
            "iteration %d: %s", iteration, ", ".join(f"{k}={v:.4f}" for k, v in out.items())
        )
        return out

    return evaluate


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _pct(x: float | None) -> str:
    return "   -  " if x is None or x != x else f"{100 * x:6.2f}"


def format_report(m: dict[str, Any]) -> str:
    """One plain-text table of the three tasks with chance levels beside (percentages)."""
    c = m.get("chance", {})
    lines = [f"{'task':34s} {'metric':8s} {'model':>7s} {'chance':>7s}"]
    reid, cr = m["reid"], c.get("reid", {})
    for key, label in (
        ("map_score", "mAP"),
        ("rank1_score", "R-1"),
        ("rank5_score", "R-5"),
        ("rank10_score", "R-10"),
    ):
        lines.append(f"{'reID':34s} {label:8s} {_pct(reid[key]):>7s} {_pct(cr.get(key)):>7s}")
    if "protocol" in reid:
        lines.append(f"reID protocol: {reid['protocol']}")
    ca = c.get("aps", {})
    for name, a in m["aps"].items():
        title = "APS full query" if name == "full" else f"APS partial, no {name[-1]} group"
        title += f" ({a['num_queries']} q)"
        for key, label in (("map_score", "mAP"), ("rank1_score", "R-1")):
            chance = _pct(ca.get(key)) if name == "full" else "   -  "
            lines.append(f"{title:34s} {label:8s} {_pct(a[key]):>7s} {chance:>7s}")
    full = m["aps"].get("full", {})
    reduced = full.get("num_queries", 0) - full.get("num_queries_without_unknown_groups", 0)
    if reduced > 0:
        lines.append(
            f"APS: {reduced} of {full['num_queries']} full queries leave out groups unknown for "
            "their identity (relevance judged on the known groups)"
        )
    par, cp = m["par"], c.get("par", {})
    counts = par.get("num_labelled", {})
    for attr, acc in par["attribute_accuracy_score"].items():
        chance = cp.get("attribute_accuracy_score", {}).get(attr)
        title = f"PAR {attr}" + (f" ({counts[attr]} img)" if attr in counts else "")
        lines.append(f"{title:34s} {'acc':8s} {_pct(acc):>7s} {_pct(chance):>7s}")
    rows = [("PAR mean", "mA", "mean_accuracy_score")]
    if "official_accuracy_score" in par:
        rows.append(("PAR official protocol (Lin et al.)", "acc", "official_accuracy_score"))
    if "label_mean_accuracy_score" in par:
        num_labels = len(par["label_accuracy_score"]) - len(par["left_out_labels"])
        rows.append((f"PAR label-based ({num_labels} labels)", "mA", "label_mean_accuracy_score"))
    for title, label, key in rows:
        lines.append(f"{title:34s} {label:8s} {_pct(par[key]):>7s} {_pct(cp.get(key)):>7s}")
    if "image_set" in par:
        lines.append(f"PAR scored on the {par['image_set']} ({par['num_images']} images)")
        fewer = {a: n for a, n in counts.items() if n < par.get("num_images", n)}
        if fewer:
            lines.append(
                "PAR attributes scored on fewer images (unknown labels left out): "
                + ", ".join(f"{a} {n}" for a, n in fewer.items())
            )
    return "\n".join(lines)
