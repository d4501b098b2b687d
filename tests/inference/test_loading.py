"""The one loader (inference/loading.py): a checkpoint and its weights pair give the same model,
schema, config and calibration; a bad file is refused in one line naming it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from cerberus.errors import CerberusError
from cerberus.evaluation.calibration import store_calibration
from cerberus.inference.export import export_weights
from cerberus.inference.loading import LoadedModel, load_model, model_fingerprint
from tests.training.test_weights import write_checkpoint


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> dict[str, Path]:
    """A checkpoint with a calibration made with its own weights, and its pair."""
    tmp = tmp_path_factory.mktemp("loading")
    ckpt = write_checkpoint(tmp / "last.pt", sid_counts={"H": [1, 2]})
    fingerprint = load_model(ckpt).fingerprint
    points = [{"fpr_target": 0.01, "threshold": 0.5, "tpr": 0.9}]
    store_calibration(ckpt, {"points": points, "chosen_fpr": 0.01, "fingerprint": fingerprint})
    weights, meta = export_weights(ckpt, tmp / "model")
    yield {"ckpt": ckpt, "weights": weights, "meta": meta}
    shutil.rmtree(tmp, ignore_errors=True)  # a model is ~250 MB: free it with the module


def test_a_checkpoint_and_its_pair_load_the_same(calibrated):
    a = load_model(calibrated["ckpt"])
    assert isinstance(a, LoadedModel) and a.path == calibrated["ckpt"]
    assert a.calibration is not None and a.calibration["chosen_fpr"] == 0.01
    assert a.meta["sid_counts"] == {"H": [1, 2]} and not a.model.training
    for name in ("weights", "meta"):
        b = load_model(calibrated[name])
        assert b.fingerprint == a.fingerprint == model_fingerprint(b.model)
        assert b.schema == a.schema and b.config == a.config
        assert b.calibration == a.calibration and b.meta == a.meta
        for (k, x), (k2, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
            assert k == k2 and torch.equal(x, y)


def test_fused_model_keeps_the_trained_fingerprint_and_the_features(calibrated):
    plain = load_model(calibrated["ckpt"])
    fused = load_model(calibrated["ckpt"], fuse_bn=True)
    assert fused.fingerprint == plain.fingerprint  # of the trained weights, before folding
    assert model_fingerprint(fused.model) != plain.fingerprint
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        f, g = plain.model(x)["features"], fused.model(x)["features"]
    assert torch.allclose(f, g, atol=1e-4)


def test_calibration_of_other_weights_is_dropped_with_a_warning(tmp_path, caplog):
    other = {"points": [], "chosen_fpr": 0.01, "fingerprint": "0" * 64}
    ckpt = write_checkpoint(tmp_path / "x.pt", calibration=other)
    with caplog.at_level(logging.WARNING):
        assert load_model(ckpt).calibration is None
    assert "other weights" in caplog.text and "x.pt" in caplog.text


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"],
)
def test_a_bad_file_is_refused_in_one_line_naming_it(tmp_path, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    with pytest.raises(CerberusError) as info:
        load_model(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)


def test_a_missing_file_and_missing_meta_are_named(tmp_path):
    with pytest.raises(CerberusError, match="nothing.pt: checkpoint not found"):
        load_model(tmp_path / "nothing.pt")
    ckpt = write_checkpoint(tmp_path / "a.pt")
    state = torch.load(ckpt, weights_only=True)
    del state["meta"]
    torch.save(state, tmp_path / "b.pt")
    with pytest.raises(CerberusError, match="b.pt: checkpoint has no 'meta' entry"):
        load_model(tmp_path / "b.pt")
