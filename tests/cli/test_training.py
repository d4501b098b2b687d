"""The training commands (train, info): a fresh run starts a new log; ``info`` sizes the
classifiers from the configured data."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import TINY_TRAINING, invoke

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic.yaml"

TINY = [*TINY_TRAINING, "train.log_every=1"]


def test_info_sizes_classifiers_from_the_configured_data(written, monkeypatch):
    a = written / "a"
    out = invoke("info", "-c", a / "run" / "config.yaml")
    assert "ID classifiers for 4 identities (the training set of" in out
    monkeypatch.chdir(written / "b")
    out = invoke("info", *TINY, "data.root=nowhere")
    assert "ID classifiers for 751 identities (the market1501 benchmark's" in out
    out = invoke("info", "--dataset", "dukemtmc", *TINY, "data.root=nowhere")
    assert "ID classifiers for 702 identities" in out
    out = invoke("info", "--num-classes", 10, *TINY)
    assert "ID classifiers for 10 identities (--num-classes)" in out


def test_fresh_run_starts_a_new_log(written, monkeypatch):
    monkeypatch.chdir(written / "a")
    log = Path("run") / "log.jsonl"
    before = log.read_text().splitlines()
    assert before
    invoke("train", "-c", CONFIG, "--no-resume", *TINY, "data.root=data", "train.output_dir=run")
    after = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(after) == len(before)
    assert [r["iteration"] for r in after] == sorted({r["iteration"] for r in after})
    assert os.path.getsize(log) > 0
