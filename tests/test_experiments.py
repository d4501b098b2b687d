"""Ablation runner: every variant trains, evaluates, caches, and lands in the Markdown table."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import make_tree
from test_engine import tiny_config

from cerberus.attributes import MARKET1501
from cerberus.data.datasets import read_dataset
from cerberus.errors import CerberusError
from cerberus.experiments import TABLE6, run_table, run_unseen, sample_unseen_sids


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
    import cerberus.experiments as experiments

    monkeypatch.setattr(experiments, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert run_table("table6", cfg, tmp_path / "t6") == table


def test_unseen_sids_are_sampled_from_train_and_test(tmp_path):
    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 42, 2)))
    ds = read_dataset(root)
    sids = sample_unseen_sids(ds, 2, seed=0, max_drop_fraction=0.6)
    assert len(sids) == 2 and len(set(sids)) == 2
    assert sample_unseen_sids(ds, 2, seed=0, max_drop_fraction=0.6) == sids
    for item in sids:
        g, s = item.split(":")
        k = "HULIC".index(g)
        assert int(s) in ds.train_attributes.sids[:, k]
        assert int(s) in ds.test_attributes.sids[:, k]
    assert np.isin(sids, sids).all()


def test_unseen_experiment_table(tmp_path):
    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 42, 2)), size=(64, 32))
    cfg = tiny_config(root, tmp_path / "unused", "optim.iterations=2", "eval.num_workers=0")
    table = run_unseen(cfg, tmp_path / "u", ks=(0, 1))
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 4 and "| 1 | yes |" in table


def test_format_spread_is_mean_and_sample_sd():
    from cerberus.experiments import format_spread

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
