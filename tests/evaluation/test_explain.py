"""Attention maps (Fig. 8) and t-SNE (Fig. 9) on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cerberus.attributes.schema_files import MARKET1501
from cerberus.data.datasets import read_dataset
from cerberus.errors import CerberusError
from cerberus.evaluation.explain import (
    attention_figure,
    grad_cam_maps,
    pick_identities,
    tsne_embedding,
    tsne_figure,
    tsne_panel_data,
)
from tests.conftest import make_tree, tiny_model


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    root = make_tree(tmp_path_factory.mktemp("x") / "m", MARKET1501, size=(64, 32))
    return sorted((root / "query").glob("*.jpg"))[:3]


def test_grad_cam_maps_shape_range_and_predicted_sids(crops):
    model = tiny_model()
    maps, sids = grad_cam_maps(model, crops, height=64, width=32)
    assert maps.shape == (3, 5, 64, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert sids.shape == (3, 5)
    for k, g in enumerate("HULIC"):
        assert ((sids[:, k] >= 0) & (sids[:, k] < MARKET1501.num_sids[g])).all()
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # no gradient left behind


def test_attention_figure_has_one_row_per_image(tmp_path, crops):
    maps = np.random.default_rng(0).random((3, 5, 8, 4)).astype(np.float32)
    path = attention_figure(tmp_path / "a.png", crops, maps, tile=(64, 32))
    one = attention_figure(tmp_path / "b.png", crops[:1], maps[:1], tile=(64, 32))
    h3, h1 = Image.open(path).size[1], Image.open(one).size[1]
    assert h3 - h1 == 2 * (64 + 6)
    with pytest.raises(CerberusError, match="maps"):
        attention_figure(tmp_path / "c.png", crops, maps[:, :4])


def test_tsne_shapes_and_silhouette(tmp_path):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    pids = np.repeat(np.arange(1, 5), 6)
    feats = centres[pids - 1][:, None] + rng.normal(scale=0.1, size=(24, 5, 16))
    points, score = tsne_panel_data(feats, pids, "L")
    assert points.shape == (24, 2) and 0.5 < score <= 1
    noise, bad = tsne_panel_data(rng.normal(size=(24, 5, 16)), pids, "L")
    assert bad < score
    path = tsne_figure(tmp_path / "t.png", [("a", points), ("b", noise)], pids, title="t")
    assert Image.open(path).size[0] > 2 * 300
    with pytest.raises(CerberusError, match="N >= 3"):
        tsne_embedding(np.zeros((2, 4)))


def test_missing_sklearn_is_one_clear_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(CerberusError, match=r"pip install 'cerberus-reid\[figures\]'"):
        tsne_embedding(np.zeros((5, 4)))


def test_pick_identities_share_one_sid(tmp_path):
    root = make_tree(tmp_path / "m", MARKET1501, test_ids=tuple(range(1, 40, 2)))
    ds = read_dataset(root)
    sid, pids = pick_identities(ds.gallery, "I", num_ids=3, seed=0, min_images=2)
    k = "HULIC".index("I")
    for p in pids:
        assert (ds.gallery.sids[ds.gallery.pids == p, k] == sid).all()
    assert len(pids) <= 3
    with pytest.raises(CerberusError, match="group"):
        pick_identities(ds.gallery, "X")
