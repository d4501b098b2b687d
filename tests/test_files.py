"""Writing files (cerberus.files): a full disk or an unwritable output folder leaves the good file
byte-identical and is one line naming the path, whichever command writes."""

from __future__ import annotations

import errno
import os

import pytest

from tests.conftest import assert_one_line, tiny_yaml


@pytest.fixture
def full_disk(monkeypatch):
    """Flushing any file to disk fails as on a full disk."""

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


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


@pytest.mark.parametrize("where", ["synth", "synth-sheet", "train", "eval"])
def test_unwritable_output_is_one_line(tmp_path, tree, cli, fake_eval, where):
    """A file where the output folder should be (root ignores read-only permissions)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    target = blocker / "sub"
    small = ["--train-ids", 2, "--test-ids", 2, "--workers", 1]
    if where == "synth":
        args = ["synth", "--out", target, *small]
    elif where == "synth-sheet":
        args = ["synth", "--out", tmp_path / "s", *small, "--sheet", target / "sheet.png"]
    elif where == "train":
        args = ["train", "-c", tiny_yaml(tmp_path, tree, train={"output_dir": str(target)})]
    else:
        args = ["eval", "--checkpoint", tmp_path / "x.pt", "--out", target / "m.json"]
    code, _, err = cli(*args)
    assert_one_line(code, err, target)


def test_read_only_output_folder_is_one_line(tmp_path, cli, fake_eval, read_only):
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only(folder)
    code, _, err = cli("eval", "--checkpoint", tmp_path / "x.pt", "--out", folder / "m.json")
    assert_one_line(code, err, folder)
    code, _, err = cli("synth", "--out", folder / "s", "--train-ids", 2, "--test-ids", 2)
    assert_one_line(code, err, folder)
