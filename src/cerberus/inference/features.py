"""Feature and index files: ``.npz`` read with ``allow_pickle=False`` (no code runs from them).

- features file (``cerberus extract``, :class:`FeatureSet`): ``features (N, 5, d)``, paths,
  identities and cameras when the file names tell them (else :data:`UNKNOWN`), attribute values
  when an attribute file was given, the SID prototypes and the model fingerprint;
- index file (``cerberus index``, :class:`cerberus.store.npz.NpzIndex`): the serialised
  faiss index and the same metadata, without the raw features.

Both are written atomically and carry a ``kind`` and a format version that loading checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cerberus.attributes.schema import GROUPS, Schema
from cerberus.attributes.schema_files import schema_from_meta
from cerberus.data.labels import UNKNOWN, camera_label  # noqa: F401 (re-exported)
from cerberus.errors import CerberusError
from cerberus.files import atomic_write

FILE_FORMAT_VERSION = 1


@dataclass
class FeatureSet:
    """Extracted features of a set of crops with everything search needs besides the model.

    Attributes:
        features: ``(N, 5, d)`` raw representations.
        paths: image paths as strings, length N.
        pids, camids: ``(N,)``; :data:`UNKNOWN` where the file name does not tell.
        values: ``(N, num_attributes)`` ground-truth attribute values, ``-1`` where unknown.
        prototypes: ``{G: (S_G, d)}`` the model's SID prototypes.
        meta: ``schema``, ``fingerprint`` (of the model), ``checkpoint``, ``height``, ``width``;
            ``camera_labels`` (the name of each camera number, see :func:`camera_label`) when
            the images came from a table dataset.
    """

    features: np.ndarray
    paths: list[str]
    pids: np.ndarray
    camids: np.ndarray
    values: np.ndarray
    prototypes: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        return schema_from_meta(self.meta.get("schema"), "features")

    def save(self, path: str | Path) -> Path:
        arrays = {
            "features": self.features.astype(np.float32),
            **common_arrays(self.paths, self.pids, self.camids, self.values, self.prototypes),
        }
        return save_npz(path, arrays, {**self.meta, "kind": "features"}, "features file")

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        arrays, meta = load_npz(path, "features", "features file")
        if "features" not in arrays:
            raise CerberusError(f"{path}: features file without a 'features' array")
        paths, pids, camids, values, prototypes = read_common(arrays, meta, path)
        feats = arrays["features"]
        d = prototypes[GROUPS[0]].shape[1]
        if feats.shape != (len(paths), len(GROUPS), d):
            raise CerberusError(
                f"{path}: array 'features' has shape {feats.shape}, expected "
                f"{(len(paths), len(GROUPS), d)}"
            )
        return cls(feats, paths, pids, camids, values, prototypes, meta)


def common_arrays(paths, pids, camids, values, prototypes) -> dict[str, np.ndarray]:
    out = {
        "paths": np.asarray([str(p) for p in paths], dtype=np.str_),
        "pids": np.asarray(pids, dtype=np.int64),
        "camids": np.asarray(camids, dtype=np.int64),
        "values": np.asarray(values, dtype=np.int64),
    }
    out.update({f"prototype_{g}": np.asarray(prototypes[g], np.float32) for g in GROUPS})
    return out


def read_common(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], path) -> tuple:
    """The arrays every features / index file holds, checked against the schema it names."""
    try:
        schema = schema_from_meta(meta.get("schema", ""), str(path))
    except CerberusError as exc:
        if isinstance(meta.get("schema"), dict):
            raise
        raise CerberusError(
            f"{path}: no known attribute schema in its metadata ({meta.get('schema')!r})"
        ) from exc
    try:
        prototypes = {g: arrays[f"prototype_{g}"] for g in GROUPS}
        paths = [str(p) for p in np.atleast_1d(arrays["paths"])]
        pids, camids, values = arrays["pids"], arrays["camids"], arrays["values"]
    except KeyError as exc:
        raise CerberusError(f"{path}: missing array {exc.args[0]!r}") from None
    n = len(paths)
    expected = {
        "pids": (n,),
        "camids": (n,),
        "values": (n, schema.num_attributes),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise CerberusError(
                f"{path}: array {name!r} has shape {arrays[name].shape}, expected {shape} "
                f"({n} paths, {schema.name} schema)"
            )
    dims = set()
    for g, proto in prototypes.items():
        rows = schema.num_sids[g]
        if proto.ndim != 2 or proto.shape[0] != rows:
            raise CerberusError(
                f"{path}: array 'prototype_{g}' has shape {proto.shape}, expected "
                f"({rows}, d) for the {schema.name} schema"
            )
        dims.add(proto.shape[1])
    if len(dims) != 1:
        raise CerberusError(f"{path}: the prototype arrays differ in width {sorted(dims)}")
    return paths, pids, camids, values, prototypes


def save_npz(path: str | Path, arrays: dict[str, np.ndarray], meta: dict, what: str) -> Path:
    """Write arrays + JSON metadata atomically (temporary file, fsync, rename)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    meta = {**meta, "format": "cerberus", "version": FILE_FORMAT_VERSION}
    arrays = {**arrays, "meta": np.asarray(json.dumps(meta))}
    return atomic_write(path, lambda fh: np.savez(fh, **arrays), what)


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_npz(path: str | Path, kind: str, what: str) -> tuple[dict[str, np.ndarray], dict]:
    path = Path(path)
    if not path.is_file():
        raise CerberusError(f"{path}: {what} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # neither .npy nor .npz: numpy would try a pickle
            raise CerberusError(
                f"{path}: not a readable Cerberus {what}: refusing to load objects other than "
                "arrays from it (untrusted pickle)"
            ) from None
        raise CerberusError(f"{path}: not a readable Cerberus {what} ({_first(exc)})") from None
    except Exception as exc:  # zip, npy and JSON errors of a damaged file
        raise CerberusError(f"{path}: not a readable Cerberus {what} ({_first(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != "cerberus":
        raise CerberusError(f"{path}: not a Cerberus {what}")
    if meta.get("kind") != kind:
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise CerberusError(f"{path}: a Cerberus {meta.get('kind')} file, not {article} {what}")
    if meta.get("version") != FILE_FORMAT_VERSION:
        raise CerberusError(f"{path}: {what} version {meta.get('version')} is not supported")
    return arrays, meta
