"""Optimiser parameter groups (method §4.2: Adam, weight decay 5e-4 as an L2 term in the gradient).

Which parameters are decayed is explicit: every parameter falls in exactly one named group.

- ``weights``: convolution and linear weights (tensors of two or more dimensions), always decayed.
- ``norm_and_bias``: BatchNorm weights and biases and every other bias (one-dimensional
  tensors); decayed when ``decay_norm_and_bias`` (the default, as torchreid and the bag of tricks
  baseline do, and as Cerberus did before the groups were explicit).
- ``prototypes``: the SID prototypes P^G and the L_reg residual vectors v_l; not decayed by
  default. Both losses that use them see a prototype through cosines and differences only, so an
  L2 pull towards the origin has nothing to balance it: it shrinks the prototypes until Adam's
  normalised steps, of fixed size, swing their directions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

GROUP_NAMES: tuple[str, ...] = ("weights", "norm_and_bias", "prototypes")


def _prototype_names(module: nn.Module) -> set[str]:
    """Names of the parameters held in ``prototypes`` / ``residual_vectors`` dicts, at any depth
    (``prototypes.H``, ``model.residual_vectors.U``, ``module.model.prototypes.L``)."""
    out = set()
    for prefix, sub in module.named_modules():
        for attr in ("prototypes", "residual_vectors"):
            held = getattr(sub, attr, None)
            if isinstance(held, nn.ParameterDict):
                start = f"{prefix}.{attr}" if prefix else attr
                out.update(f"{start}.{name}" for name, _ in held.named_parameters())
    return out


def parameter_groups(
    module: nn.Module,
    *,
    weight_decay: float,
    decay_norm_and_bias: bool = True,
    decay_prototypes: bool = False,
) -> list[dict[str, Any]]:
    """The optimiser's parameter groups, each with its names.

    Args:
        module: the trained module (a :class:`~cerberus.modeling.model.Cerberus`, or a wrapper
        holding it). weight_decay: the L2 coefficient of the decayed groups.
        decay_norm_and_bias: decay BatchNorm weights / biases and other biases.
        decay_prototypes: decay the SID prototypes and the residual vectors v_l.

    Returns:
        One dict per non-empty group, in :data:`GROUP_NAMES` order: ``name``, ``params`` (list of
        tensors), ``param_names`` (their names in ``module``) and ``weight_decay``. Only
        parameters with ``requires_grad`` are included; each is in exactly one group.
    """
    protos = _prototype_names(module)
    members: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUP_NAMES}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if name in protos:
            members["prototypes"].append((name, p))
        elif p.ndim <= 1:
            members["norm_and_bias"].append((name, p))
        else:
            members["weights"].append((name, p))
    decayed = {
        "weights": True,
        "norm_and_bias": decay_norm_and_bias,
        "prototypes": decay_prototypes,
    }
    return [
        {
            "name": g,
            "params": [p for _, p in members[g]],
            "param_names": [n for n, _ in members[g]],
            "weight_decay": weight_decay if decayed[g] else 0.0,
        }
        for g in GROUP_NAMES
        if members[g]
    ]


def group_summary(groups: Iterable[dict[str, Any]]) -> str:
    """One line for the log: ``weights 161 tensors (wd 0.0005), ...``."""
    return ", ".join(
        f"{g['name']} {len(g['params'])} tensors (wd {g['weight_decay']:g})" for g in groups
    )
