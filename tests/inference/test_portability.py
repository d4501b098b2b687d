"""Files written in one working directory work from another (issue 12): features and index
files, checkpoints and a run's config.yaml; ``info`` sizes the classifiers from the data; a fresh
training run starts a new log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cerberus.attributes.schema_files import MARKET1501
from cerberus.cli import app
from cerberus.config import load_config
from cerberus.evaluation.evaluate import evaluate_checkpoint, format_report
from cerberus.inference.features import FeatureSet
from cerberus.store.npz import NpzIndex
from tests.conftest import TINY_TRAINING, make_tree

runner = CliRunner()
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic.yaml"

TINY = [*TINY_TRAINING, "train.log_every=1"]


def invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """Data, a run, a features file and an index, all written from ``a/`` with relative paths."""
    here = tmp_path_factory.mktemp("port")
    a = here / "a"
    make_tree(a / "data", MARKET1501, train_ids=(2, 4, 6, 8), size=(64, 32))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(a)
        invoke(
            "train", "-c", CONFIG, "--no-resume", *TINY, "data.root=data", "train.output_dir=run"
        )
        invoke(
            "extract", "--checkpoint", "run/last.pt", "--images", "data/bounding_box_test",
            "--out", "g.npz", "--workers", 0, "--device", "cpu",
        )  # fmt: skip
        invoke("index", "--features", "g.npz", "--out", "g.index.npz")
    (here / "b").mkdir()
    return here


def test_files_store_paths_that_resolve_from_anywhere(written):
    a = written / "a"
    feats = FeatureSet.load(a / "g.npz")
    index = NpzIndex.load(a / "g.index.npz")
    for paths in (feats.paths, index.paths):
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert Path(index.meta["checkpoint"]) == (a / "run" / "last.pt").resolve()
    cfg = load_config(a / "run" / "config.yaml", [])
    assert Path(cfg.data.root) == (a / "data").resolve()


def test_search_and_eval_from_another_folder(written, monkeypatch):
    a = written / "a"
    monkeypatch.chdir(written / "b")
    query = next((a / "data" / "query").glob("*.jpg"))
    out = invoke(
        "search", "--index", "../a/g.index.npz", "--image", query, "-k", 3, "--json",
        "--figure", "ranks.png", "--device", "cpu",
    )  # fmt: skip
    rows = json.loads(out)["results"]
    assert len(rows) == 3 and all(Path(r["path"]).is_file() for r in rows)
    assert (written / "b" / "ranks.png").is_file()
    metrics_out = invoke(
        "eval", "--checkpoint", "../a/run/last.pt", "--device", "cpu", "--out", "m.json"
    )
    # The same metrics and report as evaluating in the folder the run was written from.
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(a)
        expected = evaluate_checkpoint(Path("run/last.pt"), device="cpu")
    got = json.loads((written / "b" / "m.json").read_text())
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)  # NaN == NaN
    assert format_report(expected) in metrics_out
    assert expected["reid"]["num_valid_queries"] == 3  # every query of make_tree's 3 test ids
    assert expected["par"]["num_images"] == 15  # 3 ids x 5 gallery images, junk left out


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
