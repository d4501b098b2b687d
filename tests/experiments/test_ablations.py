"""Ablation runner: every variant trains, evaluates, caches, and lands in the Markdown table."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cerberus.attributes.schema_files import MARKET1501
from cerberus.data.datasets import read_dataset
from cerberus.errors import CerberusError
from cerberus.experiments.ablations import (
    TABLE6,
    run_table,
    run_unseen,
    sample_unseen_sids,
    unseen_summary,
)
from tests.conftest import TINY_TRAINING, make_tree
from tests.training.test_engine import tiny_config


def test_table6_runs_every_variant_and_caches(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 18, 2)), size=(64, 32))
    cfg = tiny_config(root, tmp_path / "unused", "optim.iterations=2", "eval.num_workers=0")
    table = run_table("table6", cfg, tmp_path / "t6")
    rows = [r for r in table.splitlines() if r.startswith("| ") and "variant" not in r]
    assert [r.split("|")[1].strip() for r in rows[:4]] == [name for name, _ in TABLE6]
    assert rows[0].count(" - ") == 3  # L_id only: no APS / PAR columns
    assert re.search(r"\| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d\d \|", rows[3])
    assert (tmp_path / "t6" / "table6.md").read_text() == table
    # a second call reuses the cached metrics instead of training again
    import cerberus.experiments.ablations as experiments

    monkeypatch.setattr(experiments, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert run_table("table6", cfg, tmp_path / "t6") == table


def test_unseen_sids_are_sampled_from_the_test_identities(tmp_path):
    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 42, 2)))
    ds = read_dataset(root)
    sids = sample_unseen_sids(ds, 2, seed=0, max_drop_fraction=0.6)
    assert len(sids) == 2 and len(set(sids)) == 2
    assert sample_unseen_sids(ds, 2, seed=0, max_drop_fraction=0.6) == sids
    for item in sids:
        g, s = item.split(":")
        assert int(s) in ds.test_attributes.sids[:, "HULIC".index(g)]
    info = unseen_summary(ds, sids)
    assert 0 <= info["removed_fraction"] <= 0.6
    removed = np.zeros(len(ds.train_attributes), bool)
    for item in sids:
        g, s = item.split(":")
        removed |= ds.train_attributes.sids[:, "HULIC".index(g)] == int(s)
    assert info["removed_ids"] == removed.sum()
    with pytest.raises(CerberusError, match="more than 1%"):
        sample_unseen_sids(ds, 30, seed=0, max_drop_fraction=0.01)


def test_unseen_experiment_table(tmp_path):
    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 42, 2)), size=(64, 32))
    cfg = tiny_config(root, tmp_path / "unused", "optim.iterations=2", "eval.num_workers=0")
    table = run_unseen(cfg, tmp_path / "u", ks=(0, 1), seeds=(0,), max_drop_fraction=0.6)
    rows = [r for r in table.strip().splitlines() if r.startswith("| ") and "L_reg" not in r]
    assert len(rows) == 4 and "| 1 | yes |" in table
    assert "cap" in table and "removed train IDs" in table
    assert (tmp_path / "u" / "unseen.png").is_file()


def test_table7_lists_every_initialiser():
    from cerberus.experiments.ablations import TABLE7
    from cerberus.modeling.model import PROTOTYPE_INITS

    inits = [c.get("model", {}).get("prototype_init", "he_normal") for _, c in TABLE7]
    assert sorted(inits) == sorted(PROTOTYPE_INITS)


def test_conflict_metrics_two_modes():
    """reID with the reID feature alone ignores the PAR feature; with both, a PAR feature
    that matches identities helps and one that mixes them hurts."""
    from types import SimpleNamespace

    from cerberus.experiments.ablations import conflict_metrics

    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(1, 6), 4)
    cams = np.tile(np.arange(4), 5)
    q_rows = cams == 0
    ident = rng.normal(size=(5, 8))
    reid = ident[pids - 1][:, None] + rng.normal(scale=2.0, size=(len(pids), 5, 8))
    ds = SimpleNamespace(
        query=SimpleNamespace(pids=pids[q_rows], camids=cams[q_rows]),
        gallery=SimpleNamespace(pids=pids[~q_rows], camids=cams[~q_rows]),
        cameras_known=True,
    )
    good = ident[pids - 1] + rng.normal(scale=0.01, size=(len(pids), 8))
    bad = rng.normal(size=(len(pids), 8))
    m_good = conflict_metrics(reid[q_rows], reid[~q_rows], good[q_rows], good[~q_rows], ds)
    m_bad = conflict_metrics(reid[q_rows], reid[~q_rows], bad[q_rows], bad[~q_rows], ds)
    assert m_good["reid_only"]["map_score"] == m_bad["reid_only"]["map_score"]
    assert m_good["reid_plus_par"]["map_score"] > m_good["reid_only"]["map_score"]
    assert m_bad["reid_plus_par"]["map_score"] < m_good["reid_plus_par"]["map_score"]


def test_conflict_baseline_trains_and_reports_both_modes(tmp_path):
    from cerberus.experiments.ablations import run_conflict

    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 18, 2)), size=(64, 32))
    cfg = tiny_config(root, tmp_path / "unused", "optim.iterations=2", "eval.num_workers=0")
    table = run_conflict(cfg, tmp_path / "c", seeds=(0,), keep_checkpoints=False)
    assert "| two-head baseline | reID feature |" in table
    assert "| two-head baseline | reID + PAR features |" in table
    assert "| Cerberus (this config) |" in table
    assert not list((tmp_path / "c").rglob("last.pt"))
    saved = (tmp_path / "c" / "two_head" / "seed0" / "config.yaml").read_text()
    assert "par_feature: true" in saved and "attr_form: bce" in saved


def test_format_spread_is_mean_and_sample_sd():
    from cerberus.experiments.ablations import format_spread

    assert format_spread([0.5]) == "50.00"
    assert format_spread([0.5, 0.7, None]) == f"60.00 ± {np.std([50, 70], ddof=1):.2f}"
    assert format_spread([None]) == "-"


def test_table_over_seeds_reports_mean_and_spread(tmp_path):
    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 18, 2)), size=(64, 32))
    cfg = tiny_config(root, tmp_path / "unused", "optim.iterations=2", "eval.num_workers=0")
    table = run_table("table8", cfg, tmp_path / "t8", seeds=[0, 1])
    rows = [r for r in table.splitlines() if r.startswith("| ") and "variant" not in r]
    assert "seeds 0, 1" in table
    assert all(r.count("±") == 5 for r in rows[:3])  # every metric of every variant
    assert (tmp_path / "t8" / "m_0" / "seed1" / "metrics.json").is_file()
    with pytest.raises(CerberusError, match="distinct integers"):
        run_table("table8", cfg, tmp_path / "t8", seeds=[1, 1])


def test_semantic_table_rows_and_numbers_come_from_its_evaluations(tmp_path):
    """The headline table (run_table("semantic")): every row, column and cell, recomputed
    from the metrics each run cached (percent, 2 decimals; one seed, 2 iterations per run:
    the mean ± sd cells of several seeds are checked on table8 above)."""
    import json

    from cerberus.experiments.ablations import SEMANTIC

    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 18, 2)), size=(64, 32))
    cfg = tiny_config(root, tmp_path / "unused", "optim.iterations=2", "eval.num_workers=0")
    out = tmp_path / "sem"
    table = run_table("semantic", cfg, out, seeds=[3])
    assert (out / "semantic.md").read_text() == table
    lines = table.splitlines()
    columns = [("reID mAP", "reid.map_score"), ("reID R-1", "reid.rank1_score"),
               ("APS mAP", "aps.full.map_score"), ("APS R-1", "aps.full.rank1_score"),
               ("PAR mA", "par.mean_accuracy_score"),
               ("PAR official", "par.official_accuracy_score"),
               ("PAR label mA", "par.label_mean_accuracy_score")]  # fmt: skip
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["variant"] + [
        name for name, _ in columns
    ]
    rows = [[c.strip() for c in r.strip("|").split("|")] for r in lines[2:]]

    def value(m, key):
        for part in key.split("."):
            m = m[part]
        return 100 * m

    def cell(xs):
        return f"{xs[0]:.2f}"

    names = {"cosine": "nearest prototype", "posterior": "prior-aware", "heads": "heads"}
    expected, last = [], None
    for name, _, decisions in SEMANTIC:
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        runs = []
        for seed in (3,):
            cached = json.loads((out / slug / f"seed{seed}" / "metrics.json").read_text())
            assert cached["config"]["train"]["seed"] == seed
            assert cached["decisions"] == list(decisions)
            runs.append(cached["metrics"])
        last = runs[-1]
        for decision in decisions:
            per_seed = [r["by_decision"][decision] for r in runs]
            label = name if len(decisions) == 1 else f"{name}, {names[decision]}"
            no_aps = decision == "heads"  # the attribute classifier has no prototypes
            expected.append([label] + [
                "-" if no_aps and key.startswith("aps") else cell([value(m, key) for m in per_seed])
                for _, key in columns
            ])  # fmt: skip
    chance_keys = {"aps.full.map_score": "aps.map_score", "aps.full.rank1_score": "aps.rank1_score"}
    expected.append(["chance (random ranking / majority class)"] + [
        f"{value(last['chance'], chance_keys.get(key, key)):.2f}" for _, key in columns
    ])  # fmt: skip
    assert rows == expected
    assert len(rows) == 7  # hinge x 2 decisions, softmax x 2, no alignment, heads, chance


def test_silhouette_ablation_trains_both_margins_and_tabulates_each_seed(tmp_path, cli):
    """``cerberus ablate silhouette`` on a tiny setting: the table's values are the silhouettes
    of the trained checkpoints, recomputed here, and its spreads their mean ± sample sd."""
    import json

    from cerberus.evaluation.explain import identity_silhouette, pick_identities, tsne_images
    from cerberus.inference.embed import extract_features
    from cerberus.inference.loading import load_model

    pytest.importorskip("sklearn")
    root = make_tree(
        tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 18, 2)),
        test_ids=tuple(range(1, 30, 2)), size=(64, 32),
    )  # fmt: skip
    out = tmp_path / "fig9"
    args = ["ablate", "silhouette", "-c", "configs/synthetic.yaml", "--out", out, "--seeds",
            "0,1", "--groups", "I,C", "--ids", 4, f"data.root={root}",
            *[a for a in TINY_TRAINING if not a.startswith("optim.iterations")],
            "optim.iterations=2"]  # fmt: skip
    code, text, err = cli(*args)
    assert code == 0, err
    table = (out / "silhouette.md").read_text()
    assert table in text
    record = json.loads((out / "silhouette.json").read_text())
    data = read_dataset(root)
    rows = [r.split("|")[1:-1] for r in table.splitlines() if r.startswith("| ") and ":" in r]
    assert [(r[0].split(":")[0].strip(), r[1].strip()) for r in rows] == [
        ("I", "adaptive"),
        ("I", "m = 0"),
        ("C", "adaptive"),
        ("C", "m = 0"),
    ]
    for row in rows:
        group, model = row[0].split(":")[0].strip(), row[1].strip()
        sid, pids = pick_identities(data.gallery, group, num_ids=4, seed=0)
        assert record["groups"][group]["sid"] == sid and record["groups"][group]["pids"] == list(
            pids
        )
        images = tsne_images(data, pids)
        assert f"{group}:{sid} ({len(pids)} identities, {len(images)} images)" in row[0]
        scores = []
        for seed in (0, 1):
            slug = "adaptive" if model == "adaptive" else "m_0"
            loaded = load_model(out / slug / f"seed{seed}" / "last.pt")
            net, cfg = loaded.model, loaded.config
            assert cfg.train.seed == seed
            assert cfg.loss.margin == ("adaptive" if model == "adaptive" else "0")
            feats = extract_features(net, images, height=64, width=32, batch_size=64,
                                     num_workers=0, device="cpu")  # fmt: skip
            scores.append(identity_silhouette(feats[:, "HULIC".index(group)], images.pids))
        assert record["groups"][group]["silhouette"][model] == pytest.approx(scores, abs=1e-6)
        assert row[2].strip() == f"{np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f}"
        assert row[3].strip() == ", ".join(f"{x:.3f}" for x in scores)
    code, _, err = cli("ablate", "silhouette", "-c", "configs/synthetic.yaml", "--out", out,
                       "--groups", "X", f"data.root={root}")  # fmt: skip
    assert code == 2 and "groups: expected distinct letters among H, U, L, I, C" in err


def test_ablations_evaluate_on_the_configured_device(tmp_path, monkeypatch):
    """Evaluation runs where the config says training runs (``train.device``), not on a GPU
    merely because one is present (here: torch claims CUDA, the config says cpu)."""
    import torch

    import cerberus.experiments.ablations as experiments

    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 18, 2)), size=(64, 32))
    cfg = tiny_config(
        root, tmp_path / "unused", "optim.iterations=2", "eval.num_workers=0", "train.device=cpu"
    )
    trained, real = experiments.train, torch.cuda.is_available
    claim = {"cuda": False}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: claim["cuda"] or real())

    def train_then_claim_cuda(*args, **kwargs):
        claim["cuda"] = False  # training itself sees the truth
        result = trained(*args, **kwargs)
        claim["cuda"] = True  # evaluation: a GPU "is there", the config says cpu
        return result

    monkeypatch.setattr(experiments, "train", train_then_claim_cuda)
    table = run_table("table6", cfg, tmp_path / "t6")
    rows = [r for r in table.splitlines() if r.startswith("| ") and "variant" not in r]
    assert [r.split("|")[1].strip() for r in rows[:4]] == [name for name, _ in TABLE6]
