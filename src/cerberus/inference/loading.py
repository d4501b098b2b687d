"""One loader for a trained model (method §5): a checkpoint (``last.pt``) or a weights pair
(``X.safetensors`` / ``X.json``), read in one pass.

:func:`load_model` reads straight down: :func:`~cerberus.training.checkpoints.read_checkpoint`
(the file, a pair through :mod:`cerberus.training.weights`; its config, meta and schema, each
checked once) -> :func:`~cerberus.training.checkpoints.restore_model` (the model the config
describes, with the file's weights) -> :func:`model_fingerprint` -> :func:`calibration_of` ->
optionally :func:`~cerberus.modeling.model.fuse_batchnorm` -> the device. Everything that runs a
trained model (``InferenceModel``, ``cerberus.load``, evaluation, export, calibration, ingestion,
the experiments) starts here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cerberus.attributes.schema import Schema
from cerberus.config import Config
from cerberus.modeling.model import Cerberus, fuse_batchnorm
from cerberus.training.checkpoints import read_checkpoint, restore_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A trained model and what came with it in its file."""

    model: Cerberus
    """In eval mode on the device asked for (BatchNorm folded when asked)."""
    schema: Schema
    config: Config
    """The resolved training config."""
    calibration: dict[str, Any] | None
    """The verification operating points ``cerberus calibrate`` stored for these weights."""
    fingerprint: str
    """:func:`model_fingerprint` of the trained weights (before any folding)."""
    meta: dict[str, Any]
    """The checkpoint's ``meta`` (schema, class count, SID counts, calibration)."""
    state: dict[str, Any]
    """The file's dict (:func:`~cerberus.training.checkpoints.load_checkpoint`)."""
    path: Path


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's weights and buffers (names, shapes, bytes), hex.

    Two models with the same fingerprint give the same features; the index refuses queries
    embedded by a model with another fingerprint.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def calibration_of(
    meta: Mapping[str, Any], fingerprint: str, path: str | Path
) -> dict[str, Any] | None:
    """The meta's ``calibration`` if it was made with the weights of ``fingerprint`` (else
    ``None``, with a warning naming ``path`` when one was made with other weights)."""
    cal = meta.get("calibration")
    if not isinstance(cal, dict) or not isinstance(cal.get("points"), list):
        return None
    if cal.get("fingerprint") != fingerprint:
        logger.warning(
            "%s: the stored calibration was made with other weights; it is ignored "
            "(run cerberus calibrate again)",
            path,
        )
        return None
    return cal


def load_model(
    path: str | Path, *, device: str | torch.device = "cpu", fuse_bn: bool = False
) -> LoadedModel:
    """Read a checkpoint or a weights pair and rebuild its model (module doc: the steps).

    ``fuse_bn`` folds BatchNorm into the convolutions on the CPU, before the move to ``device``
    (same features, faster; the copy must not be trained). A bad file raises
    :class:`~cerberus.errors.CerberusError` in one line naming it.
    """
    ckpt = read_checkpoint(path)
    model = restore_model(ckpt)
    fingerprint = model_fingerprint(model)  # of the trained weights, before folding BN
    calibration = calibration_of(ckpt.meta, fingerprint, path)
    if fuse_bn:
        model = fuse_batchnorm(model)
    model.to(device).eval()
    return LoadedModel(
        model=model,
        schema=ckpt.schema,
        config=ckpt.config,
        calibration=calibration,
        fingerprint=fingerprint,
        meta=ckpt.meta,
        state=ckpt.state,
        path=ckpt.path,
    )
