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

from cerberus.attributes import GROUPS
from cerberus.config import Config
from cerberus.data.datasets import ReIDDataset, read_dataset
from cerberus.engine import train
from cerberus.errors import CerberusError
from cerberus.evaluation import evaluate_checkpoint, periodic_evaluation

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
) -> dict[str, Any]:
    """Train (or resume) one variant and evaluate it; the metrics are cached as JSON."""
    run_dir = out_dir / _slug(name)
    metrics_file = run_dir / "metrics.json"
    variant = cfg.replace(**changes, train={"output_dir": str(run_dir)})
    if metrics_file.is_file():
        cached = json.loads(metrics_file.read_text())
        if cached.get("config") == variant.to_dict():
            logger.info("%s: reusing %s", name, metrics_file)
            return cached["metrics"]
    logger.info("%s: training in %s", name, run_dir)
    evaluate = periodic_evaluation(variant, dataset) if variant.train.eval_every else None
    result = train(variant, resume=True, dataset=dataset, on_evaluate=evaluate)
    metrics = evaluate_checkpoint(result.checkpoint, dataset, progress=variant.train.progress)
    metrics_file.write_text(json.dumps({"config": variant.to_dict(), "metrics": metrics}))
    return metrics


def format_percent(x: float | None) -> str:
    """A metric in [0, 1] as a Markdown table cell: percent with 2 decimals, ``-`` if absent."""
    return "-" if x is None else f"{100 * x:.2f}"


def _row(name: str, m: dict[str, Any], *, attributes: bool) -> str:
    reid, aps, par = m["reid"], m["aps"]["full"], m["par"]
    cells = [name, format_percent(reid["map_score"]), format_percent(reid["rank1_score"])]
    if attributes:
        cells += [
            format_percent(aps["map_score"]),
            format_percent(aps["rank1_score"]),
            format_percent(par["mean_accuracy_score"]),
        ]
    else:
        cells += ["-", "-", "-"]
    return "| " + " | ".join(cells) + " |"


HEADER = "| variant | reID mAP | reID R-1 | APS mAP | APS R-1 | PAR mA |\n|---|---|---|---|---|---|"


def _chance_row(m: dict[str, Any]) -> str:
    c = m["chance"]
    return (
        "| "
        + " | ".join(
            [
                "chance (random ranking / majority class)",
                format_percent(c["reid"]["map_score"]),
                format_percent(c["reid"]["rank1_score"]),
                format_percent(c["aps"]["map_score"]),
                format_percent(c["aps"]["rank1_score"]),
                format_percent(c["par"]["mean_accuracy_score"]),
            ]
        )
        + " |"
    )


def run_table(
    which: str, cfg: Config, out_dir: str | Path, *, dataset: ReIDDataset | None = None
) -> str:
    """Run Table 6 (``"table6"``) or Table 8 (``"table8"``); returns the Markdown table."""
    variants = {"table6": TABLE6, "table8": TABLE8}.get(which)
    if variants is None:
        raise CerberusError(f"unknown ablation {which!r}; valid: table6, table8, unseen")
    out_dir = Path(out_dir)
    dataset = dataset or read_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes
    )
    rows, last = [], None
    for name, changes in variants:
        m = run_variant(cfg, name, changes, out_dir, dataset)
        uses_sem = changes.get("loss", {}).get("use_sem", cfg.loss.use_sem)
        rows.append(_row(name, m, attributes=uses_sem))
        last = m
    table = "\n".join([HEADER, *rows, _chance_row(last)]) + "\n"
    (out_dir / f"{which}.md").write_text(table)
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
    dataset = dataset or read_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes
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
    (out_dir / "unseen.md").write_text(table)
    return table
