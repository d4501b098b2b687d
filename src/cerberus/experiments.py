"""The paper's ablations as one command each (SPEC section 7): Table 6, Table 8, Figure 7(b).

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

from cerberus.attributes import GROUPS
from cerberus.checkpoints import load_model_from_checkpoint
from cerberus.config import Config
from cerberus.data.datasets import ReIDDataset
from cerberus.data.table import open_dataset
from cerberus.engine import train
from cerberus.errors import CerberusError
from cerberus.evaluation import evaluate_features, extract_with_config, periodic_evaluation
from cerberus.files import atomic_write
from cerberus.model import fuse_batchnorm

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


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def run_variant(
    cfg: Config,
    name: str,
    changes: dict[str, dict[str, Any]],
    out_dir: Path,
    dataset: ReIDDataset,
    *,
    decisions: Sequence[str] | None = None,
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """Train (or resume) one variant and evaluate it; the metrics are cached as JSON.

    The test features are extracted once and evaluated under each of ``decisions``
    (``"cosine"``, ``"posterior"``: :func:`~cerberus.evaluation.evaluate_features`; ``"heads"``:
    PAR from the model's attribute heads). Returns the metrics of the first decision, with
    ``metrics["by_decision"]`` holding every decision's.
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
    model, _, _ = load_model_from_checkpoint(result.checkpoint)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = fuse_batchnorm(model).to(device)
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
    ("softmax (SPEC 8)", {"loss": {"semantic": "softmax"}}, ("cosine", "posterior")),
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
"""The semantic objective: the paper's hinge against the discriminative softmax (SPEC 8), each
under the paper's cosine decision and the prior-aware posterior, with the PAR reference of an
attribute classifier trained on the same backbone (its PAR from its heads, no APS)."""

DECISION_NAMES = {"cosine": "nearest prototype", "posterior": "prior-aware", "heads": "heads"}


def run_table(
    which: str,
    cfg: Config,
    out_dir: str | Path,
    *,
    dataset: ReIDDataset | None = None,
    seeds: Sequence[int] | None = None,
) -> str:
    """Run an ablation table over seeds; returns the Markdown table (cells: mean ± sd).

    ``"table6"`` (components), ``"table8"`` (margins), ``"semantic"`` (the semantic objective
    and decision, :data:`SEMANTIC`). Each run goes to ``out_dir/<variant>/seed<n>/``, resumes if
    interrupted and caches its metrics.
    """
    tables = {"table6": TABLE6, "table8": TABLE8}
    if which not in (*tables, "semantic"):
        raise CerberusError(f"unknown ablation {which!r}; valid: table6, table8, semantic, unseen")
    seeds = list(seeds if seeds is not None else [cfg.train.seed])
    if not seeds or len(set(seeds)) != len(seeds):
        raise CerberusError(f"seeds: expected distinct integers, got {seeds}")
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
    """``k`` random test SIDs that also occur in training, as ``"G:index"`` strings.

    Sampled among SIDs whose removal keeps at least ``1 - max_drop_fraction`` of the
    training identities, so the remaining data still trains a model.
    """
    rng = np.random.default_rng(seed)
    train_sids = dataset.train_attributes.sids
    test_sids = dataset.test_attributes.sids
    n_train = len(train_sids)
    candidates = []
    for j in range(len(GROUPS)):
        for s in np.intersect1d(np.unique(test_sids[:, j]), np.unique(train_sids[:, j])):
            candidates.append((j, int(s)))
    order = rng.permutation(len(candidates))
    chosen: list[tuple[int, int]] = []
    dropped = np.zeros(n_train, dtype=bool)
    for i in order:
        j, s = candidates[i]
        trial = dropped | (train_sids[:, j] == s)
        if trial.mean() <= max_drop_fraction:
            chosen.append((j, s))
            dropped = trial
        if len(chosen) == k:
            break
    if len(chosen) < k:
        raise CerberusError(f"cannot make {k} SIDs unseen without removing too many identities")
    return tuple(f"{GROUPS[j]}:{s}" for j, s in chosen)


def run_unseen(
    cfg: Config,
    out_dir: str | Path,
    *,
    ks: Sequence[int] = (0, 2, 4),
    seed: int = 0,
    dataset: ReIDDataset | None = None,
) -> str:
    """Figure 7(b): remove the training identities of k test SIDs; with and without L_reg."""
    out_dir = Path(out_dir)
    dataset = dataset or open_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes, schema=cfg.data.schema
    )
    lines = [
        "| k unseen SIDs | L_reg | unseen SIDs | reID R-1 | APS R-1 | PAR mA |",
        "|---|---|---|---|---|---|",
    ]
    for k in ks:
        sids = sample_unseen_sids(dataset, k, seed=seed) if k else ()
        for use_reg in (False, True):
            name = f"k{k}_{'reg' if use_reg else 'noreg'}"
            m = run_variant(
                cfg,
                name,
                {"loss": {"use_reg": use_reg}, "data": {"exclude_sids": sids}},
                out_dir,
                dataset,
            )
            lines.append(
                f"| {k} | {'yes' if use_reg else 'no'} | {', '.join(sids) or '-'} | "
                f"{format_percent(m['reid']['rank1_score'])} | "
                f"{format_percent(m['aps']['full']['rank1_score'])} | "
                f"{format_percent(m['par']['mean_accuracy_score'])} |"
            )
    table = "\n".join(lines) + "\n"
    atomic_write(out_dir / "unseen.md", lambda fh: fh.write(table.encode()), "table")
    return table
