"""ONNX export of the embedding network (method §2 and §5), for deployment without PyTorch.

The exported graph is the inference path of :class:`~cerberus.modeling.model.Cerberus` (trunk, both
branches, alignment, part pooling, the five FC+BN heads; no ID classifiers, no prototypes):

- input ``images``: ``(B, 3, H, W)`` float32, RGB scaled to [0, 1] then normalised with the
  test transform's mean / std (:func:`cerberus.data.transforms.build_transforms`);
- output ``features``: ``(B, 5, d)`` raw representations in group order H, U, L, I, C;
- output ``embedding``: ``(B, 5 d)`` retrieval vectors (method §5.1: each part L2-normalised,
  concatenated, divided by sqrt(5)); their inner product is the mean cosine over the groups.

The alignment module is data dependent (each sample keeps its own rows); it is written as a
batched gather in :func:`~cerberus.modeling.model.align_feature_map`, so the graph has static shapes
and reproduces the crop per sample. H and W are fixed at export time, the batch is dynamic.

The preprocessing a deployer must apply is stored in the file's ``metadata_props``; read it
with :func:`read_onnx_metadata`. Needs the ``export`` extra (onnx, onnxscript, onnxruntime).

:func:`export_weights` writes the other deployable form, a weights pair (safetensors + JSON
metadata, :mod:`cerberus.training.weights`) that every command loads in place of a checkpoint.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

import cerberus
from cerberus.attributes.schema import GROUPS
from cerberus.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cerberus.errors import CerberusError
from cerberus.inference.loading import load_model, model_fingerprint
from cerberus.modeling.model import Cerberus, normalize_features
from cerberus.training.checkpoints import input_block
from cerberus.training.weights import pair_paths, write_weights_pair

INPUT_NAME = "images"
OUTPUT_NAMES = ("features", "embedding")
MIN_OPSET = 18  # the lowest opset the torch.export-based exporter implements
EXPORT_EXTRA_MESSAGE = "ONNX export needs the export extra: pip install 'cerberus-reid[export]'"


def _require(*names: str) -> list[ModuleType]:
    """Import the optional export dependencies, or fail with the install hint."""
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            raise CerberusError(EXPORT_EXTRA_MESSAGE) from None
    return modules


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    line = line[:200]
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class EmbeddingNetwork(nn.Module):
    """The inference path of a Cerberus model: images -> ``(features, embedding)``.

    Shares the model's modules (no copy). The ID classifiers and prototypes are not used, so the
    exporter leaves them out of the graph.

    Args:
        model: a :class:`~cerberus.modeling.model.Cerberus` network.
    """

    def __init__(self, model: Cerberus):
        super().__init__()
        if not isinstance(model, Cerberus):
            raise CerberusError(
                f"EmbeddingNetwork: expected a Cerberus model, got {type(model).__name__}"
            )
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 3, H, W)`` normalised images -> ``features (B, 5, d)``, ``embedding (B, 5 d)``."""
        features = self.model.forward_features(images)
        return features, normalize_features(features)


def _schema_name(model: Cerberus, schema: object | None) -> str | None:
    value = schema if schema is not None else getattr(model, "schema", None)
    if value is None:
        return None
    return str(getattr(value, "name", value))


def onnx_metadata(
    model: Cerberus,
    *,
    height: int,
    width: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    schema: object | None = None,
    dynamic_batch: bool = True,
) -> dict[str, str]:
    """The ``metadata_props`` written by :func:`export_onnx` (all values are strings).

    Lists (mean, std, groups) are JSON. ``schema`` (a name or a
    :class:`~cerberus.attributes.schema.Schema`) is included when given or when the model has one.
    """
    dim = int(model.dim)
    props = {
        "cerberus_version": cerberus.__version__,
        "input_name": INPUT_NAME,
        "input_layout": "NCHW",
        "input_dtype": "float32",
        "input_height": str(int(height)),
        "input_width": str(int(width)),
        "color_order": "RGB",
        "resize_interpolation": "bicubic",
        "pixel_scale": "1/255",
        "mean": json.dumps([float(v) for v in mean]),
        "std": json.dumps([float(v) for v in std]),
        "preprocessing": (
            f"resize to {int(height)}x{int(width)} (bicubic), RGB, divide by 255, "
            "subtract mean and divide by std per channel, NCHW float32"
        ),
        "dynamic_batch": "true" if dynamic_batch else "false",
        "outputs": json.dumps(list(OUTPUT_NAMES)),
        "groups": json.dumps(list(GROUPS)),
        "dim": str(dim),
        "embedding_dim": str(len(GROUPS) * dim),
        "features": f"(B, {len(GROUPS)}, {dim}) raw representations in group order",
        "embedding": (
            f"(B, {len(GROUPS) * dim}) each group L2-normalised, concatenated, divided by "
            f"sqrt({len(GROUPS)}); inner product = mean cosine over the groups"
        ),
        "alignment": "on" if model.use_alignment else "off",
        "align_sigma": repr(float(model.align_sigma)),
    }
    name = _schema_name(model, schema)
    if name is not None:
        props["schema"] = name
    return props


def _check_size(height: int, width: int) -> None:
    for what, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 16:
            raise CerberusError(f"export_onnx: {what} must be an integer >= 16, got {v!r}")


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != 3 or len(std) != 3:
        raise CerberusError("export_onnx: mean and std need 3 values (R, G, B)")
    if not all(math.isfinite(float(s)) and float(s) > 0 for s in std):
        raise CerberusError(f"export_onnx: std values must be positive, got {list(std)}")


def _prepare_folder(out: Path) -> None:
    if out.is_dir():
        raise CerberusError(f"{out}: is a folder; give the path of the .onnx file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CerberusError(
            f"{out}: cannot create the output folder {out.parent} ({_first_line(exc)})"
        ) from None
    if not out.parent.is_dir():
        raise CerberusError(f"{out}: {out.parent} is not a folder")


def export_onnx(
    model: Cerberus,
    out: str | Path,
    *,
    height: int,
    width: int,
    opset: int | None = None,
    dynamic_batch: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    schema: object | None = None,
) -> Path:
    """Export the embedding network to ONNX (torch.export-based exporter, ``dynamo=True``).

    The model is exported in eval mode (its own mode is restored afterwards). Input
    ``images`` ``(B, 3, height, width)``, outputs ``features`` and ``embedding``. The file is
    written to a temporary folder next to ``out`` and moved into place with :func:`os.replace`,
    so ``out`` is either the old file or the complete new one. Models under 2 GB (every ResNet
    backbone here) are one self-contained file; a larger one gets its weights in
    ``<out>.data`` next to it (moved into place before the model file).

    Args:
        model: the network.
        out: path of the ``.onnx`` file; missing parent folders are created.
        height: input height (fixed in the graph).
        width: input width (fixed in the graph).
        opset: ONNX opset (>= 18); None: the exporter's default (20 with torch 2.14).
        dynamic_batch: a dynamic batch axis (else the batch is fixed to 1).
        mean: normalisation mean of the test transform, stored in the metadata.
        std: normalisation std of the test transform, stored in the metadata.
        schema: attribute schema (name or object) stored in the metadata, if known.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        CerberusError: missing export extra, bad sizes, an output path that cannot be written,
            or an exporter failure (the message names the file).
    """
    _require("onnx", "onnxscript")
    out = Path(out)
    _check_size(height, width)
    _check_stats(mean, std)
    if opset is not None and (
        isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET
    ):
        # Lower opsets go through a version converter that fails on this graph and silently
        # keeps opset 18, so they are refused here.
        raise CerberusError(f"export_onnx: opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    net = EmbeddingNetwork(model)
    _prepare_folder(out)

    param = next(model.parameters())
    batch = 2 if dynamic_batch else 1  # torch.export specialises a batch of 1
    example = torch.zeros(batch, 3, height, width, device=param.device, dtype=param.dtype)
    dynamic_shapes = {INPUT_NAME: {0: torch.export.Dim("batch")}} if dynamic_batch else None
    was_training = model.training
    net.eval()  # the wrapper and the model
    try:
        program = torch.onnx.export(
            net,
            (example,),
            None,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    except CerberusError:
        raise
    except Exception as exc:  # the exporter raises many types
        raise CerberusError(f"{out}: ONNX export failed ({_first_line(exc)})") from exc
    finally:
        model.train(was_training)
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise CerberusError(f"{out}: ONNX export returned no program")

    program.model.metadata_props.update(
        onnx_metadata(
            model,
            height=height,
            width=width,
            mean=mean,
            std=std,
            schema=schema,
            dynamic_batch=dynamic_batch,
        )
    )
    program.model.doc_string = (
        "Cerberus person re-identification embedding network; see metadata_props for the "
        "preprocessing and the outputs."
    )
    _save_atomic(program, out)
    return out


def _save_atomic(program: object, out: Path) -> None:
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise CerberusError(f"{out}: cannot write to {out.parent} ({_first_line(exc)})") from None
    try:
        tmp = tmpdir / out.name
        try:
            # external_data=None: a single file unless the weights pass the 2 GB protobuf limit.
            program.save(tmp, external_data=None)  # type: ignore[attr-defined]
        except OSError as exc:
            raise CerberusError(f"{out}: cannot write the ONNX file ({_first_line(exc)})") from None
        except Exception as exc:
            raise CerberusError(
                f"{out}: saving the ONNX model failed ({_first_line(exc)})"
            ) from exc
        if not tmp.is_file():
            raise CerberusError(f"{out}: the exporter wrote no file")
        # Weights (external data, if any) first, the model file last.
        for path in sorted(tmpdir.iterdir(), key=lambda p: p == tmp):
            try:
                os.replace(path, out.parent / path.name)
            except OSError as exc:
                raise CerberusError(
                    f"{out}: cannot move the ONNX file into place ({_first_line(exc)})"
                ) from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict (weights are not loaded).

    Raises:
        CerberusError: missing export extra, or a missing / unreadable file.
    """
    (onnx,) = _require("onnx")
    path = Path(path)
    if not path.is_file():
        raise CerberusError(f"{path}: ONNX file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise CerberusError(f"{path}: not a readable ONNX file ({_first_line(exc)})") from None
    return {p.key: p.value for p in proto.metadata_props}


def _session(ort: ModuleType, path: Path) -> object:
    if not path.is_file():
        raise CerberusError(f"{path}: ONNX file not found")
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise CerberusError(f"{path}: onnxruntime cannot load it ({_first_line(exc)})") from None


def verify_onnx(model: Cerberus, path: str | Path, images: Tensor, *, atol: float = 1e-4) -> float:
    """Compare an exported file with the PyTorch model on the same images.

    Runs onnxruntime (CPUExecutionProvider) and the model in eval mode (its mode is restored).

    Args:
        model: the network the file should have been exported from.
        path: the ``.onnx`` file.
        images: ``(B, 3, H, W)`` normalised images of the exported size.
        atol: largest accepted absolute difference of the embeddings.

    Returns:
        The max absolute difference of the ``embedding`` outputs.

    Raises:
        CerberusError: missing export extra, unreadable file, inputs that do not fit it, or
            embeddings that differ by more than ``atol`` (the message names the file).
    """
    (ort,) = _require("onnxruntime")
    path = Path(path)
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise CerberusError(f"{path}: verify_onnx needs images (B, 3, H, W), got {shape}")
    session = _session(ort, path)
    inputs = session.get_inputs()  # type: ignore[attr-defined]
    outputs = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
    if [i.name for i in inputs] != [INPUT_NAME] or "embedding" not in outputs:
        raise CerberusError(
            f"{path}: not a Cerberus embedding network (inputs {[i.name for i in inputs]}, "
            f"outputs {outputs}; expected input {INPUT_NAME!r} and output 'embedding')"
        )
    expected = inputs[0].shape
    got = tuple(images.shape)
    for axis, (e, g) in enumerate(zip(expected, got)):
        if isinstance(e, int) and e != g:
            raise CerberusError(
                f"{path}: expects images of shape {tuple(expected)}, got {got} (axis {axis})"
            )
    dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
    array = images.detach().to("cpu", torch.float32).numpy().astype(dtype)
    try:
        (onnx_emb,) = session.run(["embedding"], {INPUT_NAME: array})  # type: ignore[attr-defined]
    except Exception as exc:
        raise CerberusError(f"{path}: onnxruntime failed ({_first_line(exc)})") from None

    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, ref = EmbeddingNetwork(model)(images.to(param.device, param.dtype))
    finally:
        model.train(was_training)
    ref_np = ref.detach().float().cpu().numpy()
    onnx_emb = np.asarray(onnx_emb, dtype=np.float32)
    if onnx_emb.shape != ref_np.shape:
        raise CerberusError(
            f"{path}: ONNX embeddings have shape {onnx_emb.shape}, the model gives "
            f"{ref_np.shape}; the file was exported from another model"
        )
    diff = float(np.abs(onnx_emb - ref_np).max()) if ref_np.size else 0.0
    if not diff <= atol:  # also catches NaN
        raise CerberusError(
            f"{path}: ONNX and PyTorch embeddings differ by {diff:.3g} (atol {atol:g}); "
            "the file does not match this model"
        )
    return diff


# --------------------------------------------------------------------------- weights pair


def weights_metadata(
    state: dict, model: Cerberus, *, metrics: dict | None = None, source: str = ""
) -> dict:
    """The JSON side of a weights pair for a loaded checkpoint ``state`` and its ``model``.

    ``meta`` is the checkpoint's own (schema, classes, SID counts, calibration) passed through
    as it is; ``input`` the preprocessing of :func:`~cerberus.data.transforms.build_transforms`
    at test time; ``metrics`` e.g. ``cerberus eval --out`` JSON.
    """
    cfg = state["config"]
    data = cfg.get("data", {})
    return {
        "cerberus_version": cerberus.__version__,
        "fingerprint": model_fingerprint(model),
        "config": cfg,
        "meta": state["meta"],
        "input": input_block(cfg),
        "training": {
            "dataset": data.get("dataset"),
            "root": data.get("root"),
            "attributes": data.get("attributes"),
            "iterations": state.get("iteration"),
            "num_classes": state["meta"].get("num_classes"),
            "source_checkpoint": source,
        },
        "metrics": metrics,
    }


def export_weights(
    checkpoint: str | Path, out: str | Path, *, metrics: dict | None = None
) -> tuple[Path, Path]:
    """Write ``checkpoint`` (a ``.pt`` file or a pair) as a weights pair at ``out``.

    ``out`` may name ``X.safetensors``, ``X.json`` or the stem ``X``. The checkpoint's weights
    are first loaded into the model they describe (so a pair is never written from weights that
    do not fit), then written with every tensor of the ``state_dict`` (the model fingerprint is
    the checkpoint's: indexes built with either file accept the other). Returns
    ``(weights, metadata)`` paths.
    """
    weights, meta_path = pair_paths(out)
    if Path(checkpoint).resolve() in (weights.resolve(), meta_path.resolve()):
        raise CerberusError(f"{out}: the pair would overwrite the checkpoint it is exported from")
    loaded = load_model(checkpoint)
    state = {k: v for k, v in loaded.state.items() if k != "weights_metadata"}
    metadata = weights_metadata(state, loaded.model, metrics=metrics, source=str(checkpoint))
    return write_weights_pair(weights, loaded.model.state_dict(), metadata)


def verify_weights(path: str | Path, fingerprint: str) -> None:
    """Reload a pair (hash checked) and compare its model fingerprint with ``fingerprint``."""
    found = load_model(pair_paths(path)[1]).fingerprint
    if found != fingerprint:
        raise CerberusError(
            f"{path}: reloaded model {found[:12]} differs from the exported one {fingerprint[:12]}"
        )
