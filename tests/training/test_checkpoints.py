"""Checkpoints: a full disk mid-write keeps the previous checkpoint."""

from __future__ import annotations

import pytest
import torch

from cerberus.errors import CerberusError
from cerberus.training.checkpoints import load_checkpoint, save_checkpoint


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, request):
    path = tmp_path / "last.pt"
    save_checkpoint({"format": "cerberus", "version": 1, "x": torch.ones(1000)}, path)
    request.getfixturevalue("full_disk")
    with pytest.raises(CerberusError, match=r"last.pt: could not write checkpoint \(No space"):
        save_checkpoint({"format": "cerberus", "version": 1, "x": torch.zeros(1000)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(1000))
