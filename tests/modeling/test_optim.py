"""Optimiser parameter groups: every parameter in exactly one group, prototypes not decayed."""

from __future__ import annotations

import pytest
import torch

from cerberus.config import load_config
from cerberus.modeling.optim import GROUP_NAMES, parameter_groups
from tests.conftest import tiny_model


def _by_name(groups):
    return {g["name"]: g for g in groups}


@pytest.mark.parametrize("decay_norm_and_bias", [True, False])
@pytest.mark.parametrize("decay_prototypes", [True, False])
def test_every_parameter_in_exactly_one_group(decay_norm_and_bias, decay_prototypes):
    model = tiny_model()
    groups = parameter_groups(
        model,
        weight_decay=5e-4,
        decay_norm_and_bias=decay_norm_and_bias,
        decay_prototypes=decay_prototypes,
    )
    assert [g["name"] for g in groups] == list(GROUP_NAMES)
    names = [n for g in groups for n in g["param_names"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    by = _by_name(groups)
    assert by["weights"]["weight_decay"] == 5e-4
    assert by["norm_and_bias"]["weight_decay"] == (5e-4 if decay_norm_and_bias else 0.0)
    assert by["prototypes"]["weight_decay"] == (5e-4 if decay_prototypes else 0.0)


def test_default_groups_by_role():
    model = tiny_model()
    by = _by_name(parameter_groups(model, weight_decay=5e-4))
    assert by["prototypes"]["weight_decay"] == 0.0
    assert set(by["prototypes"]["param_names"]) == {
        f"{d}.{g}" for d in ("prototypes", "residual_vectors") for g in "HULIC"
    }
    assert "trunk.0.weight" in by["weights"]["param_names"]  # conv1
    assert "heads.H.fc.weight" in by["weights"]["param_names"]
    assert "classifiers.H.weight" in by["weights"]["param_names"]
    assert "classifiers.H.bias" in by["norm_and_bias"]["param_names"]
    assert "heads.H.bn.weight" in by["norm_and_bias"]["param_names"]
    assert "trunk.1.bias" in by["norm_and_bias"]["param_names"]  # bn1
    assert by["norm_and_bias"]["weight_decay"] == 5e-4


def test_groups_found_through_a_wrapper_and_skip_frozen():
    """Inside the engine's TrainStep the names carry a ``model.`` prefix."""
    wrapper = torch.nn.Module()
    wrapper.model = tiny_model()
    wrapper.model.trunk[0].weight.requires_grad_(False)
    by = _by_name(parameter_groups(wrapper, weight_decay=1e-3))
    assert "model.prototypes.U" in by["prototypes"]["param_names"]
    assert "model.trunk.0.weight" not in by["weights"]["param_names"]
    optimizer = torch.optim.Adam(list(by.values()), lr=1e-3)  # what the engine builds
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-3, 1e-3, 0.0]


def test_optim_config_defaults():
    cfg = load_config(None, [])
    assert cfg.optim.decay_norm_and_bias is True and cfg.optim.decay_prototypes is False
    assert load_config(None, ["optim.decay_prototypes=true"]).optim.decay_prototypes
