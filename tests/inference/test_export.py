"""ONNX export (method §2 and §5): the graph reproduces the data-dependent alignment per sample."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from tests.conftest import tiny_model

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from cerberus import __version__  # noqa: E402
from cerberus.attributes.schema import GROUPS  # noqa: E402
from cerberus.attributes.schema_files import MARKET1501  # noqa: E402
from cerberus.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from cerberus.errors import CerberusError  # noqa: E402
from cerberus.inference.export import (  # noqa: E402
    EXPORT_EXTRA_MESSAGE,
    EmbeddingNetwork,
    export_onnx,
    read_onnx_metadata,
    verify_onnx,
)
from cerberus.modeling.model import normalize_features  # noqa: E402

HEIGHT, WIDTH = 96, 48  # 6 x 3 local maps (last stride 1)
DIM = 16


def tiny(seed: int = 0, **kw):
    kw.setdefault("dim", DIM)
    return tiny_model(seed, **kw).eval()


def sample_images(n: int = 3) -> torch.Tensor:
    """Different images: noise, noise with a flat bottom, noise with a flat top, ..."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, HEIGHT, WIDTH, generator=g)
    if n > 1:
        x[1, :, HEIGHT // 2 :] = -1.5
    if n > 2:
        x[2, :, : HEIGHT // 3] = 1.0
    return x


def crops(row_heat: torch.Tensor, sigma: float) -> list[tuple[int, int]]:
    """(top, bottom) per sample as the alignment module picks them (method §2.3)."""
    out = []
    for h in row_heat:
        rows = torch.nonzero(h > sigma).flatten().tolist()
        out.append((rows[0], rows[-1]) if rows else (0, len(h) - 1))
    return out


def pick_sigma(row_heat: torch.Tensor) -> float:
    """A threshold midway between two heat values (never on one: ONNX's ReduceL2 and torch's
    norm may differ in the last bits, which would flip a row) for which at least one crop is not
    the identity and the crops differ across the samples. Preferred: more distinct crops, then
    more cropped samples, then a wider margin to the nearest heat value."""
    values = row_heat.flatten().unique().sort().values
    min_margin = 1e-3 * float(values.abs().max())
    identity = (0, row_heat.shape[1] - 1)
    best, best_score = None, None
    for lo, hi in zip(values[:-1].tolist(), values[1:].tolist()):
        sigma, margin = (lo + hi) / 2, (hi - lo) / 2
        c = crops(row_heat, sigma)
        n_cropped = sum(crop != identity for crop in c)
        if margin < min_margin or len(set(c)) < 2 or n_cropped == 0:
            continue
        score = (len(set(c)), n_cropped, margin)
        if best_score is None or score > best_score:
            best, best_score = sigma, score
    assert best is not None, "no threshold crops differently across the test images"
    return best


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """A tiny model whose sigma makes the alignment crop, exported with a dynamic batch."""
    model = tiny()
    x = sample_images()
    row_heat = model.forward_local_maps(x)["heat_map"].amax(dim=2)  # (B, rows)
    model.align_sigma = pick_sigma(row_heat)
    maps = model.forward_local_maps(x)
    got = list(zip(maps["top"].tolist(), maps["bottom"].tolist()))
    assert got == crops(row_heat, model.align_sigma)
    assert any(c != (0, row_heat.shape[1] - 1) for c in got)  # a real crop
    assert len(set(got)) > 1  # different crops in one batch
    model.train()  # export must switch to eval and back
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    path = export_onnx(model, out, height=HEIGHT, width=WIDTH, schema=MARKET1501)
    assert model.training
    model.eval()
    return model, path, x


def run_onnx(path, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features, embedding = session.run(["features", "embedding"], {"images": x.numpy()})
    return features, embedding


def test_onnx_reproduces_data_dependent_alignment(aligned):
    model, path, x = aligned
    # the alignment changes the local heads of the cropped samples
    with torch.no_grad():
        ref_features, ref_embedding = EmbeddingNetwork(model)(x)
        model.use_alignment = False
        plain = model.forward_features(x)
        model.use_alignment = True
    assert not torch.allclose(ref_features[:, :3], plain[:, :3], atol=1e-4)
    assert torch.allclose(ref_embedding, model.embed(x).detach())

    # exported with a batch of 2, run on 3 (and 1) different images
    features, embedding = run_onnx(path, x)
    assert features.shape == (3, len(GROUPS), DIM) and embedding.shape == (3, len(GROUPS) * DIM)
    assert np.abs(embedding - ref_embedding.numpy()).max() < 1e-4
    assert np.abs(embedding - normalize_features(plain).numpy()).max() > 1e-2  # not unaligned
    scale = float(ref_features.abs().max())
    assert np.abs(features - ref_features.numpy()).max() < 1e-4 * max(1.0, scale)
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    _, single = run_onnx(path, x[2:])
    assert np.abs(single - ref_embedding[2:].numpy()).max() < 1e-4

    diff = verify_onnx(model, path, x, atol=1e-4)
    assert 0.0 <= diff < 1e-4


def test_export_is_one_file_with_metadata(aligned):
    model, path, _ = aligned
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.onnx"]  # no data / temp files
    meta = read_onnx_metadata(path)
    assert meta["cerberus_version"] == __version__
    assert meta["input_name"] == "images" and meta["input_layout"] == "NCHW"
    assert (int(meta["input_height"]), int(meta["input_width"])) == (HEIGHT, WIDTH)
    assert json.loads(meta["mean"]) == list(IMAGENET_MEAN)
    assert json.loads(meta["std"]) == list(IMAGENET_STD)
    assert meta["schema"] == MARKET1501.name
    assert int(meta["dim"]) == DIM and int(meta["embedding_dim"]) == len(GROUPS) * DIM
    assert json.loads(meta["groups"]) == list(GROUPS)
    assert meta["alignment"] == "on"
    assert math.isclose(float(meta["align_sigma"]), model.align_sigma)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["input_height"] == str(HEIGHT)
    (inp,) = session.get_inputs()
    assert inp.name == "images" and inp.shape[1:] == [3, HEIGHT, WIDTH]
    assert not isinstance(inp.shape[0], int)  # dynamic batch
    assert [o.name for o in session.get_outputs()] == ["features", "embedding"]


def test_verify_rejects_other_models_and_bad_inputs(aligned):
    _, path, x = aligned
    other = tiny(seed=5)
    other.align_sigma = aligned[0].align_sigma
    with pytest.raises(CerberusError, match=r"tiny\.onnx: ONNX and PyTorch embeddings differ"):
        verify_onnx(other, path, x)
    with pytest.raises(CerberusError, match=r"tiny\.onnx: ONNX embeddings have shape"):
        verify_onnx(tiny(dim=8), path, x)
    with pytest.raises(CerberusError, match=r"tiny\.onnx: expects images of shape"):
        verify_onnx(aligned[0], path, torch.randn(1, 3, 64, 32))
    with pytest.raises(CerberusError, match=r"missing\.onnx: ONNX file not found"):
        verify_onnx(aligned[0], path.parent / "missing.onnx", x)


def test_export_without_alignment_static_batch(tmp_path):
    model = tiny(use_alignment=False)
    x = sample_images(2)
    path = export_onnx(
        model, tmp_path / "plain.onnx", height=HEIGHT, width=WIDTH, dynamic_batch=False
    )
    assert read_onnx_metadata(path)["alignment"] == "off"
    assert "schema" not in read_onnx_metadata(path)
    for i in range(2):
        assert verify_onnx(model, path, x[i : i + 1]) < 1e-4
    with pytest.raises(CerberusError, match=r"plain\.onnx: expects images of shape"):
        verify_onnx(model, path, x)  # batch fixed to 1


def test_bad_output_paths(tmp_path):
    model = tiny()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(CerberusError, match=r"blocker.*m\.onnx: cannot create the output folder"):
        export_onnx(model, blocker / "m.onnx", height=HEIGHT, width=WIDTH)
    with pytest.raises(CerberusError, match="is a folder"):
        export_onnx(model, tmp_path, height=HEIGHT, width=WIDTH)
    with pytest.raises(CerberusError, match="height must be an integer >= 16"):
        export_onnx(model, tmp_path / "m.onnx", height=8, width=WIDTH)
    with pytest.raises(CerberusError, match="opset must be an integer >= 18"):
        export_onnx(model, tmp_path / "m.onnx", height=HEIGHT, width=WIDTH, opset=11)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_missing_extra_is_a_clear_error(monkeypatch, tmp_path):
    model = tiny()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(CerberusError) as err:
        verify_onnx(model, tmp_path / "m.onnx", torch.zeros(1, 3, HEIGHT, WIDTH))
    assert str(err.value) == EXPORT_EXTRA_MESSAGE
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(CerberusError, match=r"pip install 'cerberus-reid\[export\]'"):
        export_onnx(model, tmp_path / "m.onnx", height=HEIGHT, width=WIDTH)


def test_mobilenet_v2_model_exports_and_matches(tmp_path):
    """The MobileNetV2 backbone (inverted residuals, ReLU6) exports like the ResNets."""
    model = tiny(backbone="mobilenet_v2")
    x = sample_images(2)
    path = export_onnx(model, tmp_path / "mnv2.onnx", height=HEIGHT, width=WIDTH)
    assert verify_onnx(model, path, x) < 1e-4
