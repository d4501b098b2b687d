"""The training engine's steps alone: the checkpoint dict, resume, the output folder, the log."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from cerberus.attributes.schema_files import MARKET1501
from cerberus.config import with_absolute_data_paths
from cerberus.errors import CerberusError
from cerberus.training.checkpoints import (
    CHECKPOINT_VERSION,
    load_checkpoint,
    save_checkpoint,
    training_checkpoint,
    training_meta,
)
from cerberus.training.engine import (
    TrainingLog,
    build_training,
    prepare_output,
    resume_from,
    set_up,
    training_data,
)
from tests.conftest import make_tree
from tests.training.test_engine import tiny_config


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(
        tmp_path_factory.mktemp("steps") / "m",
        MARKET1501,
        train_ids=tuple(range(2, 10, 2)),
        size=(64, 32),
    )


def _built(tree, out, *extra):
    cfg = with_absolute_data_paths(tiny_config(tree, out, *extra))
    run = set_up(cfg)
    dataset = training_data(cfg, None)
    model, _, optimizer = build_training(cfg, dataset, run)
    return cfg, run, dataset, model, optimizer


def test_training_checkpoint_is_the_documented_dict_and_resumes_exactly(tree, tmp_path):
    cfg, run, dataset, model, optimizer = _built(tree, tmp_path / "a")
    meta = training_meta(dataset, run.threads)
    assert meta["num_classes"] == dataset.num_train_ids and meta["threads"] == run.threads
    torch.rand(3)  # move the RNG: the checkpoint records it as it is now
    state = training_checkpoint(model, optimizer, 5, cfg, meta)
    assert list(state) == [
        "format", "version", "iteration", "model", "optimizer", "rng", "config", "meta",
    ]  # fmt: skip
    assert state["format"] == "cerberus" and state["version"] == CHECKPOINT_VERSION
    expected_next = torch.rand(4)
    save_checkpoint(state, run.checkpoint_path)
    assert load_checkpoint(run.checkpoint_path)["iteration"] == 5

    _, run2, _, fresh, opt2 = _built(tree, tmp_path / "a", "train.seed=0")
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    assert resume_from(run.checkpoint_path, cfg, fresh, opt2, run2) == 5
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(torch.rand(4), expected_next)  # the RNG state came back too


def test_resume_from_refuses_another_seed_in_one_line(tree, tmp_path):
    cfg, run, dataset, model, optimizer = _built(tree, tmp_path / "s")
    state = training_checkpoint(model, optimizer, 2, cfg, training_meta(dataset, run.threads))
    save_checkpoint(state, run.checkpoint_path)
    other, run2, _, model2, opt2 = _built(tree, tmp_path / "s", "train.seed=7")
    with pytest.raises(CerberusError, match="cannot resume: it was trained with train.seed=0"):
        resume_from(run.checkpoint_path, other, model2, opt2, run2)


def test_resume_warns_about_other_threads(tree, tmp_path, caplog):
    cfg, run, dataset, model, optimizer = _built(tree, tmp_path / "t")
    meta = {**training_meta(dataset, run.threads), "threads": run.threads + 1}
    save_checkpoint(training_checkpoint(model, optimizer, 1, cfg, meta), run.checkpoint_path)
    with caplog.at_level(logging.WARNING):
        resume_from(run.checkpoint_path, cfg, model, optimizer, run)
    assert "will not be bit-identical" in caplog.text


def test_prepare_output_cuts_the_log_back_to_the_resumed_iteration(tree, tmp_path):
    cfg, run, *_ = _built(tree, tmp_path / "o")
    run.out_dir.mkdir(parents=True)
    lines = [json.dumps({"iteration": i, "total_loss": 1.0}) for i in (1, 2, 3, 4)]
    run.log_path.write_text("\n".join(lines) + "\n" + '{"iteration": 5, "tot')  # cut by a kill
    prepare_output(cfg, run, 2)
    assert [json.loads(x)["iteration"] for x in run.log_path.read_text().splitlines()] == [1, 2]
    assert (run.out_dir / "config.yaml").is_file()
    prepare_output(cfg, run, 0)  # a fresh run: a new log
    assert run.log_path.read_text() == ""


def test_training_log_writes_iteration_one_and_every_nth(tree, tmp_path):
    cfg, run, *_ = _built(tree, tmp_path / "l", "train.log_every=3")
    run.out_dir.mkdir(parents=True)
    log = TrainingLog(cfg, run, 0)
    for i in range(1, 8):
        log.losses(i, 0.1, {"total_loss": float(i)})
    log.metrics(7, {"reid_map": 0.5})
    log.close()
    rows = [json.loads(x) for x in run.log_path.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 3, 6, 7]
    assert rows[0]["lr"] == 0.1 and {"elapsed_s", "data_wait_s"} <= set(rows[0])
    assert rows[-1] == {"iteration": 7, "reid_map": 0.5}
    assert log.first == {"total_loss": 1.0} and log.last == {"total_loss": 7.0}
