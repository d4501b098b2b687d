"""benchmarks/bench_real_par.py: mean class recall, the people bootstrap, the labels file."""

from __future__ import annotations

import sys
from itertools import product
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_real_par as bench  # noqa: E402

from cerberus.attributes.schema_files import MARKET1501  # noqa: E402
from cerberus.errors import CerberusError  # noqa: E402


def test_mean_recall_is_the_mean_of_per_class_recalls():
    labels = np.array(["m", "m", "m", "f", "f", "x"])
    assert bench.mean_recall(labels, np.array(["m"] * 6)) == pytest.approx(1 / 3)
    assert bench.mean_recall(labels, labels) == 1.0
    rng = np.random.default_rng(1)
    for _ in range(20):  # against a slow count
        pred = rng.choice(["m", "f", "x", "none"], size=6)
        slow = []
        for k in ("m", "f", "x"):
            hits = sum(1 for a, b in zip(labels, pred) if a == k and b == k)
            slow.append(hits / sum(1 for a in labels if a == k))
        assert bench.mean_recall(labels, pred) == pytest.approx(sum(slow) / 3)


def test_bootstrap_resamples_people_and_keeps_draws_with_every_class():
    people = np.array(["a", "a", "b", "c", "d"])
    labels = np.array(["m", "m", "f", "m", "m"])
    low, high, kept = bench.bootstrap_interval(labels, labels, people, draws=200, seed=3)
    assert (low, high) == (1.0, 1.0) and 0 < kept < 200  # draws without "b" are left out
    wrong = np.array(["m", "m", "m", "m", "m"])  # the only woman missed: mA 0.5 in every draw
    assert bench.bootstrap_interval(labels, wrong, people, draws=50, seed=3)[:2] == (0.5, 0.5)
    again = bench.bootstrap_interval(labels, np.array(["f", "m", "f", "m", "f"]), people, seed=3)
    assert again == bench.bootstrap_interval(
        labels, np.array(["f", "m", "f", "m", "f"]), people, seed=3
    )


def test_the_committed_labels_use_the_schema_values():
    rows = bench.read_labels(bench.LABELS)
    people = {r["person"] for r in rows}
    assert len(rows) >= 50 and len(people) >= 10
    allowed = {
        column: {*MARKET1501.attributes[MARKET1501.index(name)].values, bench.UNSURE}
        for column, name in bench.ATTRIBUTES.items()
    }
    for r, (column, values) in product(rows, allowed.items()):
        assert r[column] in values, (r["person"], r["frame"], column, r[column])
    for r in rows:
        assert int(r["bottom"]) - int(r["top"]) >= 70  # people at least 70 px tall
        assert 0 <= int(r["frame"]) < 795
    seen = {(r["person"], r["frame"]) for r in rows}
    assert len(seen) == len(rows)  # one crop per person and frame


def test_bad_labels_files_are_one_line(tmp_path):
    with pytest.raises(CerberusError, match="nope.csv: labels file not found"):
        bench.read_labels(tmp_path / "nope.csv")
    short = tmp_path / "short.csv"
    short.write_text("person,frame\np,1\n")
    with pytest.raises(CerberusError, match="short.csv: missing columns left"):
        bench.read_labels(short)
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(bench.COLUMNS) + "\np,x,1,2,3,4,male,black,blue,no,no,no\n")
    with pytest.raises(CerberusError, match="bad.csv, line 2: frame and box must be integers"):
        bench.read_labels(bad)
    with pytest.raises(CerberusError, match="expected NAME=CHECKPOINT"):
        bench.parse_model("last.pt")
