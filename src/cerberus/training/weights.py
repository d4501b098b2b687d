"""Weights as verified data: a safetensors file plus a small JSON metadata file.

A *weights pair* ``X.safetensors`` + ``X.json`` holds a trained model without any pickle:

- ``X.safetensors``: the model's tensors (its ``state_dict``), a format that stores raw arrays
  and a JSON header only, so reading it runs no code;
- ``X.json``: ``format: "cerberus-weights"``, ``version``, ``weights`` (the file name of the
  tensors, next to the JSON), their ``sha256`` and size, and what rebuilding and using the model
  needs: ``config`` (the resolved training config), ``meta`` (the checkpoint's meta: schema,
  class count, SID counts, calibration, passed through as it is), ``input`` (size, mean / std),
  ``training`` (data and iterations), ``metrics`` and the model ``fingerprint``;
  ``metadata_sha256``: the sha256 of the canonical JSON of the entries that decide what the
  model outputs (:data:`OUTPUT_KEYS`: ``config``, ``meta`` with the schema and calibration,
  ``input``), so an edit of the JSON by hand is refused like a changed weights file.

:func:`read_weights_pair` checks the hash of the bytes it then parses (a changed or damaged file
is refused in one line naming it, expected vs found); it reads local files only. Either file of
the pair may be named, under any name: the two files of a pair share a stem (``y.safetensors``
+ ``y.json`` after renaming both) and are matched by hash, not by the name recorded at export.
A safetensors file is recognised by its content (its header), whatever its suffix.
:mod:`cerberus.training.checkpoints` reads a pair wherever it reads a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from cerberus.errors import CerberusError
from cerberus.files import atomic_write

WEIGHTS_FORMAT = "cerberus-weights"
WEIGHTS_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
METADATA_SUFFIX = ".json"


OUTPUT_KEYS = ("config", "meta", "input")
"""The metadata entries that decide the model's outputs, covered by ``metadata_sha256``."""

_MAX_HEADER = 100 * 2**20  # safetensors' own bound on its JSON header


def is_safetensors(path: str | Path) -> bool:
    """Whether the file at ``path`` starts like a safetensors file: a little-endian u64 header
    length that fits the file, then a JSON object (``{``). Reads 9 bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            size = fh.seek(0, 2)
    except OSError:
        return False
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= min(_MAX_HEADER, size - 8) and head[8:9] == b"{"


def is_weights_pair(path: str | Path) -> bool:
    """Whether ``path`` names a file of a weights pair: a ``.safetensors`` or ``.json`` name,
    or a file of any name whose content is safetensors (e.g. one renamed ``.pt``)."""
    path = Path(path)
    if path.suffix.lower() in (WEIGHTS_SUFFIX, METADATA_SUFFIX):
        return True
    return path.is_file() and is_safetensors(path)


def pair_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths for either file of a pair, or for its common stem.

    A safetensors file under another suffix (``y.pt``) is the weights, ``y.json`` its metadata.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (WEIGHTS_SUFFIX, METADATA_SUFFIX) and path.is_file() and is_safetensors(path):
        return path, path.with_suffix(METADATA_SUFFIX)
    stem = path.with_suffix("") if suffix in (WEIGHTS_SUFFIX, METADATA_SUFFIX) else path
    return stem.with_name(stem.name + WEIGHTS_SUFFIX), stem.with_name(stem.name + METADATA_SUFFIX)


def metadata_sha256(metadata: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, ASCII) of the :data:`OUTPUT_KEYS`
    entries of a pair's metadata, as they read back from the file (NaN as null)."""
    part = json.loads(json.dumps(_plain({k: metadata.get(k) for k in OUTPUT_KEYS})))
    text = json.dumps(part, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return sha256_hex(text.encode())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError:  # pragma: no cover - safetensors is a dependency
        raise CerberusError("weights files need safetensors: pip install safetensors") from None
    return st


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def write_weights_pair(
    out: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``X.safetensors`` then ``X.json`` (each atomically); returns both paths.

    ``metadata`` is completed with the format, version, the weights' file name, ``sha256`` and
    ``bytes``. Tensors are copied to contiguous CPU memory (safetensors refuses shared storage).
    The JSON is written last: a crash in between leaves a pair whose hash check fails, never a
    pair that loads the wrong weights.
    """
    st = _safetensors()
    weights, meta_path = pair_paths(out)
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    try:
        data = st.save(plain, metadata={"format": WEIGHTS_FORMAT})
    except Exception as exc:
        raise CerberusError(f"{weights}: cannot serialise the weights ({_first(exc)})") from None
    atomic_write(weights, lambda fh: fh.write(data), "weights")
    full = {
        "format": WEIGHTS_FORMAT,
        "version": WEIGHTS_VERSION,
        "weights": weights.name,
        "sha256": sha256_hex(data),
        "bytes": len(data),
        **{k: v for k, v in metadata.items() if k not in ("format", "version", "weights")},
    }
    write_metadata(meta_path, full)
    return weights, meta_path


def _plain(x: Any) -> Any:
    """``x`` with NaN / infinite floats as ``None`` (strict JSON has no NaN; metrics may)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_metadata(path: Path, metadata: dict[str, Any]) -> Path:
    """Write a pair's JSON metadata atomically (indented, keys in insertion order; NaN as null),
    with its ``metadata_sha256`` computed afresh."""
    try:
        full = {**metadata, "metadata_sha256": metadata_sha256(metadata)}
        text = json.dumps(_plain(full), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise CerberusError(f"{path}: metadata is not plain JSON ({_first(exc)})") from None
    return atomic_write(path, lambda fh: fh.write(text.encode()), "weights metadata")


def read_metadata(path: str | Path) -> tuple[dict[str, Any], Path, Path]:
    """A pair's checked metadata and ``(weights, metadata)`` paths; the tensors are not read.

    The weights file is the metadata's partner of the same stem (or the file named, when a
    weights file is named), else the name recorded at export; either way its hash decides.
    """
    weights, meta_path = pair_paths(path)
    if not meta_path.is_file():
        raise CerberusError(
            f"{meta_path}: weights metadata not found (a weights pair is {weights.name} + "
            f"{meta_path.name})"
        )
    try:  # utf-8-sig: a byte order mark, as some editors write, is read past
        meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CerberusError(f"{meta_path}: not readable JSON ({_first(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != WEIGHTS_FORMAT:
        raise CerberusError(
            f"{meta_path}: not Cerberus weights metadata (no 'format: {WEIGHTS_FORMAT}')"
        )
    if meta.get("version") != WEIGHTS_VERSION:
        raise CerberusError(
            f"{meta_path}: weights metadata version {meta.get('version')!r} is not "
            f"{WEIGHTS_VERSION}"
        )
    name = meta.get("weights")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise CerberusError(f"{meta_path}: 'weights' must be a file name next to it, got {name!r}")
    sha = meta.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise CerberusError(f"{meta_path}: 'sha256' must be 64 hex digits, got {sha!r}")
    for key in ("config", "meta"):
        if not isinstance(meta.get(key), dict):
            raise CerberusError(f"{meta_path}: no '{key}' entry (not written by cerberus export)")
    _check_metadata_hash(meta, meta_path)
    if not weights.is_file() and meta_path.with_name(name).is_file():
        weights = meta_path.with_name(name)  # only the JSON was renamed
    return meta, weights, meta_path


def _check_metadata_hash(meta: dict[str, Any], meta_path: Path) -> None:
    recorded = meta.get("metadata_sha256")
    if not isinstance(recorded, str) or len(recorded) != 64:
        raise CerberusError(
            f"{meta_path}: no 'metadata_sha256' (64 hex digits) covering "
            f"{', '.join(OUTPUT_KEYS)}; export the pair again with this version of cerberus"
        )
    found = metadata_sha256(meta)
    if found != recorded.lower():
        raise CerberusError(
            f"{meta_path}: its {', '.join(OUTPUT_KEYS)} entries were changed since export "
            f"(sha256 {found} does not match metadata_sha256 {recorded}); they decide the "
            "model's outputs: export the pair again from its checkpoint"
        )


def read_weights_pair(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a pair, after checking the tensors' sha256.

    The hash is computed on the bytes that are then parsed (no second read). Nothing is fetched
    from the network and nothing is unpickled.

    Raises:
        CerberusError: a missing or malformed file, or a hash that differs from the metadata's
            (``"<weights>: sha256 <found> does not match <expected> recorded in <json>"``).
    """
    st = _safetensors()
    meta, weights, meta_path = read_metadata(path)
    if not weights.is_file():
        raise CerberusError(
            f"{weights}: weights file not found (the partner of {meta_path.name}; it recorded "
            f"{meta['weights']!r}, not found either)"
        )
    data = weights.read_bytes()
    found = sha256_hex(data)
    if found != meta["sha256"].lower():
        raise CerberusError(
            f"{weights}: sha256 {found} does not match {meta['sha256']} recorded in "
            f"{meta_path.name}; the weights file was changed or damaged"
        )
    try:
        tensors = st.load(data)
    except Exception as exc:
        raise CerberusError(f"{weights}: not a readable safetensors file ({_first(exc)})") from None
    return tensors, meta


def update_metadata(path: str | Path, key: str, value: Any) -> Path:
    """Set ``meta[key]`` (the checkpoint-meta part) in a pair's JSON, atomically.

    The weights and their hash are untouched (e.g. a calibration added after export).
    """
    meta, _, meta_path = read_metadata(path)
    meta["meta"][key] = value
    return write_metadata(meta_path, meta)
