"""Faults while writing: a full disk mid-write leaves the previous checkpoint / index intact."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from cerberus.attributes.schema_files import MARKET1501
from cerberus.errors import CerberusError
from cerberus.inference.features import FeatureSet
from cerberus.store.npz import NpzIndex
from cerberus.training.checkpoints import load_checkpoint, save_checkpoint


class _FullDisk:
    """A file object that accepts ``limit`` bytes, then fails as a full disk does."""

    def __init__(self, fh, limit: int):
        self.fh, self.left = fh, limit

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.left:
            self.fh.write(data[: self.left])
            self.left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


@pytest.fixture
def full_disk(monkeypatch):
    """Every binary file opened for writing runs out of space after 1000 bytes."""
    real_open = open

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return _FullDisk(fh, 1000) if "w" in mode and "b" in mode else fh

    monkeypatch.setattr("builtins.open", fake_open)


def _index(n: int, seed: int) -> NpzIndex:
    rng = np.random.default_rng(seed)
    fs = FeatureSet(
        features=rng.normal(size=(n, 5, 4)).astype(np.float32),
        paths=[f"{i}.jpg" for i in range(n)],
        pids=np.arange(n),
        camids=np.zeros(n, dtype=np.int64),
        values=np.full((n, 12), -1),
        prototypes={
            g: rng.normal(size=(n_sids, 4)).astype(np.float32)
            for g, n_sids in MARKET1501.num_sids.items()
        },
        meta={"schema": "market1501", "fingerprint": "f"},
    )
    return NpzIndex.build(fs)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, request):
    path = tmp_path / "last.pt"
    save_checkpoint({"format": "cerberus", "version": 1, "x": torch.ones(1000)}, path)
    request.getfixturevalue("full_disk")
    with pytest.raises(CerberusError, match=r"last.pt: could not write checkpoint \(No space"):
        save_checkpoint({"format": "cerberus", "version": 1, "x": torch.zeros(1000)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(1000))


def test_full_disk_keeps_the_previous_index(tmp_path, request):
    path = _index(50, 0).save(tmp_path / "gallery.npz")
    request.getfixturevalue("full_disk")
    with pytest.raises(CerberusError, match=r"gallery.npz: could not write index \(No space"):
        _index(60, 1).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.npz"]
    assert len(NpzIndex.load(path)) == 50
