"""SID statistics of a split: identities per SID, adaptive margins (method §1, §3)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from cerberus.attributes.schema import GROUPS, Schema
from cerberus.attributes.table import AttributeTable
from cerberus.errors import CerberusError


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
    """Adaptive margin of every SID, method §3.1: ``m_g = log(alpha * N_g / N + beta)``.

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
    """Distinct known SIDs occurring in a table, per group (method §1.3 check: 66 / 61 on
    Market)."""
    sids = table.sids
    return {g: int(len(np.unique(sids[sids[:, k] >= 0, k]))) for k, g in enumerate(GROUPS)}


def total_sid_space(schema: Schema) -> int:
    return int(sum(math.prod(int(r) for r in c.radices) for c in schema.codecs.values()))
