"""Lin et al. attribute files (``market_attribute.mat``, ``duke_attribute.mat``): reading and
writing :class:`~cerberus.attributes.table.AttributeTable` s (method §6).

Binary fields are coded 1 / 2 (0: unlabelled, read as unknown); a colour attribute is one
one-hot field per colour other than its none value.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cerberus.attributes.schema import Schema
from cerberus.attributes.schema_files import SCHEMAS
from cerberus.attributes.table import AttributeTable
from cerberus.errors import CerberusError

logger = logging.getLogger(__name__)


def _read_field(split: np.ndarray, name: str, n: int | None, where: str) -> np.ndarray:
    if name not in (split.dtype.names or ()):
        raise CerberusError(f"{where}: missing field {name!r}")
    arr = np.asarray(split[name][0, 0]).reshape(-1)
    if n is not None and arr.shape[0] != n:
        raise CerberusError(f"{where}: field {name!r} has {arr.shape[0]} entries, expected {n}")
    return arr


def _decode_split(schema: Schema, split: np.ndarray, where: str) -> AttributeTable:
    raw_ids = _read_field(split, "image_index", None, where)
    ids = []
    for k, x in enumerate(raw_ids):
        s = str(np.asarray(x).reshape(-1)[0]) if np.asarray(x).size else ""
        try:
            ids.append(int(s))
        except ValueError:
            raise CerberusError(f"{where}: image_index[{k}] = {s!r} is not an identity") from None
    n = len(ids)
    if len(set(ids)) != n:
        raise CerberusError(f"{where}: image_index has duplicate identities")
    values = np.zeros((n, schema.num_attributes), dtype=np.int64)
    alternatives: dict[int, np.ndarray] = {}
    for j, attr in enumerate(schema.attributes):
        if attr.is_onehot:
            hot = np.stack([_read_field(split, f, n, where) for f in attr.fields], 1)
            if not np.isin(hot, (0, 1, 2)).all():
                raise CerberusError(f"{where}: {attr.name} fields must be coded 1 or 2 (0: none)")
            unlabelled = (hot == 0).any(1)
            hot = hot == 2
            colour = np.asarray(attr.colour_codes, dtype=np.int64)  # field i -> colour[i]
            set_colour = np.where(hot.any(1), colour[hot.argmax(1)], attr.none_code)
            values[:, j] = np.where(unlabelled, -1, set_colour)
            multi = np.nonzero(hot.sum(1) > 1)[0]
            if len(multi):
                # Real quirk: 23 DukeMTMC test identities have two (one has three) lower-body
                # colours set. The first is the value, the others are kept as alternatives.
                logger.info(
                    "%s: %d identities have several %s fields set (e.g. %04d); the first in "
                    "field order is the value, the others are kept as alternatives",
                    where,
                    len(multi),
                    attr.name,
                    ids[int(multi[0])],
                )
                codes = [colour[np.nonzero(row)[0][1:]] for row in hot]
                column = np.full((n, max(len(c) for c in codes)), -1, dtype=np.int64)
                for r, c in enumerate(codes):
                    column[r, : len(c)] = c
                alternatives[j] = column
        else:
            col = _read_field(split, attr.fields[0], n, where).astype(np.int64)
            unlabelled = np.nonzero(col == 0)[0]
            if len(unlabelled):
                # Real quirk: 2 DukeMTMC train identities have `top` coded 0 (no label).
                # Their value is unknown (-1): left out of L_sem for that group, of SID counts.
                logger.warning(
                    "%s: %d identities have %r coded 0 (unlabelled, e.g. %04d); read as unknown",
                    where,
                    len(unlabelled),
                    attr.fields[0],
                    ids[int(unlabelled[0])],
                )
            if (col < 0).any() or (col > attr.num_values).any():
                raise CerberusError(
                    f"{where}: field {attr.fields[0]!r} must be coded 1..{attr.num_values} "
                    "(0: unlabelled)"
                )
            values[:, j] = col - 1
    num_alt = max((c.shape[1] for c in alternatives.values()), default=0)
    alt = np.full((n, num_alt, schema.num_attributes), -1, dtype=np.int64)
    for j, column in alternatives.items():
        alt[:, : column.shape[1], j] = column
    return AttributeTable(schema, np.asarray(ids, dtype=np.int64), values, alt if num_alt else None)


def load_attribute_mat(path: str | Path, schema: Schema | None = None) -> dict[str, AttributeTable]:
    """Read a Lin et al. attribute file into ``{"train": table, "test": table}``.

    The schema is found from the top-level key (``market_attribute`` / ``duke_attribute``)
    unless given.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise CerberusError(f"{path}: attribute file not found")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for bad files
        raise CerberusError(f"{path}: not a readable .mat file ({exc})") from None
    keys = [k for k in mat if not k.startswith("__")]
    if schema is None:
        found = [s for s in SCHEMAS.values() if s.mat_key in keys]
        if not found:
            raise CerberusError(
                f"{path}: no known attribute table (expected one of "
                f"{', '.join(s.mat_key for s in SCHEMAS.values())}; found {', '.join(keys)})"
            )
        schema = found[0]
    missing = [a.name for a in schema.attributes if not a.fields]
    if not schema.mat_key or missing:
        raise CerberusError(
            f"{path}: the {schema.name} schema names no Lin .mat layout (mat_key, and fields "
            f"for {', '.join(missing) or 'every attribute'}); give the attributes as a table"
        )
    if schema.mat_key not in keys:
        raise CerberusError(f"{path}: missing top-level key {schema.mat_key!r}")
    root = mat[schema.mat_key]
    out = {}
    for split_name in ("train", "test"):
        if split_name not in (root.dtype.names or ()):
            raise CerberusError(f"{path}: {schema.mat_key} has no {split_name!r} split")
        out[split_name] = _decode_split(schema, root[split_name][0, 0], f"{path} [{split_name}]")
    return out


def save_attribute_mat(path: str | Path, tables: Mapping[str, AttributeTable]) -> None:
    """Write tables in the Lin et al. layout (inverse of :func:`load_attribute_mat`).

    Alternative colours are written as further colour fields set to 2; reading them back gives
    the same table when each identity's alternatives follow its value in field order.
    """
    import scipy.io

    schema = next(iter(tables.values())).schema
    splits = {}
    for split_name, table in tables.items():
        fields: dict[str, np.ndarray] = {}
        for j, attr in enumerate(schema.attributes):
            v = table.values[:, j]
            if attr.is_onehot:
                alt = table.alt_values[:, :, j]
                for c, f in zip(attr.colour_codes, attr.fields):
                    hot = (v == c) | (alt == c).any(1)
                    code = np.where(v < 0, 0, np.where(hot, 2, 1))
                    fields[f] = code.astype(np.uint8)[None, :]
            else:
                fields[attr.fields[0]] = (v + 1).astype(np.uint8)[None, :]
        ids = np.empty((1, len(table)), dtype=object)
        for k, pid in enumerate(table.ids):
            ids[0, k] = np.array([f"{int(pid):04d}"])
        fields["image_index"] = ids
        splits[split_name] = fields
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {schema.mat_key: splits})
    data = bytearray(buffer.getvalue())
    # The 116-byte header text holds scipy's "Created on: <now>"; a fixed text keeps the
    # file a pure function of the tables (same tables, same bytes).
    data[:116] = b"MATLAB 5.0 MAT-file, written by cerberus".ljust(116)
    Path(path).write_bytes(bytes(data))
