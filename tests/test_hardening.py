"""Bad input and faults through the command line (issue 12): exit code 2, one line on stderr
naming the file or option, no traceback, and good files left byte-identical.

Everything runs in-process through :func:`cerberus.cli.main` and nothing trains.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_tree

from cerberus.attributes import MARKET1501
from cerberus.cli import main
from cerberus.config import load_config

TINY_TRAIN = {
    "data": {"height": 64, "width": 32, "p": 4, "k": 2, "num_workers": 0},
    "model": {"backbone": "resnet18", "pretrained": False, "dim": 16},
    "optim": {"iterations": 2, "warmup_iterations": 1},
    "train": {"device": "cpu", "progress": False, "log_every": 1},
}


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args) -> (exit code, stdout, stderr)`` through the real entry point."""

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["cerberus", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def assert_one_line(code: int, err: str, *names: str) -> None:
    """Exit code 2 and exactly one line on stderr that names each of ``names``."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], err


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("bench") / "m", MARKET1501, size=(64, 32))


def tiny_yaml(tmp_path: Path, tree: Path, **sections) -> Path:
    raw = {k: dict(v) for k, v in TINY_TRAIN.items()}
    raw["data"]["root"] = str(tree)
    raw["train"]["output_dir"] = str(tmp_path / "run")
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def full_disk(monkeypatch):
    """Flushing any file to disk fails as on a full disk."""

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


# --------------------------------------------------------------------------- data loss


@pytest.fixture
def fake_eval(monkeypatch):
    """``eval`` without a model: the metrics are fixed, the write is what is tested."""
    import cerberus.evaluation as evaluation

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", lambda *a, **k: {"reid": {"mAP": 1}})
    monkeypatch.setattr(evaluation, "format_report", lambda m: "report")


@pytest.mark.parametrize("target", ["metrics.json", "sub/metrics.json"])
def test_eval_out_on_a_full_disk_keeps_the_good_file(tmp_path, cli, fake_eval, full_disk, target):
    out = tmp_path / target
    out.parent.mkdir(exist_ok=True)
    out.write_text('{"good": true}')
    code, _, err = cli("eval", "--checkpoint", tmp_path / "x.pt", "--out", out)
    assert_one_line(code, err, out, "No space left")
    assert out.read_text() == '{"good": true}'
    assert sorted(p.name for p in out.parent.iterdir() if p.name != "sub") == ["metrics.json"]


def test_train_config_yaml_on_a_full_disk_keeps_the_good_file(tmp_path, tree, cli, full_disk):
    config = tiny_yaml(tmp_path, tree)
    good = tmp_path / "run" / "config.yaml"
    good.parent.mkdir()
    good.write_bytes(b"good: true\n")
    code, _, err = cli("train", "-c", config, "--no-resume")
    assert_one_line(code, err, good)
    assert good.read_bytes() == b"good: true\n"


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_synth_never_deletes_a_folder_it_did_not_write(tmp_path, cli, overwrite):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_bytes(b"years of work")
    args = ["synth", "--out", home, "--train-ids", 2, "--test-ids", 2, "--workers", 1]
    code, _, err = cli(*args, *(["--overwrite"] if overwrite else []))
    assert_one_line(code, err, home, ".cerberus-synthetic")
    assert (home / "thesis.tex").read_bytes() == b"years of work"


def test_synth_overwrite_replaces_its_own_benchmark(tmp_path, cli):
    out = tmp_path / "syn"
    args = ["synth", "--out", out, "--train-ids", 2, "--test-ids", 2, "--workers", 1]
    assert cli(*args)[0] == 0
    assert (out / ".cerberus-synthetic").is_file()
    (out / "stale.txt").write_text("old")
    code, _, err = cli(*args)
    assert_one_line(code, err, out, "--overwrite")
    assert cli(*args, "--overwrite")[0] == 0
    assert not (out / "stale.txt").exists()


def test_stale_checkpoint_temporaries_are_removed_on_start(tmp_path):
    from cerberus.engine import _remove_stale_temporaries

    dead = tmp_path / ".last.pt.tmp999999999"  # beyond pid_max: no such process
    alive = tmp_path / f".last.pt.tmp{os.getppid()}"  # a running writer's
    foreign = tmp_path / ".notes.tmpfile"
    for p in (dead, alive, foreign):
        p.write_bytes(b"x")
    _remove_stale_temporaries(tmp_path)
    assert not dead.exists() and alive.exists() and foreign.exists()


def test_log_is_trimmed_back_to_the_resumed_iteration(tmp_path):
    from cerberus.engine import _trim_log

    log = tmp_path / "log.jsonl"
    rows = [json.dumps({"iteration": i, "total_loss": 1.0}) for i in range(1, 9)]
    log.write_text("\n".join(rows) + '\n{"iteration": 9, "tot')  # cut by the kill
    _trim_log(log, 5)
    assert [json.loads(x)["iteration"] for x in log.read_text().splitlines()] == [1, 2, 3, 4, 5]


def test_resume_refuses_a_changed_seed(tmp_path, tree, cli):
    import torch

    from cerberus.checkpoints import CHECKPOINT_VERSION, save_checkpoint

    config = tiny_yaml(tmp_path, tree)
    saved = load_config(config, ["train.seed=1"])
    state = {
        "format": "cerberus",
        "version": CHECKPOINT_VERSION,
        "iteration": 1,
        "model": {},
        "optimizer": {},
        "rng": {"torch": torch.get_rng_state()},
        "config": saved.to_dict(),
        "meta": {},
    }
    ckpt = tmp_path / "run" / "last.pt"
    save_checkpoint(state, ckpt)
    before = ckpt.read_bytes()
    code, _, err = cli("train", "-c", config)
    assert_one_line(code, err, ckpt, "train.seed")
    assert ckpt.read_bytes() == before
