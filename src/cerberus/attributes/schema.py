"""Attribute schemas, the five groups and semantic IDs (SIDs), method §1.

A *schema* is a declarative table of attributes. Each attribute has a name used in queries
(``"upper.color"``), human-readable values (``"red"``), the group it belongs to (H, U, L, I, C)
and the fields of the Lin et al. ``.mat`` file it is read from.

Value coding: every attribute value is an integer index into ``Attribute.values``. Binary
Lin fields (1 = first label, 2 = second label) map to 0 / 1, ``age`` (1..4) to 0..3. A colour
attribute names the value meaning "no colour" (``none``; first in the shipped schemas, but any
position); its one-hot fields (``upblack``, ``upwhite``, ...) belong to the other values in order,
and no field set reads as the none value. When several colour fields are set (22
DukeMTMC-reID test identities have two lower-body colours, one has three), the first in field order
is the value and the others are kept as *alternatives* (:attr:`AttributeTable.alt_values`), which
PAR and APS accept as equally correct (method §6).

A SID of group G is one combination of the values of all attributes of G. The SID space is the
*full* product of the value counts, so a combination never seen in training still has an index
(and a prototype). The SID index is a mixed-radix number over the group's attributes, first
attribute most significant.

Unknown labels: a value code ``-1`` means "not annotated" (DukeMTMC-reID has two training
identities with ``top`` coded 0). A group with an unknown value has the unknown SID ``-1``;
the semantic guidance loss leaves it out, and SID counts do not count it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from cerberus.errors import CerberusError, shown

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
colours, one declared value (``none``) meaning "none of them" (several colours may be annotated:
alternatives)."""


@dataclass(frozen=True)
class Attribute:
    """One (possibly multi-valued) attribute.

    Attributes:
        name: query name, e.g. ``"gender"`` or ``"upper.color"``.
        group: one of :data:`GROUPS`.
        values: human names of the values, index = value code.
        fields: Lin ``.mat`` fields (empty for a schema read only from tables). One field: its
            code ``k`` (1-based) is value ``k - 1``. A colour's one-hot fields: field ``i`` is
            colour ``colour_codes[i]``; none set is the none value.
        phrases: optional phrase per value for descriptions ("red top"); defaults to the value.
        kind: one of :data:`ATTRIBUTE_KINDS`; empty: ``color`` for several fields, else
            ``binary`` for two values, else ``multi``.
        none: a colour attribute's value meaning "no colour" (required; one of ``values``);
            empty for the other kinds.
    """

    name: str
    group: str
    values: tuple[str, ...]
    fields: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    kind: str = ""
    none: str = ""

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
        if self.is_onehot and not self.none:
            raise CerberusError(
                f"attribute {self.name!r}: a color attribute names its value meaning no colour "
                f"(none: ...); values: {', '.join(self.values)}"
            )
        if self.none and not self.is_onehot:
            raise CerberusError(
                f"attribute {self.name!r}: only a color attribute has a none value "
                f"(got none: {self.none!r} for kind {self.kind})"
            )
        if self.none:
            folded = {v.strip().lower(): v for v in self.values}
            if self.none.strip().lower() not in folded:
                raise CerberusError(
                    f"attribute {self.name!r}: none value {self.none!r} is not one of its "
                    f"values ({', '.join(self.values)})"
                )
            object.__setattr__(self, "none", folded[self.none.strip().lower()])
        if self.is_onehot and self.fields and len(self.values) != len(self.fields) + 1:
            raise CerberusError(
                f"attribute {self.name!r}: {len(self.fields)} one-hot fields need "
                f"{len(self.fields) + 1} values (theirs and {self.none!r}), got {len(self.values)}"
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
        """A colour attribute: one value is "none", several colours may be annotated."""
        return self.kind == "color"

    @property
    def none_code(self) -> int:
        """Code of a colour attribute's none value; ``-1`` for the other kinds."""
        return self.values.index(self.none) if self.none else -1

    @property
    def colour_codes(self) -> tuple[int, ...]:
        """A colour attribute's codes other than none, in value (= one-hot field) order."""
        return tuple(k for k in range(len(self.values)) if k != self.none_code)

    @property
    def reference_code(self) -> int:
        """The value no binary dimension stands for: none for a colour, else the first."""
        return max(self.none_code, 0)

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
        }
        if self.none:
            out["none"] = self.none
        out["values"] = list(self.values)
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
        than its reference value (:attr:`Attribute.reference_code`: the first, "no", "male",
        "young", or a colour's none value), in value order. For the Lin
        annotations these are exactly the binary fields (``upred``, ``backpack``, ...), plus three
        for age. Used by the prototype regularisation, method §3.3.
        """
        values = self.decode(np.arange(self.num_sids))
        out = np.zeros((self.num_sids, self.num_binary_dims), dtype=np.float32)
        offset = 0
        for j, attr in enumerate(self.attributes):
            v, ref = values[:, j], attr.reference_code
            rows = np.nonzero(v != ref)[0]
            out[rows, offset + v[rows] - (v[rows] > ref)] = 1.0
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
