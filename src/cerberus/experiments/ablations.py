"""The paper's ablations as one command each (method §7): Table 6, Table 8, Figure 7(b).

Each variant is the same training code with a config change; runs go to
``out_dir/<variant>/`` and resume if interrupted; the result is a Markdown table.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cerberus.attributes.schema import GROUPS
from cerberus.config import Config
from cerberus.data.datasets import ReIDDataset
from cerberus.data.table import open_dataset
from cerberus.devices import resolve_device
from cerberus.errors import CerberusError
from cerberus.evaluation.evaluate import (
    _jsonable,
    evaluate_features,
    extract_with_config,
    periodic_evaluation,
    reid_camera_arguments,
)
from cerberus.files import atomic_write
from cerberus.inference.loading import load_model
from cerberus.training.engine import train

logger = logging.getLogger(__name__)

Variant = tuple[str, dict[str, dict[str, Any]]]

TABLE6: list[Variant] = [
    (
        "L_id only",
        {"loss": {"use_sem": False, "use_reg": False}, "model": {"use_alignment": False}},
    ),
    ("+ alignment", {"loss": {"use_sem": False, "use_reg": False}}),
    ("+ L_sem", {"loss": {"use_reg": False}}),
    ("+ L_reg (full)", {}),
]
"""Table 6: components added one at a time."""

TABLE8: list[Variant] = [
    ("m = 0", {"loss": {"margin": "0"}}),
    ("m = 0.6", {"loss": {"margin": "0.6"}}),
    ("adaptive", {}),
]
"""Table 8: fixed margins against the adaptive margin."""

TABLE7: list[Variant] = [
    ("He normal (default)", {}),
    ("He uniform", {"model": {"prototype_init": "he_uniform"}}),
    ("Xavier normal", {"model": {"prototype_init": "xavier_normal"}}),
    ("Xavier uniform", {"model": {"prototype_init": "xavier_uniform"}}),
    ("normal, std 0.01", {"model": {"prototype_init": "normal_0.01"}}),
    ("normal, std 0.1", {"model": {"prototype_init": "normal_0.1"}}),
    ("normal, std 1", {"model": {"prototype_init": "normal_1"}}),
    ("normal, std 10", {"model": {"prototype_init": "normal_10"}}),
]
"""Table 7: initialisers of the SID prototypes (:data:`cerberus.modeling.model.PROTOTYPE_INITS`)."""


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The training seeds of a comparison as a list: at least one, no repeats."""
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise CerberusError(f"seeds: expected distinct integers, got {seeds}")
    return seeds


def run_variant(
    cfg: Config,
    name: str,
    changes: dict[str, dict[str, Any]],
    out_dir: Path,
    dataset: ReIDDataset,
    *,
    decisions: Sequence[str] | None = None,
    run_dir: Path | None = None,
    keep_checkpoint: bool = True,
) -> dict[str, Any]:
    """Train (or resume) one variant and evaluate it; the metrics are cached as JSON.

    ``keep_checkpoint=False`` deletes the run's ``last.pt`` once its metrics are written (grids
    of a hundred trainings; the cached metrics are what a rerun reuses).

    The test features are extracted once and evaluated under each of ``decisions``
    (``"cosine"``, ``"posterior"``: :func:`~cerberus.evaluation.evaluate.evaluate_features`;
    ``"heads"``: PAR from the model's attribute heads). Returns the metrics of the first decision,
    with ``metrics["by_decision"]`` holding every decision's.
    """
    train_changes = {
        **changes.get("train", {}),
        "output_dir": str(run_dir or out_dir / _slug(name)),
    }
    variant = cfg.replace(**{**changes, "train": train_changes})
    decisions = list(decisions or [variant.eval.decision])
    run_dir = Path(variant.train.output_dir)
    metrics_file = run_dir / "metrics.json"
    key = {"config": variant.to_dict(), "decisions": decisions}
    if metrics_file.is_file():
        cached = json.loads(metrics_file.read_text())
        if {k: cached.get(k) for k in key} == key:
            logger.info("%s: reusing %s", name, metrics_file)
            return cached["metrics"]
    logger.info("%s: training in %s", name, run_dir)
    evaluate = periodic_evaluation(variant, dataset) if variant.train.eval_every else None
    result = train(variant, resume=True, dataset=dataset, on_evaluate=evaluate)
    device = resolve_device(variant.train.device, "train.device")  # where it trained
    model = load_model(result.checkpoint, device=device, fuse_bn=True).model
    feats = extract_with_config(
        model, dataset, variant, device=device, progress=variant.train.progress
    )
    by_decision = {}
    for decision in decisions:
        if decision == "heads":
            by_decision[decision] = evaluate_features(
                feats, dataset, attribute_predictor=_head_predictor(model)
            )
        else:
            by_decision[decision] = evaluate_features(
                feats, dataset, decision=decision, prior_scale=variant.eval.prior_scale
            )
    metrics = {**by_decision[decisions[0]], "by_decision": by_decision}
    text = json.dumps({**key, "metrics": metrics})
    atomic_write(metrics_file, lambda fh: fh.write(text.encode()), "metrics")
    if not keep_checkpoint:
        Path(result.checkpoint).unlink(missing_ok=True)
    return metrics


def _head_predictor(model: Any) -> Any:
    """PAR from a model's attribute heads (the FastAttr-style reference): features -> values."""

    @torch.no_grad()
    def predict(features: np.ndarray) -> np.ndarray:
        device = next(model.parameters()).device
        return model.predict_attributes(torch.from_numpy(features).to(device)).cpu().numpy()

    return predict


def format_percent(x: float | None) -> str:
    """A metric in [0, 1] as a Markdown table cell: percent with 2 decimals, ``-`` if absent."""
    return "-" if x is None else f"{100 * x:.2f}"


def format_spread(values: Sequence[float | None]) -> str:
    """Percent cell of a metric over seeds: ``mean ± sample sd`` (just the value for one seed)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return format_percent(xs[0])
    a = 100 * np.asarray(xs, dtype=np.float64)
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f}"


def _get(m: dict[str, Any], path: str) -> float | None:
    for part in path.split("."):
        if not isinstance(m, dict) or part not in m:
            return None
        m = m[part]
    return None if m is None or m != m else float(m)


Column = tuple[str, str, str]
"""(header, dotted metrics key, task: ``reid``, ``aps`` or ``par``); the chance level of a
column is the same key under ``metrics["chance"]`` with the task's setting dropped
(:data:`CHANCE_KEYS`)."""

BASE_COLUMNS: list[Column] = [
    ("reID mAP", "reid.map_score", "reid"),
    ("reID R-1", "reid.rank1_score", "reid"),
    ("APS mAP", "aps.full.map_score", "aps"),
    ("APS R-1", "aps.full.rank1_score", "aps"),
    ("PAR mA", "par.mean_accuracy_score", "par"),
]
PAR_COLUMNS: list[Column] = [
    ("PAR official", "par.official_accuracy_score", "par"),
    ("PAR label mA", "par.label_mean_accuracy_score", "par"),
]


def _row(
    name: str, runs: Sequence[dict[str, Any]], columns: Sequence[Column], tasks: set[str]
) -> str:
    """One table row; a task the variant was not trained for (no prototypes: no APS) is ``-``."""
    cells = [name]
    for _, key, task in columns:
        cells.append(format_spread([_get(m, key) for m in runs]) if task in tasks else "-")
    return "| " + " | ".join(cells) + " |"


def _header(columns: Sequence[Column]) -> str:
    names = ["variant", *[c[0] for c in columns]]
    return "| " + " | ".join(names) + " |\n" + "|---" * len(names) + "|"


HEADER = _header(BASE_COLUMNS)

CHANCE_KEYS = {"aps.full.map_score": "aps.map_score", "aps.full.rank1_score": "aps.rank1_score"}
"""Chance levels exist for the full APS query only, stored under ``chance.aps``."""


def _chance_row(m: dict[str, Any], columns: Sequence[Column]) -> str:
    cells = ["chance (random ranking / majority class)"]
    cells += [format_percent(_get(m["chance"], CHANCE_KEYS.get(key, key))) for _, key, _ in columns]
    return "| " + " | ".join(cells) + " |"


SEMANTIC: list[tuple[str, dict[str, dict[str, Any]], tuple[str, ...]]] = [
    ("hinge (paper)", {"loss": {"semantic": "hinge"}}, ("cosine", "posterior")),
    ("softmax (method §8)", {"loss": {"semantic": "softmax"}}, ("cosine", "posterior")),
    (
        "softmax, no alignment",
        {"loss": {"semantic": "softmax"}, "model": {"use_alignment": False}},
        ("cosine",),
    ),
    (
        "attribute classifier (FastAttr-style)",
        {
            "loss": {"use_sem": False, "use_reg": False, "lambda_attr": 1.0},
            "model": {"attribute_heads": True},
        },
        ("heads",),
    ),
]
"""The semantic objective: the paper's hinge against the discriminative softmax (method §8), each
under the paper's cosine decision and the prior-aware posterior, with the PAR reference of an
attribute classifier trained on the same backbone (its PAR from its heads, no APS)."""

ABLATIONS = (
    "table6", "table7", "table8", "semantic", "unseen", "conflict", "sensitivity", "silhouette",
)  # fmt: skip
"""Every ``cerberus ablate`` experiment."""

DECISION_NAMES = {"cosine": "nearest prototype", "posterior": "prior-aware", "heads": "heads"}


def run_table(
    which: str,
    cfg: Config,
    out_dir: str | Path,
    *,
    dataset: ReIDDataset | None = None,
    seeds: Sequence[int] | None = None,
    keep_checkpoints: bool = True,
) -> str:
    """Run an ablation table over seeds; returns the Markdown table (cells: mean ± sd).

    ``"table6"`` (components), ``"table7"`` (prototype initialisers), ``"table8"`` (margins),
    ``"semantic"`` (the semantic objective and decision, :data:`SEMANTIC`). Each run goes to
    ``out_dir/<variant>/seed<n>/``, resumes if interrupted and caches its metrics;
    ``keep_checkpoints=False`` deletes each run's checkpoint once its metrics are cached.
    """
    tables = {"table6": TABLE6, "table7": TABLE7, "table8": TABLE8}
    if which not in (*tables, "semantic"):
        raise CerberusError(f"unknown ablation {which!r}; valid: {', '.join(ABLATIONS)}")
    seeds = check_seeds(seeds if seeds is not None else [cfg.train.seed])
    out_dir = Path(out_dir)
    dataset = dataset or open_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes, schema=cfg.data.schema
    )
    if which == "semantic":
        variants, columns = SEMANTIC, BASE_COLUMNS + PAR_COLUMNS
    else:
        variants = [(n, c, (cfg.eval.decision,)) for n, c in tables[which]]
        columns = BASE_COLUMNS
    rows, last = [], None
    for name, changes, decisions in variants:
        runs = []
        for seed in seeds:
            seeded = {**changes, "train": {**changes.get("train", {}), "seed": seed}}
            runs.append(
                run_variant(
                    cfg,
                    name,
                    seeded,
                    out_dir,
                    dataset,
                    decisions=decisions,
                    run_dir=out_dir / _slug(name) / f"seed{seed}",
                    keep_checkpoint=keep_checkpoints,
                )
            )
        tasks = {"reid"}
        if changes.get("loss", {}).get("use_sem", cfg.loss.use_sem):
            tasks |= {"aps", "par"}
        if "heads" in decisions:
            tasks |= {"par"}
        for decision in decisions:
            label = name if len(decisions) == 1 else f"{name}, {DECISION_NAMES[decision]}"
            per_seed = [r["by_decision"][decision] for r in runs]
            rows.append(_row(label, per_seed, columns, tasks))
        last = runs[-1]
    header = _header(columns)
    if len(seeds) > 1:
        header = f"Mean ± sd over seeds {', '.join(map(str, seeds))}.\n\n" + header
    table = "\n".join([header, *rows, _chance_row(last, columns)]) + "\n"
    atomic_write(out_dir / f"{which}.md", lambda fh: fh.write(table.encode()), "table")
    return table


def sample_unseen_sids(
    dataset: ReIDDataset, k: int, *, seed: int, max_drop_fraction: float = 0.3
) -> tuple[str, ...]:
    """``k`` random SIDs of the test images, as ``"G:index"`` strings (Fig. 7(b)).

    As the paper words it: SIDs are drawn at random from those of the test identities, and the
    training identities having them are then excluded. Cap: a SID whose exclusion would take
    the removed training identities above ``max_drop_fraction`` of all is passed over (so that
    what remains still trains a model); :func:`unseen_summary` reports what was removed. A test
    SID that no training identity has is a valid draw (it removes nothing).
    """
    if k < 0:
        raise CerberusError(f"k: expected a number of SIDs >= 0, got {k}")
    rng = np.random.default_rng(seed)
    train_sids = dataset.train_attributes.sids
    test_sids = dataset.test_attributes.sids
    candidates = [
        (j, int(s)) for j in range(len(GROUPS)) for s in np.unique(test_sids[:, j]) if s >= 0
    ]
    order = rng.permutation(len(candidates))
    chosen: list[tuple[int, int]] = []
    dropped = np.zeros(len(train_sids), dtype=bool)
    for i in order:
        if len(chosen) == k:
            break
        j, s = candidates[i]
        trial = dropped | (train_sids[:, j] == s)
        if trial.mean() <= max_drop_fraction:
            chosen.append((j, s))
            dropped = trial
    if len(chosen) < k:
        raise CerberusError(
            f"cannot make {k} SIDs unseen without removing more than "
            f"{100 * max_drop_fraction:.0f}% of the training identities"
        )
    return tuple(f"{GROUPS[j]}:{s}" for j, s in chosen)


def unseen_summary(dataset: ReIDDataset, sids: Sequence[str]) -> dict[str, Any]:
    """What excluding ``sids`` does: training identities removed (count and fraction), SIDs
    that had no training identity anyway, and the test images whose identity has one of them."""
    table = dataset.train_attributes
    train_ids = np.isin(table.ids, np.unique(dataset.train.pids))
    tr, te = table.sids[train_ids], dataset.gallery.sids
    removed = np.zeros(len(tr), dtype=bool)
    test_hit = np.zeros(len(te), dtype=bool)
    absent = []
    for item in sids:
        g, _, idx = item.partition(":")
        j, s = GROUPS.index(g), int(idx)
        hit = tr[:, j] == s
        if not hit.any():
            absent.append(item)
        removed |= hit
        test_hit |= te[:, j] == s
    return {
        "removed_ids": int(removed.sum()),
        "removed_fraction": float(removed.mean()) if len(tr) else 0.0,
        "already_unseen": absent,
        "gallery_images_with_unseen": int(test_hit.sum()),
    }


UNSEEN_COLUMNS: list[Column] = BASE_COLUMNS


def run_unseen(
    cfg: Config,
    out_dir: str | Path,
    *,
    ks: Sequence[int] = (0, 1, 2, 3, 4, 6),
    seeds: Sequence[int] = (0, 1, 2),
    sid_seed: int = 0,
    max_drop_fraction: float = 0.3,
    dataset: ReIDDataset | None = None,
    keep_checkpoints: bool = True,
) -> str:
    """Figure 7(b): exclude the training identities of k random test SIDs; with and without
    L_reg, over ``seeds`` (the SIDs are drawn once per k with ``sid_seed``). Writes
    ``unseen.md`` and ``unseen.png`` (APS mAP and R-1 against k, with and without L_reg)."""
    from cerberus.evaluation.charts import line_chart

    out_dir = Path(out_dir)
    seeds = check_seeds(seeds)
    dataset = dataset or open_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes, schema=cfg.data.schema
    )
    header = (
        "| k | L_reg | unseen SIDs | removed train IDs | "
        + " | ".join(c[0] for c in UNSEEN_COLUMNS)
        + " |"
    )
    lines = [
        f"SIDs drawn from the test identities' SIDs (seed {sid_seed}); a SID whose exclusion "
        f"would remove more than {100 * max_drop_fraction:.0f}% of the training identities is "
        f"passed over (cap). Mean ± sd over training seeds {', '.join(map(str, seeds))}; "
        "a SID marked * had no training identity to begin with.",
        "",
        header,
        "|---|---|---|---|" + "---|" * len(UNSEEN_COLUMNS),
    ]
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for k in ks:
        sids = (
            sample_unseen_sids(dataset, k, seed=sid_seed, max_drop_fraction=max_drop_fraction)
            if k
            else ()
        )
        info = unseen_summary(dataset, sids)
        shown = ", ".join(s + ("*" if s in info["already_unseen"] else "") for s in sids) or "-"
        for use_reg in (False, True):
            name = f"k{k}_{'reg' if use_reg else 'noreg'}"
            runs = [
                run_variant(
                    cfg,
                    name,
                    {
                        "loss": {"use_reg": use_reg},
                        "data": {"exclude_sids": sids},
                        "train": {"seed": seed},
                    },
                    out_dir,
                    dataset,
                    run_dir=out_dir / name / f"seed{seed}",
                    keep_checkpoint=keep_checkpoints,
                )
                for seed in seeds
            ]
            cells = [format_spread([_get(m, key) for m in runs]) for _, key, _ in UNSEEN_COLUMNS]
            lines.append(
                f"| {k} | {'yes' if use_reg else 'no'} | {shown} | {info['removed_ids']} "
                f"({100 * info['removed_fraction']:.0f}%) | " + " | ".join(cells) + " |"
            )
            for metric, key in (
                ("APS mAP", "aps.full.map_score"),
                ("APS R-1", "aps.full.rank1_score"),
            ):
                label = f"{metric}, {'with' if use_reg else 'without'} L_reg"
                xs = 100 * np.asarray([_get(m, key) for m in runs], dtype=np.float64)
                curve = curves.setdefault(label, ([], []))
                curve[0].append(float(xs.mean()))
                curve[1].append(float(xs.std(ddof=1)) if len(xs) > 1 else 0.0)
    table = "\n".join(lines) + "\n"
    atomic_write(out_dir / "unseen.md", lambda fh: fh.write(table.encode()), "table")
    line_chart(
        out_dir / "unseen.png",
        [str(k) for k in ks],
        curves,
        title=f"Unseen SIDs (Fig. 7b): k test SIDs removed from training, {len(seeds)} seeds",
        x_title="k (number of SIDs made unseen)",
    )
    return table


CONFLICT_CHANGES: dict[str, dict[str, Any]] = {
    "loss": {"use_sem": False, "use_reg": False, "lambda_attr": 1.0, "attr_form": "bce"},
    "model": {"attribute_heads": True, "par_feature": True},
}
"""The two-head baseline of Fig. 1b: the reID head (the five representations under L_id: CE +
triplet) and a separate PAR head (a PAR feature, attribute logits, binary cross-entropy)."""


class _WithPar(torch.nn.Module):
    """Adapter for :func:`~cerberus.inference.embed.extract_features`: ``features`` are the five
    representations and the PAR feature stacked, ``(B, 6, d)``."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features, par = self.model.forward_with_par(x)
        return {"features": torch.cat([features, par[:, None]], dim=1)}


def conflict_metrics(
    reid_q: np.ndarray,
    reid_g: np.ndarray,
    par_q: np.ndarray,
    par_g: np.ndarray,
    dataset: ReIDDataset,
) -> dict[str, Any]:
    """reID of the two-head baseline with the reID feature alone and with both features.

    Args:
        reid_q, reid_g: reID features ``(Q, 5, d)``, ``(G, 5, d)``.
        par_q, par_g: PAR features ``(Q, d)``, ``(G, d)``.

    Returns:
        ``{"reid_only": reid metrics, "reid_plus_par": reid metrics}``. The concatenation is
        of the unit reID vector (method §5) and the unit PAR feature, each scaled by 1/sqrt(2):
        similarity = (mean cosine over the five representations + cosine of the PAR features) / 2.
    """
    from cerberus.evaluation.metrics import reid_metrics
    from cerberus.inference.scoring import embed_features, l2_normalize

    q, g = dataset.query, dataset.gallery
    eq, eg = embed_features(reid_q), embed_features(reid_g)
    only = eq @ eg.T
    both = (only + l2_normalize(par_q) @ l2_normalize(par_g).T) / 2
    cameras = reid_camera_arguments(dataset)
    return {
        "reid_only": reid_metrics(only, q.pids, g.pids, **cameras),
        "reid_plus_par": reid_metrics(both, q.pids, g.pids, **cameras),
    }


def _run_conflict_variant(
    cfg: Config, run_dir: Path, dataset: ReIDDataset, keep_checkpoint: bool
) -> dict[str, Any]:
    """Train (or reuse) one seed of the two-head baseline; its metrics, cached as JSON."""
    from cerberus.evaluation.metrics import par_accuracy, par_label_mean_accuracy
    from cerberus.inference.embed import extract_features

    variant = cfg.replace(**{**CONFLICT_CHANGES, "train": {"output_dir": str(run_dir)}})
    metrics_file = run_dir / "metrics.json"
    key = {"config": variant.to_dict(), "kind": "conflict"}
    if metrics_file.is_file():
        cached = json.loads(metrics_file.read_text())
        if {k: cached.get(k) for k in key} == key:
            return cached["metrics"]
    result = train(variant, resume=True, dataset=dataset)
    device = resolve_device(variant.train.device, "train.device")
    model = load_model(result.checkpoint, device=device).model
    net = _WithPar(model)
    kw = dict(
        height=variant.data.height, width=variant.data.width,
        batch_size=variant.eval.batch_size, num_workers=variant.eval.num_workers, device=device,
    )  # fmt: skip
    fq = extract_features(net, dataset.query, desc="query", **kw)
    fg = extract_features(net, dataset.gallery, desc="gallery", **kw)
    m = conflict_metrics(fq[:, :5], fg[:, :5], fq[:, 5], fg[:, 5], dataset)
    g = dataset.gallery
    rows = (g.pids > 0) & (g.values >= 0).any(1)
    with torch.no_grad():
        pred = model.predict_attributes(torch.from_numpy(fg[rows, 5]).to(device)).cpu().numpy()
    m["par"] = {
        **par_accuracy(pred, g.values[rows], dataset.schema),
        **par_label_mean_accuracy(
            pred, g.values[rows], dataset.schema, alt_values=g.alt_values[rows]
        ),
    }
    m = _jsonable(m)
    text = json.dumps({**key, "metrics": m})
    atomic_write(metrics_file, lambda fh: fh.write(text.encode()), "metrics")
    if not keep_checkpoint:
        Path(result.checkpoint).unlink(missing_ok=True)
    return m


def run_conflict(
    cfg: Config,
    out_dir: str | Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    dataset: ReIDDataset | None = None,
    keep_checkpoints: bool = True,
) -> str:
    """Fig. 1b: does adding attribute features help or hurt reID? A two-head baseline
    (:data:`CONFLICT_CHANGES`) evaluated with its reID feature alone and with the reID and PAR
    features together, beside Cerberus (``cfg`` as it is) on the same seeds. Writes
    ``conflict.md``; returns the table."""
    out_dir = Path(out_dir)
    seeds = check_seeds(seeds)
    dataset = dataset or open_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes, schema=cfg.data.schema
    )
    base = [
        _run_conflict_variant(
            cfg.replace(train={"seed": s}),
            out_dir / "two_head" / f"seed{s}",
            dataset,
            keep_checkpoints,
        )  # fmt: skip
        for s in seeds
    ]
    ours = [
        run_variant(
            cfg,
            "cerberus",
            {"train": {"seed": s}},
            out_dir,
            dataset,
            run_dir=out_dir / "cerberus" / f"seed{s}",
            keep_checkpoint=keep_checkpoints,
        )  # fmt: skip
        for s in seeds
    ]

    def cells(runs: Sequence[dict[str, Any]], reid: str, par: str) -> str:
        keys = (f"{reid}.map_score", f"{reid}.rank1_score", f"{par}.mean_accuracy_score",
                f"{par}.label_mean_accuracy_score")  # fmt: skip
        return " | ".join(format_spread([_get(m, k) for m in runs]) for k in keys)

    lines = [
        f"Mean ± sd over seeds {', '.join(map(str, seeds))}. PAR of the two-head baseline from "
        "its PAR head (binary cross-entropy), of Cerberus from the nearest prototype.",
        "",
        "| model | reID with | reID mAP | reID R-1 | PAR mA | PAR label mA |",
        "|---|---|---|---|---|---|",
        f"| two-head baseline | reID feature | {cells(base, 'reid_only', 'par')} |",
        f"| two-head baseline | reID + PAR features | {cells(base, 'reid_plus_par', 'par')} |",
        f"| Cerberus (this config) | five representations | {cells(ours, 'reid', 'par')} |",
    ]
    table = "\n".join(lines) + "\n"
    atomic_write(out_dir / "conflict.md", lambda fh: fh.write(table.encode()), "table")
    return table
