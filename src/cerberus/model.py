"""The Cerberus network (SPEC section 2): shared ResNet trunk, global and local branches,
alignment, part pooling, five FC+BN heads, SID prototypes and training-only ID classifiers."""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

from cerberus.attributes import GROUPS
from cerberus.errors import CerberusError

logger = logging.getLogger(__name__)

BACKBONES = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
}


def heat_map(fmap: Tensor) -> Tensor:
    """H(p) = ||F(p)||_2 over channels: ``(B, C, H, W) -> (B, H, W)``."""
    return fmap.float().norm(dim=1)


def align_feature_map(fmap: Tensor, sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """Alignment module, SPEC 2 (no parameters).

    h = max over the width of the heat map, shape ``(B, H)``; t and b are the first and last row
    with h > sigma; rows t..b are cropped and resized back to H rows (bilinear, row 0 -> t,
    row H-1 -> b). A sample with no row above sigma keeps its whole map.

    Args:
        fmap: ``(B, C, H, W)`` local feature maps F^l.
        sigma: heat threshold.

    Returns:
        ``(aligned (B, C, H, W), top (B,), bottom (B,))``, top/bottom as long row indices.
    """
    b, _, h, w = fmap.shape
    rows = heat_map(fmap).amax(dim=2) > sigma  # (B, H)
    any_row = rows.any(dim=1)
    idx = torch.arange(h, device=fmap.device).expand(b, h)
    top = torch.where(rows, idx, h).amin(dim=1)
    bottom = torch.where(rows, idx, -1).amax(dim=1)
    top = torch.where(any_row, top, 0)
    bottom = torch.where(any_row, bottom, h - 1)
    if h == 1:
        return fmap, top, bottom
    # Output row i samples input row y_i = t + i (b - t) / (H - 1), bilinear in y.
    steps = torch.arange(h, device=fmap.device, dtype=torch.float32) / (h - 1)
    y = top[:, None].float() + steps[None, :] * (bottom - top)[:, None].float()  # (B, H)
    y0 = y.floor().long().clamp(0, h - 1)
    y1 = (y0 + 1).clamp(max=h - 1)
    wy = (y - y0.float()).to(fmap.dtype)[:, None, :, None]  # (B, 1, H, 1)
    g0 = y0[:, None, :, None].expand(-1, fmap.shape[1], -1, w)
    g1 = y1[:, None, :, None].expand(-1, fmap.shape[1], -1, w)
    aligned = torch.gather(fmap, 2, g0) * (1 - wy) + torch.gather(fmap, 2, g1) * wy
    return aligned, top, bottom


class EmbeddingHead(nn.Module):
    """FC(C -> d) + BatchNorm1d: one representation f^G."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out")
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.fc(x))


def normalize_features(features: Tensor) -> Tensor:
    """``(B, 5, d) -> (B, 5 d)``: each part L2-normalised, concatenated, divided by sqrt(5).

    The inner product of two such vectors is the mean over groups of the cosines (SPEC 5).
    """
    f = F.normalize(features.float(), dim=-1)
    return f.flatten(1) / math.sqrt(features.shape[1])


class Cerberus(nn.Module):
    """Cerberus: five part representations (H, U, L, I, C) of a person crop.

    Use :func:`build_model`. ``forward(x)`` returns ``{"features": (B, 5, d)}`` and, in training
    mode, also ``{"logits": (5, B, num_classes)}`` from the ID classifiers; :meth:`embed`
    gives the retrieval vectors.
    """

    def __init__(
        self,
        trunk: nn.Module,
        branch: nn.Module,
        channels: int,
        *,
        num_classes: int,
        num_sids: Mapping[str, int],
        binary_vectors: Mapping[str, np.ndarray | Tensor],
        dim: int,
        align_sigma: float,
        use_alignment: bool,
    ):
        super().__init__()
        self.trunk = trunk
        self.global_branch = branch
        self.local_branch = copy.deepcopy(branch)
        self.dim = dim
        self.align_sigma = align_sigma
        self.use_alignment = use_alignment
        self.num_stripes = 3
        # Heads in GROUPS order H, U, L (local stripes) then I, C (global).
        self.heads = nn.ModuleDict({g: EmbeddingHead(channels, dim) for g in GROUPS})
        self.prototypes = nn.ParameterDict()
        self.residual_vectors = nn.ParameterDict()
        for g in GROUPS:
            a = torch.as_tensor(np.asarray(binary_vectors[g]), dtype=torch.float32)
            if a.shape[0] != num_sids[g]:
                raise CerberusError(
                    f"group {g}: {a.shape[0]} binary vectors for {num_sids[g]} SIDs"
                )
            p = torch.empty(num_sids[g], dim)
            nn.init.kaiming_normal_(p)  # He-normal, SPEC 2
            self.prototypes[g] = nn.Parameter(p)
            # v_l starts at zero: no analogy is imposed before the data places the prototypes.
            self.residual_vectors[g] = nn.Parameter(torch.zeros(a.shape[1], dim))
            self.register_buffer(f"binary_vectors_{g}", a)
        self.classifiers = nn.ModuleDict({g: nn.Linear(dim, num_classes) for g in GROUPS})
        for c in self.classifiers.values():
            nn.init.normal_(c.weight, std=0.001)
            nn.init.zeros_(c.bias)

    def binary_vectors(self, group: str) -> Tensor:
        """A_m of every SID of ``group``, ``(S_G, n_bin)``."""
        return getattr(self, f"binary_vectors_{group}")

    def forward_maps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Global and local feature maps F^g, F^l of shape ``(B, C, H/16, W/16)``."""
        shared = self.trunk(x)
        return self.global_branch(shared), self.local_branch(shared)

    def forward_features(self, x: Tensor) -> Tensor:
        """The five representations, ``(B, 5, d)`` in GROUPS order."""
        fg, fl = self.forward_maps(x)
        if self.use_alignment:
            fl, _, _ = align_feature_map(fl, self.align_sigma)
        pooled_g = fg.mean(dim=(2, 3))
        stripes = F.adaptive_avg_pool2d(fl, (self.num_stripes, 1)).flatten(2)  # (B, C, 3)
        parts = {
            "H": stripes[:, :, 0],
            "U": stripes[:, :, 1],
            "L": stripes[:, :, 2],
            "I": pooled_g,
            "C": pooled_g,
        }
        return torch.stack([self.heads[g](parts[g]) for g in GROUPS], dim=1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.forward_features(x)
        out = {"features": features}
        if self.training:
            out["logits"] = torch.stack(
                [self.classifiers[g](features[:, k]) for k, g in enumerate(GROUPS)]
            )
        return out

    @torch.no_grad()
    def alignment(self, x: Tensor) -> dict[str, Tensor]:
        """For figures: the local heat map before alignment and the rows t, b kept."""
        _, fl = self.forward_maps(x)
        _, top, bottom = align_feature_map(fl, self.align_sigma)
        return {"heat_map": heat_map(fl), "top": top, "bottom": bottom}

    def embed(self, x: Tensor) -> Tensor:
        """Retrieval vectors ``(B, 5 d)``, unit norm; inner product = mean cosine (SPEC 5)."""
        return normalize_features(self.forward_features(x))


def _load_state_dict(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CerberusError(f"{path}: backbone weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CerberusError(f"{path}: not a readable weights file ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CerberusError(f"{path}: not a state dict of tensors")
    return state


def _resnet(name: str, pretrained: bool, backbone_weights: str | None) -> nn.Module:
    if name not in BACKBONES:
        raise CerberusError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    builder, weights = BACKBONES[name]
    net = builder(weights=None)
    if backbone_weights is not None:
        state = _load_state_dict(backbone_weights)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            bad = (missing or unexpected)[0]
            raise CerberusError(
                f"{backbone_weights}: does not fit {name} "
                f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {bad!r})"
            )
    elif pretrained:
        try:
            net.load_state_dict(weights.get_state_dict(progress=False))
        except Exception as exc:  # no network, no cache
            warnings.warn(
                f"ImageNet weights for {name} could not be loaded ({type(exc).__name__}); "
                "training from random initialisation. Give model.backbone_weights=PATH "
                "to use a local file.",
                stacklevel=3,
            )
    return net


def build_model(
    *,
    num_classes: int,
    num_sids: Mapping[str, int],
    binary_vectors: Mapping[str, np.ndarray | Tensor],
    backbone: str = "resnet50",
    pretrained: bool = True,
    backbone_weights: str | None = None,
    dim: int = 512,
    last_stride: int = 1,
    align_sigma: float = 5.0,
    use_alignment: bool = True,
) -> Cerberus:
    """Build Cerberus (SPEC 2) on a torchvision ResNet.

    The trunk is ``conv1 .. layer2`` plus ``layer3[0]`` (conv4_1); ``layer3[1:]`` and ``layer4``
    are copied into a global and a local branch, with ``last_stride`` in ``layer4``. Weights
    (ImageNet or ``backbone_weights``) are loaded before the copy, so both branches start equal.
    """
    if num_classes < 1 or dim < 1:
        raise CerberusError(f"num_classes and dim must be positive, got {num_classes}, {dim}")
    net = _resnet(backbone, pretrained, backbone_weights)
    if last_stride not in (1, 2):
        raise CerberusError(f"last_stride must be 1 or 2, got {last_stride}")
    block = net.layer4[0]
    for conv in (getattr(block, "conv2", None), getattr(block, "conv1", None)):
        if conv is not None and conv.stride == (2, 2):
            conv.stride = (last_stride, last_stride)
    if block.downsample is not None:
        block.downsample[0].stride = (last_stride, last_stride)
    trunk = nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3[0]
    )
    branch = nn.Sequential(nn.Sequential(*net.layer3[1:]), net.layer4)
    channels = net.fc.in_features
    return Cerberus(
        trunk,
        branch,
        channels,
        num_classes=num_classes,
        num_sids=num_sids,
        binary_vectors=binary_vectors,
        dim=dim,
        align_sigma=align_sigma,
        use_alignment=use_alignment,
    )


def count_parameters(model: Cerberus) -> dict[str, int]:
    """Parameters of the embedding network (what inference uses), prototypes, classifiers."""
    proto = sum(p.numel() for p in model.prototypes.values())
    resid = sum(p.numel() for p in model.residual_vectors.values())
    cls = sum(p.numel() for p in model.classifiers.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {
        "embedding_params": total - proto - resid - cls,
        "prototype_params": proto,
        "residual_vector_params": resid,
        "classifier_params": cls,
        "total_params": total,
    }


@torch.no_grad()
def count_flops(model: Cerberus, *, height: int = 384, width: int = 128) -> dict[str, float]:
    """Multiply-accumulates and FLOPs (= 2 MACs) of one image through the embedding network."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model.forward_features(torch.zeros(1, 3, height, width))
    model.train(was)
    flops = float(counter.get_total_flops())
    return {"macs": flops / 2, "flops": flops}
