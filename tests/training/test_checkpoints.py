"""Checkpoints: a full disk mid-write keeps the previous checkpoint; an incomplete or unsafe
checkpoint is one line naming what is wrong."""

from __future__ import annotations

import os

import pytest
import torch

from cerberus.errors import CerberusError
from cerberus.training.checkpoints import load_checkpoint, save_checkpoint
from tests.conftest import assert_one_line


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, request):
    path = tmp_path / "last.pt"
    save_checkpoint({"format": "cerberus", "version": 1, "x": torch.ones(1000)}, path)
    request.getfixturevalue("full_disk")
    with pytest.raises(CerberusError, match=r"last.pt: could not write checkpoint \(No space"):
        save_checkpoint({"format": "cerberus", "version": 1, "x": torch.zeros(1000)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(1000))


@pytest.mark.parametrize(
    "change, names",
    [
        ({"config": None}, ["'config'"]),
        ({"meta": None}, ["'meta'"]),
        ({"meta": {"schema": "x", "num_classes": 4}}, ["schema"]),
        ({"meta": {"schema": "market1501"}}, ["num_classes"]),
        ({"model": None}, ["model"]),
        ({"drop": "trunk.4.0.conv1.weight"}, ["trunk.4.0.conv1.weight"]),
    ],
)
def test_incomplete_checkpoints_are_one_line(tmp_path, ckpt, cli, change, names):
    from cerberus.training.checkpoints import load_checkpoint, save_checkpoint

    state = load_checkpoint(ckpt)
    for key, value in change.items():
        if key == "drop":
            state["model"] = {k: v for k, v in state["model"].items() if not k.endswith(value)}
        elif value is None:
            del state[key]
        else:
            state[key] = value
    bad = tmp_path / "bad.pt"
    save_checkpoint(state, bad)
    code, _, err = cli("describe", "--checkpoint", bad, tmp_path / "x.jpg")
    assert_one_line(code, err, bad, *names)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


def test_unsafe_checkpoint_names_the_refusal_not_the_unsafe_load(tmp_path, cli):
    import torch

    evil = tmp_path / "evil.pt"
    torch.save({"format": "cerberus", "payload": _Exploit()}, evil)
    code, _, err = cli("describe", "--checkpoint", evil, tmp_path / "x.jpg")
    assert_one_line(code, err, evil, "refusing to load objects other than tensors", "untrusted")
    assert "weights_only" not in err
