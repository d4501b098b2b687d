"""Checkpoints: the model a config describes, atomic save, safe load (``weights_only=True``).

A checkpoint is a dict ``{format: "cerberus", version, iteration, model, optimizer, rng, config,
meta}``; ``config`` is the resolved :class:`~cerberus.config.Config` and ``meta`` holds the
attribute schema (its full content; older files: a shipped schema's name) and the number of
training classes, which is all that is needed to rebuild the model without the training data or
the schema file.

Wherever a checkpoint is read, a weights pair (``X.safetensors`` + ``X.json``, see
:mod:`cerberus.training.weights`) may be named instead: :func:`load_checkpoint` returns the same
dict (``model``, ``config``, ``meta``, no optimiser state), read without any pickle.

This module alone builds the dict (:func:`training_checkpoint`, :func:`training_meta`) and reads
it (:func:`read_checkpoint`: the dict, its config, meta and schema, each checked once;
:func:`restore_model`: the model with its weights). A model for inference is loaded with
:func:`cerberus.inference.loading.load_model`, which calls these two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cerberus.attributes.schema import GROUPS, Schema
from cerberus.attributes.schema_files import schema_from_meta
from cerberus.config import Config, ModelConfig, config_from_dict
from cerberus.data.datasets import ReIDDataset
from cerberus.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cerberus.errors import CerberusError
from cerberus.files import atomic_write
from cerberus.modeling.model import Cerberus, build_model
from cerberus.training.weights import is_weights_pair, read_weights_pair

CHECKPOINT_VERSION = 1


def model_from_config(
    m: ModelConfig, schema: Schema, num_classes: int, *, load_weights: bool = True
) -> Cerberus:
    """Build the model a :class:`ModelConfig` describes for a schema and a class count.

    ``load_weights=False`` skips ImageNet / ``backbone_weights`` (for a model whose weights come
    from a checkpoint next).
    """
    return build_model(
        num_classes=num_classes,
        num_sids=schema.num_sids,
        binary_vectors={g: schema.codecs[g].binary_vectors() for g in GROUPS},
        backbone=m.backbone,
        pretrained=m.pretrained and load_weights,
        backbone_weights=m.backbone_weights if load_weights else None,
        dim=m.dim,
        last_stride=m.last_stride,
        align_sigma=m.align_sigma,
        use_alignment=m.use_alignment,
        attribute_sizes=[(a.group, a.num_values) for a in schema.attributes]
        if m.attribute_heads
        else (),
        prototype_init=m.prototype_init,
        par_feature=m.par_feature,
    )


def build_model_for(cfg: Config, dataset: ReIDDataset) -> Cerberus:
    """The model for a config and a dataset (class count and SID spaces come from the data)."""
    return model_from_config(cfg.model, dataset.schema, dataset.num_train_ids)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` atomically: a temporary file in the same folder, fsync, then rename.

    A crash or a full disk leaves the previous checkpoint at ``path`` untouched.
    """
    atomic_write(path, lambda fh: torch.save(state, fh), "checkpoint")


def training_meta(dataset: ReIDDataset, threads: int) -> dict[str, Any]:
    """The ``meta`` entry of a training run: the schema (its full content), the class count,
    the dataset's name, the intra-op threads and ``sid_counts`` (N_g^G of the training
    identities: the prior of the prior-aware decision, method §8.2)."""
    return {
        "schema": dataset.schema.to_dict(),
        "num_classes": dataset.num_train_ids,
        "dataset": dataset.name,
        "threads": threads,
        "sid_counts": {g: c.tolist() for g, c in dataset.train_sid_counts().items()},
    }


def training_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    config: Config,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint dict of a run at ``iteration`` (module doc): weights, optimiser state,
    the torch RNG state now, the resolved config as a dict and ``meta`` (:func:`training_meta`)."""
    return {
        "format": "cerberus",
        "version": CHECKPOINT_VERSION,
        "iteration": iteration,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "config": config.to_dict(),
        "meta": meta,
    }


def input_block(config: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing a model's inputs need, from its resolved config (a dict): the ``input``
    entry of a weights pair, what :func:`~cerberus.data.transforms.build_transforms` does at
    test time. A pair's ``input`` must equal this for its own ``config``."""
    data, evaluation = config.get("data", {}), config.get("eval", {})
    return {
        "height": int(data.get("height", 0)),
        "width": int(data.get("width", 0)),
        "color_order": "RGB",
        "resize_interpolation": "bicubic",
        "pixel_scale": "1/255",
        "mean": [float(v) for v in IMAGENET_MEAN],
        "std": [float(v) for v in IMAGENET_STD],
        "flip_test": bool(evaluation.get("flip_test", False)),
    }


def check_input_block(metadata: dict[str, Any], where: str | Path) -> None:
    """Refuse a pair whose ``input`` entry contradicts its ``config`` (one line naming the
    field and both values): the model is run as the config says, so the two must agree."""
    found = metadata.get("input")
    if not isinstance(found, dict):
        raise CerberusError(f"{where}: no 'input' entry (not written by cerberus export)")
    config = metadata.get("config", {})
    for key, expected in input_block(config).items():
        if found.get(key) != expected:
            origin = {"height": "config.data.height", "width": "config.data.width"}.get(
                key, "config.eval.flip_test" if key == "flip_test" else "what cerberus does"
            )
            raise CerberusError(
                f"{where}: input.{key} is {found.get(key)!r} but {origin} gives {expected!r}; "
                "the metadata contradicts itself"
            )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Cerberus checkpoint safely (``weights_only=True``: no code runs from the file).

    A weights pair's file (``.safetensors`` or ``.json``) is read with
    :func:`~cerberus.training.weights.read_weights_pair` (hash checked) into the same dict, with the
    pair's metadata under ``weights_metadata``.
    """
    path = Path(path)
    if is_weights_pair(path):
        tensors, metadata = read_weights_pair(path)
        check_input_block(metadata, path)
        return {
            "format": "cerberus",
            "version": CHECKPOINT_VERSION,
            "iteration": metadata.get("training", {}).get("iterations"),
            "model": tensors,
            "config": metadata["config"],
            "meta": metadata["meta"],
            "weights_metadata": metadata,
        }
    if not path.is_file():
        raise CerberusError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, unsafe globals...
        text = str(exc).strip()
        if "weights only load failed" in text.lower():  # torch's advice is the unsafe load
            found = re.search(r"GLOBAL (\S+)", text)
            what = f": {found.group(1)}" if found else ""
            raise CerberusError(
                f"{path}: not a readable Cerberus checkpoint: refusing to load objects other "
                f"than tensors from it (untrusted pickle{what})"
            ) from None
        first = text.splitlines()[0] if text else type(exc).__name__
        raise CerberusError(f"{path}: not a readable Cerberus checkpoint ({first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != "cerberus":
        raise CerberusError(f"{path}: not a Cerberus checkpoint (no 'format: cerberus' entry)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CerberusError(
            f"{path}: checkpoint version {state.get('version')} is not {CHECKPOINT_VERSION}"
        )
    return state


def checkpoint_config(state: dict[str, Any], path: str | Path) -> Config:
    """The resolved config a checkpoint was trained with (checked like a config file)."""
    if not isinstance(state.get("config"), dict):
        raise CerberusError(f"{path}: checkpoint has no 'config' entry (not written by train)")
    return config_from_dict(state["config"], f"{path} [config]")


def checkpoint_meta(state: dict[str, Any], path: str | Path) -> tuple[dict[str, Any], Schema]:
    """The ``meta`` entry and its schema, checked: a known schema and a positive
    ``num_classes``."""
    meta = state.get("meta")
    if not isinstance(meta, dict):
        raise CerberusError(f"{path}: checkpoint has no 'meta' entry (not written by train)")
    try:
        schema = schema_from_meta(meta.get("schema", ""), str(path))
        if int(meta["num_classes"]) < 1:
            raise ValueError
    except (CerberusError, KeyError, TypeError, ValueError):
        raise CerberusError(
            f"{path}: checkpoint 'meta' lacks a known 'schema' and a positive 'num_classes'"
        ) from None
    return meta, schema


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint or weights pair read and checked (:func:`read_checkpoint`)."""

    path: Path
    state: dict[str, Any]
    """The dict of :func:`load_checkpoint` (weights under ``model``)."""
    config: Config
    meta: dict[str, Any]
    schema: Schema


def read_checkpoint(path: str | Path) -> CheckpointFile:
    """Read a checkpoint or a weights pair once: the dict, its config, meta and schema."""
    path = Path(path)
    state = load_checkpoint(path)
    config = checkpoint_config(state, path)
    meta, schema = checkpoint_meta(state, path)
    return CheckpointFile(path, state, config, meta, schema)


def _state_dict_mismatch(exc: RuntimeError) -> str:
    """The first missing / unexpected keys or size mismatch of a ``load_state_dict`` error."""
    lines = [x.strip() for x in str(exc).splitlines()[1:] if x.strip()]
    return "; ".join(lines)[:240] if lines else str(exc)[:160]


def restore_model(ckpt: CheckpointFile) -> Cerberus:
    """The model ``ckpt`` describes, with its weights, in eval mode on the CPU."""
    model = model_from_config(
        ckpt.config.model, ckpt.schema, int(ckpt.meta["num_classes"]), load_weights=False
    )
    if not isinstance(ckpt.state.get("model"), dict):
        raise CerberusError(f"{ckpt.path}: checkpoint has no 'model' weights")
    try:
        model.load_state_dict(ckpt.state["model"])
    except RuntimeError as exc:
        reason = _state_dict_mismatch(exc)
        raise CerberusError(f"{ckpt.path}: weights do not fit the model ({reason})") from None
    model.eval()
    return model
