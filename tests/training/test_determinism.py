"""Seeds you can trust: same seed (and thread count) gives bit-identical weights on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cerberus.attributes.schema_files import MARKET1501
from cerberus.config import load_config
from cerberus.training.checkpoints import load_checkpoint
from cerberus.training.engine import train
from tests.conftest import TINY_TRAINING, make_tree

TINY = [
    *TINY_TRAINING,
    "data.pad=2",
    "optim.iterations=3",
    "train.checkpoint_every=1000",
    "train.threads=1",  # fast on a loaded machine; the count is part of what must repeat
]


@pytest.fixture(autouse=True)
def _keep_thread_count():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(
        tmp_path_factory.mktemp("det") / "m", MARKET1501, train_ids=(2, 4, 6, 8, 10), size=(64, 32)
    )


def _train(tree: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    cfg = load_config(None, [*TINY, f"data.root={tree}", f"train.output_dir={out}", *extra])
    train(cfg, resume=False)
    return load_checkpoint(out / "last.pt")["model"]


def test_same_seed_same_weights_whatever_the_workers(tree, tmp_path):
    a = _train(tree, tmp_path / "a", "train.seed=3", "data.num_workers=0")
    b = _train(tree, tmp_path / "b", "train.seed=3", "data.num_workers=2")
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    c = _train(tree, tmp_path / "c", "train.seed=4", "data.num_workers=0")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_the_thread_count_used_is_saved(tree, tmp_path):
    """``train.threads=0`` (torch's default): the count used is saved, so the run repeats."""
    torch.set_num_threads(1)
    _train(tree, tmp_path / "a", "train.threads=0", "optim.iterations=1")
    assert load_config(tmp_path / "a" / "config.yaml").train.threads == 0  # as given
    assert load_checkpoint(tmp_path / "a" / "last.pt")["meta"]["threads"] == 1
