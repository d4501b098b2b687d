"""Fig. 9 over seeds: identity silhouette of a group's representation, adaptive margin vs m = 0.

Fig. 9 of the paper shows, for test identities that share one SID of a group, the t-SNE of that
group's representation under two models (``cerberus visualize tsne``, one seed). Here the
comparison is made a number over seeds: each variant of :data:`VARIANTS` (the Table 8 margins)
is trained once per seed (the runs of :func:`~cerberus.experiments.ablations.run_variant`, cached
and resumed like the other ablations, checkpoints kept), the same identities are picked once per
group (:func:`~cerberus.evaluation.explain.pick_identities`: the SID shared by the most test
identities with 3+ gallery images, ``num_ids`` of them drawn with ``sid_seed``), and the identity
silhouette (cosine distance, :func:`~cerberus.evaluation.explain.identity_silhouette`, what the
t-SNE figure's caption prints) of f^G over their test gallery images is reported as mean ± sample
sd.
"""

from __future__ import annotations

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
from cerberus.evaluation.explain import identity_silhouette, pick_identities, tsne_images
from cerberus.experiments.ablations import TABLE8, Variant, _slug, check_seeds, run_variant
from cerberus.files import atomic_write_json, atomic_write_text
from cerberus.inference.embed import extract_features
from cerberus.inference.loading import load_model

VARIANTS: list[Variant] = [v for v in TABLE8 if v[0] in ("adaptive", "m = 0")][::-1]
"""The two models of Fig. 9: the adaptive margin (the config's own) and m = 0 (Table 8's)."""


def _silhouettes(
    checkpoint: Path,
    dataset: ReIDDataset,
    picks: dict[str, tuple[int, np.ndarray]],
    device: torch.device,
) -> dict[str, float]:
    """``{group: silhouette}`` of one model over each group's picked identities."""
    loaded = load_model(checkpoint, device=device)
    model, cfg = loaded.model, loaded.config
    out = {}
    for group, (_, pids) in picks.items():
        images = tsne_images(dataset, pids)
        feats = extract_features(
            model, images, height=cfg.data.height, width=cfg.data.width,
            batch_size=64, num_workers=0, device=device,
        )  # fmt: skip
        out[group] = identity_silhouette(feats[:, GROUPS.index(group)], images.pids)
    return out


def run_silhouette(
    cfg: Config,
    out_dir: str | Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    groups: Sequence[str] = ("L",),
    num_ids: int = 10,
    sid_seed: int = 0,
    dataset: ReIDDataset | None = None,
) -> str:
    """Train :data:`VARIANTS` over ``seeds`` and tabulate the identity silhouette per group.

    Runs go to ``out_dir/<variant>/seed<n>/`` (the layout of ``cerberus ablate table8``, so its
    runs are reused when ``out_dir`` is the same); writes ``silhouette.md`` (the returned table)
    and ``silhouette.json`` (every value).
    """
    seeds = check_seeds(seeds)
    groups = list(groups)
    if not groups or any(g not in GROUPS for g in groups) or len(set(groups)) != len(groups):
        raise CerberusError(f"groups: expected distinct letters among {', '.join(GROUPS)}")
    if num_ids < 2:
        raise CerberusError(f"num_ids: expected at least 2 identities, got {num_ids}")
    out_dir = Path(out_dir)
    device = resolve_device(cfg.train.device, "train.device")  # the config's, as training
    dataset = dataset or open_dataset(
        cfg.data.root, cfg.data.dataset, attributes=cfg.data.attributes, schema=cfg.data.schema
    )
    picks = {g: pick_identities(dataset.gallery, g, num_ids=num_ids, seed=sid_seed) for g in groups}
    values: dict[str, dict[str, list[float]]] = {g: {} for g in groups}
    for name, changes in VARIANTS:
        for seed in seeds:
            run_dir = out_dir / _slug(name) / f"seed{seed}"
            seeded = {**changes, "train": {**changes.get("train", {}), "seed": seed}}
            run_variant(cfg, name, seeded, out_dir, dataset, run_dir=run_dir)
            if not (run_dir / "last.pt").is_file():
                raise CerberusError(
                    f"{run_dir}: metrics cached but last.pt deleted (--no-keep-checkpoints); "
                    f"remove {run_dir / 'metrics.json'} to train it again"
                )
            for g, score in _silhouettes(run_dir / "last.pt", dataset, picks, device).items():
                values[g].setdefault(name, []).append(score)
    table = format_silhouette_table(values, picks, dataset, seeds, sid_seed)
    record: dict[str, Any] = {
        "seeds": seeds,
        "sid_seed": sid_seed,
        "groups": {
            g: {"sid": picks[g][0], "pids": [int(p) for p in picks[g][1]], "silhouette": values[g]}
            for g in groups
        },
    }
    atomic_write_json(out_dir / "silhouette.json", record, "silhouettes")
    atomic_write_text(out_dir / "silhouette.md", table, "table")
    return table


def format_silhouette_table(
    values: dict[str, dict[str, list[float]]],
    picks: dict[str, tuple[int, np.ndarray]],
    dataset: ReIDDataset,
    seeds: Sequence[int],
    sid_seed: int,
) -> str:
    """Markdown: one row per (group, model): mean ± sample sd (3 decimals) and every seed's."""
    seed_list = ", ".join(map(str, seeds))
    lines = [
        f"Identity silhouette (cosine) of f^G over the test gallery images of identities sharing "
        f"one SID (drawn with seed {sid_seed}; the same identities for every model). Mean ± sd "
        f"over training seeds {seed_list}.",
        "",
        f"| SID (identities, images) | model | silhouette, mean ± sd | seeds {seed_list} |",
        "|---|---|---|---|",
    ]
    for g, by_model in values.items():
        sid, pids = picks[g]
        num_images = len(tsne_images(dataset, pids))
        where = f"{g}:{sid} ({len(pids)} identities, {num_images} images)"
        for name, xs in by_model.items():
            a = np.asarray(xs, dtype=np.float64)
            spread = f"{a.mean():.3f} ± {a.std(ddof=1):.3f}" if len(a) > 1 else f"{a[0]:.3f}"
            each = ", ".join(f"{x:.3f}" for x in a)
            lines.append(f"| {where} | {name} | {spread} | {each} |")
    return "\n".join(lines) + "\n"
