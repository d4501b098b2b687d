"""Attribute schemas, the five groups and semantic IDs (SIDs), SPEC section 1.

A *schema* is a declarative table of attributes. Each attribute has a name used in queries
(``"upper.color"``), human-readable values (``"red"``), the group it belongs to (H, U, L, I, C)
and the fields of the Lin et al. ``.mat`` file it is read from.

Value coding: every attribute value is an integer index into ``Attribute.values``. Binary
Lin fields (1 = first label, 2 = second label) map to 0 / 1, ``age`` (1..4) to 0..3, and a colour
attribute built from one-hot fields (``upblack``, ``upwhite``, ...) maps to 0 = ``"none"`` (no field
set) or 1 + the index of the field that is set. When several colour fields are set (22
DukeMTMC-reID test identities have two lower-body colours, one has three), the first in field order
is the value and the others are kept as *alternatives* (:attr:`AttributeTable.alt_values`), which
PAR and APS accept as equally correct (SPEC 6).

A SID of group G is one combination of the values of all attributes of G. The SID space is the
*full* product of the value counts, so a combination never seen in training still has an index
(and a prototype). The SID index is a mixed-radix number over the group's attributes, first
attribute most significant.

Unknown labels: a value code ``-1`` means "not annotated" (DukeMTMC-reID has two training
identities with ``top`` coded 0). A group with an unknown value has the unknown SID ``-1``;
the semantic guidance loss leaves it out, and SID counts do not count it.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cerberus.errors import CerberusError, shown

logger = logging.getLogger(__name__)

GROUPS: tuple[str, ...] = ("H", "U", "L", "I", "C")
"""The five groups in canonical order: head, upper body, lower body, identity, carrying."""

GROUP_NAMES: dict[str, str] = {
    "H": "head",
    "U": "upper body",
    "L": "lower body",
    "I": "identity",
    "C": "carrying",
}


ATTRIBUTE_KINDS: tuple[str, ...] = ("binary", "multi", "color")
"""``binary``: two values; ``multi``: one of several values (age); ``color``: one of several
colours, the first value meaning "none of them" (several may be annotated: alternatives)."""


@dataclass(frozen=True)
class Attribute:
    """One (possibly multi-valued) attribute.

    Attributes:
        name: query name, e.g. ``"gender"`` or ``"upper.color"``.
        group: one of :data:`GROUPS`.
        values: human names of the values, index = value code.
        fields: Lin ``.mat`` fields (empty for a schema read only from tables). One field: its
            code ``k`` (1-based) is value ``k - 1``. A colour's one-hot fields: value 0 = none
            set, ``i + 1`` = field ``i``.
        phrases: optional phrase per value for descriptions ("red top"); defaults to the value.
        kind: one of :data:`ATTRIBUTE_KINDS`; empty: ``color`` for several fields, else
            ``binary`` for two values, else ``multi``.
    """

    name: str
    group: str
    values: tuple[str, ...]
    fields: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            kind = (
                "color" if len(self.fields) > 1 else "binary" if len(self.values) == 2 else "multi"
            )
            object.__setattr__(self, "kind", kind)
        if self.group not in GROUPS:
            raise CerberusError(f"attribute {self.name!r}: group {self.group!r} not in {GROUPS}")
        if self.kind not in ATTRIBUTE_KINDS:
            raise CerberusError(
                f"attribute {self.name!r}: kind {self.kind!r} not in {ATTRIBUTE_KINDS}"
            )
        if len(self.values) < 2:
            raise CerberusError(f"attribute {self.name!r}: needs at least two values")
        if self.kind == "binary" and len(self.values) != 2:
            raise CerberusError(
                f"attribute {self.name!r}: a binary attribute has two values, got "
                f"{len(self.values)} (use kind multi)"
            )
        if self.is_onehot and self.fields and len(self.values) != len(self.fields) + 1:
            raise CerberusError(
                f"attribute {self.name!r}: {len(self.fields)} one-hot fields need "
                f"{len(self.fields) + 1} values (first is 'none'), got {len(self.values)}"
            )
        if not self.is_onehot and len(self.fields) > 1:
            raise CerberusError(
                f"attribute {self.name!r}: only a color attribute reads several .mat fields"
            )
        if self.phrases and len(self.phrases) != len(self.values):
            raise CerberusError(f"attribute {self.name!r}: one phrase per value expected")
        folded = [v.strip().lower() for v in self.values]
        if len(set(folded)) != len(folded) or "" in folded:
            raise CerberusError(
                f"attribute {self.name!r}: values must be distinct (ignoring case) and non-empty"
            )

    @property
    def is_onehot(self) -> bool:
        """A colour attribute: value 0 is "none", several colours may be annotated."""
        return self.kind == "color"

    @property
    def num_values(self) -> int:
        return len(self.values)

    def phrase(self, value: int) -> str:
        return self.phrases[value] if self.phrases else self.values[value]

    def value_index(self, value: str) -> int:
        """The code of a value given by name (case-insensitive); raises with the valid names."""
        key = value.strip().lower()
        for i, v in enumerate(self.values):
            if v.lower() == key:
                return i
        raise CerberusError(
            f"attribute {self.name!r} has no value {shown(value)}; valid: {', '.join(self.values)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The attribute as schema-file data (see :func:`schema_from_dict`)."""
        out: dict[str, Any] = {
            "name": self.name,
            "group": self.group,
            "kind": self.kind,
            "values": list(self.values),
        }
        if self.phrases:
            out["phrases"] = list(self.phrases)
        if self.fields:
            out["fields"] = list(self.fields)
        return out


class GroupCodec:
    """SID codec of one group: attribute values <-> SID index over the full combination space.

    Args:
        group: group letter.
        attributes: the schema's attributes of this group, in schema order.
    """

    def __init__(self, group: str, attributes: Sequence[Attribute]) -> None:
        if not attributes:
            raise CerberusError(f"group {group!r} has no attribute")
        self.group = group
        self.attributes = tuple(attributes)
        self.radices = np.array([a.num_values for a in self.attributes], dtype=np.int64)
        # Mixed radix, first attribute most significant.
        self.strides = np.ones(len(self.attributes), dtype=np.int64)
        for i in range(len(self.attributes) - 2, -1, -1):
            self.strides[i] = self.strides[i + 1] * self.radices[i + 1]
        self.num_sids = int(np.prod(self.radices))

    def __repr__(self) -> str:
        names = ", ".join(a.name for a in self.attributes)
        return f"GroupCodec({self.group}: {names}; {self.num_sids} SIDs)"

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Values of shape ``(..., n_attrs)`` (group attributes only) -> SIDs of shape ``(...)``."""
        values = np.asarray(values, dtype=np.int64)
        if values.shape[-1] != len(self.attributes):
            raise CerberusError(
                f"group {self.group}: expected {len(self.attributes)} values, "
                f"got {values.shape[-1]}"
            )
        if (values < 0).any() or (values >= self.radices).any():
            raise CerberusError(f"group {self.group}: attribute value out of range")
        return (values * self.strides).sum(-1)

    def decode(self, sids: np.ndarray) -> np.ndarray:
        """SIDs of shape ``(...)`` -> values of shape ``(..., n_attrs)``."""
        sids = np.asarray(sids, dtype=np.int64)
        if (sids < 0).any() or (sids >= self.num_sids).any():
            raise CerberusError(f"group {self.group}: SID out of range [0, {self.num_sids})")
        return (sids[..., None] // self.strides) % self.radices

    @cached_property
    def num_binary_dims(self) -> int:
        return int(sum(a.num_values - 1 for a in self.attributes))

    def binary_vectors(self) -> np.ndarray:
        """The binary attribute vector A_m of every SID, shape ``(num_sids, num_binary_dims)``.

        Dummy coding: each attribute contributes ``num_values - 1`` dimensions, one per value other
        than the first (the reference value: "no", "male", "young", colour "none"). For the Lin
        annotations these are exactly the binary fields (``upred``, ``backpack``, ...), plus three
        for age. Used by the prototype regularisation, SPEC section 3.
        """
        values = self.decode(np.arange(self.num_sids))
        out = np.zeros((self.num_sids, self.num_binary_dims), dtype=np.float32)
        offset = 0
        for j, attr in enumerate(self.attributes):
            v = values[:, j]
            rows = np.nonzero(v > 0)[0]
            out[rows, offset + v[rows] - 1] = 1.0
            offset += attr.num_values - 1
        return out

    def describe(self, sid: int) -> dict[str, str]:
        """``{attribute name: value name}`` for one SID."""
        values = self.decode(np.array(sid))
        return {a.name: a.values[int(v)] for a, v in zip(self.attributes, values)}


MAX_GROUP_SIDS = 100_000
"""Largest SID space of one group (one prototype of ``d`` floats per SID)."""


@dataclass(frozen=True)
class Schema:
    """A dataset's attribute schema: the attributes, grouped into the five groups."""

    name: str
    mat_key: str
    attributes: tuple[Attribute, ...]
    codecs: dict[str, GroupCodec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [a.name.lower() for a in self.attributes]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise CerberusError(f"schema {self.name!r}: attribute {twice!r} is declared twice")
        for g in GROUPS:
            members = [a for a in self.attributes if a.group == g]
            if not members:
                raise CerberusError(
                    f"schema {self.name!r}: group {g} ({GROUP_NAMES[g]}) has no attribute; "
                    "each of H, U, L, I, C needs at least one"
                )
            colours = [a.name for a in members if a.is_onehot]
            if len(colours) > 1:
                raise CerberusError(
                    f"schema {self.name!r}: group {g} has several color attributes "
                    f"({', '.join(colours)}); at most one per group"
                )
            size = math.prod(a.num_values for a in members)
            if size > MAX_GROUP_SIDS:
                raise CerberusError(
                    f"schema {self.name!r}: group {g} has {size} value combinations (SIDs), "
                    f"more than {MAX_GROUP_SIDS}; move attributes to other groups"
                )
        codecs = {g: GroupCodec(g, [a for a in self.attributes if a.group == g]) for g in GROUPS}
        object.__setattr__(self, "codecs", codecs)

    def to_dict(self) -> dict[str, Any]:
        """The schema as schema-file data: what checkpoints and index files carry."""
        out: dict[str, Any] = {"name": self.name}
        if self.mat_key:
            out["mat_key"] = self.mat_key
        out["attributes"] = [a.to_dict() for a in self.attributes]
        return out

    @property
    def num_attributes(self) -> int:
        return len(self.attributes)

    @property
    def num_sids(self) -> dict[str, int]:
        return {g: c.num_sids for g, c in self.codecs.items()}

    def index(self, name: str) -> int:
        """Column of an attribute by name; raises with the list of valid names."""
        for i, a in enumerate(self.attributes):
            if a.name == name:
                return i
        valid = ", ".join(a.name for a in self.attributes)
        raise CerberusError(f"{self.name}: unknown attribute {shown(name)}; valid: {valid}")

    def group_columns(self, group: str) -> list[int]:
        return [i for i, a in enumerate(self.attributes) if a.group == group]

    def to_sids(self, values: np.ndarray) -> np.ndarray:
        """Attribute values ``(N, num_attributes)`` -> SIDs ``(N, 5)``, :data:`GROUPS` order.

        A group with any value ``-1`` (unknown) gets the SID ``-1``.
        """
        values = np.asarray(values, dtype=np.int64)
        if values.ndim != 2 or values.shape[1] != self.num_attributes:
            raise CerberusError(
                f"{self.name}: expected values of shape (N, {self.num_attributes}), "
                f"got {values.shape}"
            )
        if (values < -1).any():
            raise CerberusError(f"{self.name}: attribute value below -1 (the unknown code)")
        out = np.full((values.shape[0], len(GROUPS)), -1, dtype=np.int64)
        for k, g in enumerate(GROUPS):
            group_values = values[:, self.group_columns(g)]
            known = (group_values >= 0).all(1)
            out[known, k] = self.codecs[g].encode(group_values[known])
        return out

    def alternative_sids(self, values: np.ndarray, alt_values: np.ndarray) -> np.ndarray:
        """SIDs of the alternative value rows: ``(N, K, 5)``, ``-1`` where a slot changes nothing.

        Slot ``k`` of row ``i`` takes ``values[i]`` with every attribute where
        ``alt_values[i, k] >= 0`` replaced by that alternative; a group none of whose attributes
        has an alternative in that slot gets ``-1`` (so it never matches twice). Each group holds
        at most one colour attribute, so per-group alternatives cover every combination of the
        annotated colours across groups. Rows with an unknown (``-1``) value get ``-1``.

        Args:
            values: int array of shape ``(N, num_attributes)``.
            alt_values: int array of shape ``(N, K, num_attributes)``, ``-1`` = no alternative.
        """
        values = np.asarray(values, dtype=np.int64)
        alt = np.asarray(alt_values, dtype=np.int64)
        num, num_alt = alt.shape[0], alt.shape[1]
        out = np.full((num, num_alt, len(GROUPS)), -1, dtype=np.int64)
        known = (values >= 0).all(1)
        for k in range(num_alt):
            has = alt[:, k] >= 0
            swapped = np.where(has, alt[:, k], values)
            for j, g in enumerate(GROUPS):
                cols = self.group_columns(g)
                rows = known & has[:, cols].any(1)
                if rows.any():
                    out[rows, k, j] = self.codecs[g].encode(swapped[np.ix_(rows, cols)])
        return out

    def from_sids(self, sids: np.ndarray) -> np.ndarray:
        """SIDs ``(N, 5)`` -> full attribute values ``(N, num_attributes)``; SID ``-1`` gives
        ``-1`` for every attribute of its group."""
        sids = np.asarray(sids, dtype=np.int64)
        out = np.full((sids.shape[0], self.num_attributes), -1, dtype=np.int64)
        for k, g in enumerate(GROUPS):
            known = sids[:, k] != -1
            cols = self.group_columns(g)
            out[np.ix_(known, cols)] = self.codecs[g].decode(sids[known, k])
        return out

    def describe(self, values: Sequence[int]) -> dict[str, str]:
        """``{attribute name: value name}`` for one full value row (``-1``: ``"unknown"``)."""
        return {
            a.name: a.values[int(v)] if int(v) >= 0 else "unknown"
            for a, v in zip(self.attributes, values)
        }

    def parse_query(self, text: str | Mapping[str, str]) -> dict[str, int]:
        """Parse ``"gender=female, upper.color=red"`` into ``{attribute name: value code}``.

        Names and values are case-insensitive (``Gender=Male``). Unknown names or values, and a
        name given twice, raise :class:`CerberusError` (listing the valid names or values).
        """
        items: Iterable[tuple[str, str]]
        if isinstance(text, Mapping):
            items = text.items()
        else:
            pairs = [p for p in (s.strip() for s in text.replace(";", ",").split(",")) if p]
            parsed = []
            for p in pairs:
                if "=" not in p:
                    raise CerberusError(
                        f"attribute query: {shown(p)} is not of the form name=value"
                    )
                k, v = p.split("=", 1)
                parsed.append((k.strip(), v.strip()))
            items = parsed
        by_name = {a.name.lower(): a for a in self.attributes}
        out: dict[str, int] = {}
        for k, v in items:
            attr = by_name.get(str(k).strip().lower())
            if attr is None:
                valid = ", ".join(a.name for a in self.attributes)
                raise CerberusError(f"{self.name}: unknown attribute {shown(k)}; valid: {valid}")
            if attr.name in out:
                raise CerberusError(f"attribute query: {attr.name!r} is given more than once")
            out[attr.name] = attr.value_index(str(v))
        if not out:
            raise CerberusError("attribute query is empty")
        return out

    def query_sids(self, query: Mapping[str, int]) -> dict[str, int]:
        """A (partial) query -> ``{group: SID}`` for the groups it fully specifies.

        A group is *given* when all its attributes are in the query; a group with only some of its
        attributes given is an error (a SID needs every attribute of its group).
        """
        out: dict[str, int] = {}
        for g in GROUPS:
            cols = self.group_columns(g)
            names = [self.attributes[c].name for c in cols]
            given = [n for n in names if n in query]
            if not given:
                continue
            if len(given) != len(names):
                missing = ", ".join(n for n in names if n not in query)
                raise CerberusError(
                    f"group {g} ({GROUP_NAMES[g]}) is partly given; also give: {missing}"
                )
            out[g] = int(self.codecs[g].encode(np.array([query[n] for n in names])))
        return out


SCHEMA_FILES = Path(__file__).parent / "schemas"
"""The schema files shipped with the package: ``<name>.yaml``."""

_ATTRIBUTE_KEYS = ("name", "group", "kind", "values", "phrases", "fields")
_RESERVED = ("=", ",", ";", "|")
"""Characters of attribute queries (``name=value, ...``) and table cells (``red|white``)."""


def _names(raw: Any, where: str, what: str) -> tuple[str, ...]:
    """A list of non-empty strings (numbers are taken as text); YAML booleans are an error."""
    if not isinstance(raw, list):
        raise CerberusError(f"{where}: {what} must be a list, got {raw!r}")
    out = []
    for item in raw:
        if isinstance(item, bool):
            raise CerberusError(
                f"{where}: {what} holds the boolean {item!r}: YAML reads unquoted yes / no / "
                'true / false / on / off as booleans; quote the value ("yes")'
            )
        if not isinstance(item, str | int | float) or not str(item).strip():
            raise CerberusError(f"{where}: {what} holds {item!r}, not a name")
        out.append(str(item).strip())
    return tuple(out)


def _attribute_from_dict(raw: Any, where: str) -> Attribute:
    if not isinstance(raw, dict):
        raise CerberusError(f"{where}: an attribute must be a mapping with name, group, values")
    unknown = sorted(set(raw) - set(_ATTRIBUTE_KEYS))
    if unknown:
        raise CerberusError(
            f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(_ATTRIBUTE_KEYS)}"
        )
    for key in ("name", "group", "values"):
        if key not in raw:
            raise CerberusError(f"{where}: missing key {key!r}")
    name = str(raw["name"]).strip()
    if not name or any(c in name for c in _RESERVED) or name.lower() == "person_id":
        raise CerberusError(
            f"{where}: attribute name {raw['name']!r} is not allowed (no {' '.join(_RESERVED)}; "
            "not person_id)"
        )
    where = f"{where} ({name})"
    group = str(raw["group"]).strip().upper()
    if group not in GROUPS:
        raise CerberusError(
            f"{where}: group {raw['group']!r} is not one of {', '.join(GROUPS)} "
            "(head, upper body, lower body, identity, carrying)"
        )
    kind = str(raw.get("kind", "")).strip().lower().replace("colour", "color")
    if kind not in ATTRIBUTE_KINDS:
        raise CerberusError(
            f"{where}: kind {raw.get('kind')!r} is not one of {', '.join(ATTRIBUTE_KINDS)}"
        )
    values = _names(raw["values"], where, "values")
    for v in values:
        if any(c in v for c in _RESERVED):
            raise CerberusError(f"{where}: value {v!r} holds one of {' '.join(_RESERVED)}")
    phrases = _names(raw["phrases"], where, "phrases") if "phrases" in raw else ()
    fields = _names(raw["fields"], where, "fields") if "fields" in raw else ()
    if kind != "color" and len(fields) > 1:
        raise CerberusError(f"{where}: only a color attribute reads several .mat fields")
    try:
        return Attribute(name, group, values, fields, phrases, kind)
    except CerberusError as exc:
        raise CerberusError(f"{where}: {exc}") from None


def schema_from_dict(raw: Any, where: str = "schema") -> Schema:
    """A :class:`Schema` from schema-file data, checked; errors name ``where`` and the entry.

    The data: ``name``, optional ``mat_key`` (top-level key of a Lin ``.mat`` file) and
    ``attributes``, a list of ``{name, group, kind, values, phrases?, fields?}``.
    """
    if not isinstance(raw, dict):
        raise CerberusError(f"{where}: a schema must be a mapping with name and attributes")
    unknown = sorted(set(raw) - {"name", "mat_key", "attributes"})
    if unknown:
        raise CerberusError(
            f"{where}: unknown key {unknown[0]!r}; valid: name, mat_key, attributes"
        )
    name = str(raw.get("name") or "").strip()
    if not name:
        raise CerberusError(f"{where}: missing key 'name'")
    attributes = raw.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        raise CerberusError(f"{where}: 'attributes' must be a non-empty list")
    attrs = tuple(
        _attribute_from_dict(a, f"{where}: attributes[{i + 1}]") for i, a in enumerate(attributes)
    )
    try:
        return Schema(name, str(raw.get("mat_key") or ""), attrs)
    except CerberusError as exc:
        raise CerberusError(f"{where}: {exc}") from None


def load_schema_file(path: str | Path) -> Schema:
    """Read and check a schema YAML file."""
    path = Path(path)
    if not path.is_file():
        raise CerberusError(f"{path}: schema file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CerberusError(f"{path}: not UTF-8 text; is it a schema YAML file?") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise CerberusError(f"{path}: not valid YAML{at}") from None
    return schema_from_dict(raw, str(path))


def shipped_schemas() -> tuple[str, ...]:
    """Names of the schema files shipped with the package."""
    return tuple(sorted(p.stem for p in SCHEMA_FILES.glob("*.yaml")))


_SHIPPED: dict[str, Schema] = {}


def get_schema(name: str | Path) -> Schema:
    """A shipped schema by name (``"market1501"``), or a schema YAML file by path."""
    text = str(name)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        return load_schema_file(text)
    if text not in _SHIPPED:
        path = SCHEMA_FILES / f"{text}.yaml"
        if not text or not path.is_file():
            raise CerberusError(
                f"unknown attribute schema {text!r}; valid: {', '.join(shipped_schemas())} "
                "or the path of a schema .yaml file"
            )
        _SHIPPED[text] = load_schema_file(path)
    return _SHIPPED[text]


def schema_from_meta(value: Any, where: str) -> Schema:
    """The schema a checkpoint, features or index file carries: its full content (a dict), or,
    in files written before schemas were data, the name of a shipped schema."""
    if isinstance(value, dict):
        return schema_from_dict(value, f"{where} [schema]")
    if isinstance(value, str) and value and "/" not in value and not value.endswith(".yaml"):
        return get_schema(value)
    raise CerberusError(f"{where}: no attribute schema in its metadata ({value!r})")


MARKET1501 = get_schema("market1501")
"""Market-1501 (Lin et al.): 27 binary-coded fields -> 12 attributes (SPEC section 6)."""

DUKEMTMC = get_schema("dukemtmc")
"""DukeMTMC-reID (Lin et al.): 23 binary-coded fields -> 10 attributes (SPEC section 6)."""

SCHEMAS: dict[str, Schema] = {s.name: s for s in (MARKET1501, DUKEMTMC)}
"""The schemas of the Lin et al. ``.mat`` files (found by their top-level key)."""


def check_alt_values(alt_values: np.ndarray | None, schema: Schema, num: int, where: str):
    """``alt_values`` as an int array of shape ``(num, K, num_attributes)`` (``K = 0`` for None).

    Alternatives are colour values other than ``"none"`` (code ``>= 1`` of a one-hot attribute);
    every other entry is ``-1``.
    """
    if alt_values is None:
        return np.full((num, 0, schema.num_attributes), -1, dtype=np.int64)
    alt = np.asarray(alt_values)
    if alt.ndim == 2:
        alt = alt[:, None, :]
    if alt.ndim != 3 or alt.shape[0] != num or alt.shape[2] != schema.num_attributes:
        raise CerberusError(
            f"{where}: alt_values must have shape ({num}, K, {schema.num_attributes}) "
            f"or ({num}, {schema.num_attributes}), got {alt.shape}"
        )
    if alt.dtype.kind not in "iu":
        raise CerberusError(f"{where}: alt_values must hold integer codes, got dtype {alt.dtype}")
    alt = alt.astype(np.int64, copy=False)
    for j, attr in enumerate(schema.attributes):
        column = alt[:, :, j]
        if attr.is_onehot:
            bad = (column != -1) & ((column < 1) | (column >= attr.num_values))
            allowed = f"-1 or a colour code 1..{attr.num_values - 1}"
        else:
            bad = column != -1
            allowed = "-1 (only colour attributes have alternatives)"
        if bad.any():
            raise CerberusError(
                f"{where}: alt_values for {attr.name} must be {allowed}, got {column[bad][0]}"
            )
    return alt


@dataclass(frozen=True)
class AttributeTable:
    """Identity-level attributes of one split.

    Attributes:
        schema: the schema the values follow.
        ids: identity numbers, shape ``(N,)``.
        values: value codes, shape ``(N, schema.num_attributes)``; ``-1`` = not annotated.
        alt_values: alternative colour codes, shape ``(N, K, schema.num_attributes)``: the
            further colour fields set for an identity annotated with several colours, ``-1``
            where there is none (and in every non-colour column). ``None`` (the default) is
            stored as ``K = 0``. See :meth:`Schema.alternative_sids`.
    """

    schema: Schema
    ids: np.ndarray
    values: np.ndarray
    alt_values: np.ndarray | None = None

    def __post_init__(self) -> None:
        alt = check_alt_values(self.alt_values, self.schema, len(self.ids), self.schema.name)
        object.__setattr__(self, "alt_values", alt)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def alt_sids(self) -> np.ndarray:
        """SIDs of the alternatives, shape ``(N, K, 5)``, ``-1`` where none."""
        return self.schema.alternative_sids(self.values, self.alt_values)

    @cached_property
    def sids(self) -> np.ndarray:
        """SIDs of every identity, shape ``(N, 5)``; ``-1`` where a group has an unknown value."""
        return self.schema.to_sids(self.values)

    @cached_property
    def _row(self) -> dict[int, int]:
        return {int(i): r for r, i in enumerate(self.ids)}

    def __contains__(self, pid: int) -> bool:
        return int(pid) in self._row

    def lookup(self, pids: Iterable[int]) -> np.ndarray:
        """Value rows for the given identities; identities absent from the table get ``-1``."""
        pids = list(pids)
        out = np.full((len(pids), self.schema.num_attributes), -1, dtype=np.int64)
        for k, pid in enumerate(pids):
            r = self._row.get(int(pid))
            if r is not None:
                out[k] = self.values[r]
        return out

    def lookup_alternatives(self, pids: Iterable[int]) -> np.ndarray:
        """Alternative rows ``(len(pids), K, num_attributes)``; ``-1`` for absent identities."""
        pids = list(pids)
        out = np.full((len(pids), *self.alt_values.shape[1:]), -1, dtype=np.int64)
        for k, pid in enumerate(pids):
            r = self._row.get(int(pid))
            if r is not None:
                out[k] = self.alt_values[r]
        return out


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
            values[:, j] = np.where(unlabelled, -1, np.where(hot.any(1), hot.argmax(1) + 1, 0))
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
                codes = [np.nonzero(row)[0][1:] + 1 for row in hot]
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
                for i, f in enumerate(attr.fields):
                    hot = (v == i + 1) | (alt == i + 1).any(1)
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


def sid_identity_counts(table: AttributeTable) -> dict[str, np.ndarray]:
    """N_g^G: number of identities with SID g in group G; ``{group: (num_sids,) int}``.

    Identities whose SID of G is unknown (``-1``) are not counted in G.
    """
    sids = table.sids
    return {
        g: np.bincount(sids[sids[:, k] >= 0, k], minlength=table.schema.codecs[g].num_sids)
        for k, g in enumerate(GROUPS)
    }


def adaptive_margins(
    counts: Mapping[str, np.ndarray], num_identities: int, *, alpha: float = 0.4, beta: float = 1.8
) -> dict[str, np.ndarray]:
    """Adaptive margin of every SID, SPEC section 3: ``m_g = log(alpha * N_g / N + beta)``.

    Rare SIDs (small N_g) get a smaller margin. With the defaults ``alpha = 0.4, beta = 1.8``
    the margin lies in ``[log 1.8, log 2.2] = [0.588, 0.788]``.
    """
    if num_identities <= 0:
        raise CerberusError(
            f"adaptive margins: number of identities must be > 0, got {num_identities}"
        )
    return {
        g: np.log(alpha * np.asarray(c, dtype=np.float64) / num_identities + beta).astype(
            np.float32
        )
        for g, c in counts.items()
    }


def occurring_sid_counts(table: AttributeTable) -> dict[str, int]:
    """Distinct known SIDs occurring in a table, per group (SPEC 1 check: 66 / 61 on Market)."""
    sids = table.sids
    return {g: int(len(np.unique(sids[sids[:, k] >= 0, k]))) for k, g in enumerate(GROUPS)}


def total_sid_space(schema: Schema) -> int:
    return int(sum(math.prod(int(r) for r in c.radices) for c in schema.codecs.values()))
