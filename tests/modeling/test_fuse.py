"""Folding BatchNorm into convolutions for inference keeps the features."""

from __future__ import annotations

import torch
from torch import nn

from cerberus.modeling.model import fuse_batchnorm
from tests.conftest import tiny_model


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_fused_model_gives_the_same_features():
    model = tiny_model()
    _randomise_bn(model)
    model.eval()
    fused = fuse_batchnorm(model)
    bn2d = [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn2d == []  # every conv + BN pair folded, stem and downsample included
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        a, b = model.forward_features(x), fused.forward_features(x)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused.prototypes["H"], model.prototypes["H"])
