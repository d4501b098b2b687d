"""Identity-level attribute values of one split: :class:`AttributeTable` (method §1, §6).

Values are codes of the schema (``-1``: not annotated); identities annotated with several
colours keep the further ones as alternatives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cerberus.attributes.schema import Schema
from cerberus.errors import CerberusError


def _code_list(codes: Sequence[int]) -> str:
    """``1..7`` for consecutive codes, else ``0, 2, 3``."""
    consecutive = list(codes) == list(range(codes[0], codes[-1] + 1))
    return f"{codes[0]}..{codes[-1]}" if consecutive else ", ".join(map(str, codes))


def check_alt_values(alt_values: np.ndarray | None, schema: Schema, num: int, where: str):
    """``alt_values`` as an int array of shape ``(num, K, num_attributes)`` (``K = 0`` for None).

    Alternatives are colour values other than none (:attr:`Attribute.colour_codes`); every other
    entry is ``-1``.
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
            bad = (column != -1) & ~np.isin(column, attr.colour_codes)
            allowed = f"-1 or a colour code {_code_list(attr.colour_codes)}"
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
