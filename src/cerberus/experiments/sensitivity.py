"""Hyper-parameter sensitivity on a validation split (paper section 4.3.4, Fig. 10).

The training identities are split into train / validation
(:func:`~cerberus.data.datasets.validation_split`); one parameter at a time moves over its grid
values, every other parameter stays at the config's value; each point is trained over several
seeds and evaluated on the validation split (reID mAP, APS mAP, PAR mA). The grid is data, a
YAML file a user can edit (``configs/sensitivity.yaml``)::

    parameters:
      - name: sigma            # label of the figure and table
        key: model.align_sigma # any config key
        values: [2, 5, 7, 10]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cerberus.config import Config, config_from_dict
from cerberus.data.datasets import ReIDDataset, unmatched_queries, validation_split
from cerberus.data.table import open_dataset
from cerberus.errors import CerberusError
from cerberus.evaluation.charts import line_chart
from cerberus.experiments.ablations import _get, _slug, check_seeds, format_spread, run_variant
from cerberus.files import atomic_write

logger = logging.getLogger(__name__)

METRICS: list[tuple[str, str]] = [
    ("reID mAP", "reid.map_score"),
    ("APS mAP", "aps.full.map_score"),
    ("PAR mA", "par.mean_accuracy_score"),
]
"""The three curves of Fig. 10: (name, dotted metrics key)."""


@dataclass(frozen=True)
class GridAxis:
    """One parameter of the grid: a label, a dotted config key and the values to try."""

    name: str
    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class GridPoint:
    """One configuration of the grid: ``changes`` are config section updates; the default
    configuration is the point with no changes (``axis`` None)."""

    axis: str | None
    value: Any
    changes: dict[str, dict[str, Any]]

    @property
    def run_name(self) -> str:
        return "default" if self.axis is None else f"{self.axis}={self.value}"


def parse_grid(raw: Any, where: str) -> list[GridAxis]:
    """Grid axes from the parsed YAML (a mapping with a ``parameters`` list); checked."""
    items = raw.get("parameters") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise CerberusError(f"{where}: expected a mapping with a non-empty 'parameters' list")
    axes, names = [], set()
    for i, item in enumerate(items):
        at = f"{where}: parameters[{i}]"
        if not isinstance(item, dict) or set(item) - {"name", "key", "values"}:
            raise CerberusError(f"{at}: expected a mapping with name, key and values")
        key, values = item.get("key"), item.get("values")
        if not isinstance(key, str) or key.count(".") != 1:
            raise CerberusError(f"{at}: key must be section.name, got {key!r}")
        if not isinstance(values, list) or not values:
            raise CerberusError(f"{at}: values must be a non-empty list")
        name = str(item.get("name") or key)
        if name in names:
            raise CerberusError(f"{at}: parameter name {name!r} appears twice")
        names.add(name)
        axes.append(GridAxis(name, key, tuple(values)))
    return axes


def load_grid(path: str | Path) -> list[GridAxis]:
    """Read a grid YAML file (module docstring); errors name the file and the entry."""
    path = Path(path)
    if not path.is_file():
        raise CerberusError(f"{path}: grid file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise CerberusError(f"{path}: not valid YAML") from None
    return parse_grid(raw, str(path))


def expand_grid(axes: Sequence[GridAxis], cfg: Config, where: str = "grid") -> list[GridPoint]:
    """The default point, then one point per (axis, value) whose value differs from ``cfg``'s.

    A value equal to the config's own is the default point (trained once, shared by every
    curve). Every point's config is built and validated here, so a bad key or value stops
    before any training.
    """
    base = cfg.to_dict()
    points = [GridPoint(None, None, {})]
    for axis in axes:
        section, name = axis.key.split(".")
        if section not in base or name not in base[section]:
            raise CerberusError(f"{where}: {axis.name}: unknown config key {axis.key!r}")
        for value in axis.values:
            raw = {**base, section: {**base[section], name: value}}
            checked = config_from_dict(raw, f"{where}: {axis.name}={value}")
            if getattr(getattr(checked, section), name) == getattr(getattr(cfg, section), name):
                continue
            points.append(GridPoint(axis.name, value, {section: {name: value}}))
    return points


def default_value(axis: GridAxis, cfg: Config) -> Any:
    section, name = axis.key.split(".")
    return getattr(getattr(cfg, section), name)


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_sensitivity(
    cfg: Config,
    out_dir: str | Path,
    axes: Sequence[GridAxis],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    dataset: ReIDDataset | None = None,
    split_seed: int = 0,
) -> str:
    """Train every grid point over ``seeds`` on the validation split; write the table and
    one PNG per parameter (``sensitivity_<name>.png``: reID mAP, APS mAP, PAR mA with +-sd
    bars, the config's own value underlined). Returns the Markdown table."""
    out_dir = Path(out_dir)
    seeds = check_seeds(seeds)
    points = expand_grid(axes, cfg)
    dataset = dataset or open_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes, schema=cfg.data.schema
    )
    val = validation_split(dataset, seed=split_seed)
    unmatched = unmatched_queries(val)
    logger.info(
        "validation split (seed %d): %d train / %d validation identities, %d queries (%d "
        "without a true match), %d gallery images; %d grid points x %d seeds",
        split_seed, val.num_train_ids, len(np.unique(val.query.pids)), len(val.query),
        unmatched, len(val.gallery), len(points), len(seeds),
    )  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        runs = []
        for seed in seeds:
            changes = {**point.changes, "train": {"seed": seed}}
            run_dir = out_dir / _slug(point.run_name) / f"seed{seed}"
            runs.append(
                run_variant(
                    cfg,
                    point.run_name,
                    changes,
                    out_dir,
                    val,
                    run_dir=run_dir,
                    keep_checkpoint=False,
                )  # fmt: skip
            )
        results[point.run_name] = runs
    header = "| parameter | value | " + " | ".join(m for m, _ in METRICS) + " |"
    lines = [
        f"Validation split (seed {split_seed}): {val.num_train_ids} training identities, "
        f"{len(np.unique(val.query.pids))} validation identities ({len(val.query)} queries, "
        f"{unmatched} of them without a true match in the gallery, {len(val.gallery)} gallery "
        f"images). Mean ± sd over seeds {', '.join(map(str, seeds))}; "
        "the config's own value in bold.",
        "",
        header,
        "|---|---|" + "---|" * len(METRICS),
    ]
    for axis in axes:
        own = default_value(axis, cfg)
        values = list(axis.values) + ([] if own in axis.values else [own])
        values = sorted(values) if all(isinstance(v, int | float) for v in values) else values
        curves: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m, _ in METRICS}
        for value in values:
            runs = results["default" if value == own else f"{axis.name}={value}"]
            cells = []
            for metric, key in METRICS:
                xs = [x for x in (_get(r, key) for r in runs) if x is not None]
                a = 100 * np.asarray(xs) if xs else np.array([np.nan])
                curves[metric][0].append(float(a.mean()))
                curves[metric][1].append(float(a.std(ddof=1)) if len(a) > 1 else 0.0)
                cells.append(format_spread([_get(r, key) for r in runs]))
            shown = f"**{_label(value)}**" if value == own else _label(value)
            lines.append(f"| {axis.name} | {shown} | " + " | ".join(cells) + " |")
        line_chart(
            out_dir / f"sensitivity_{_slug(axis.name)}.png",
            [_label(v) for v in values],
            curves,
            title=f"Sensitivity to {axis.name} ({axis.key}), validation split, {len(seeds)} seeds",
            x_title=f"{axis.name} (underlined: the config's value)",
            marked=values.index(own),
        )
    table = "\n".join(lines) + "\n"
    atomic_write(out_dir / "sensitivity.md", lambda fh: fh.write(table.encode()), "table")
    return table
