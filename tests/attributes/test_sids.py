"""SID counts and the adaptive margins (method §1.3, §3): hand counts and the real files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cerberus.attributes.mat import load_attribute_mat
from cerberus.attributes.schema import GROUPS
from cerberus.attributes.sids import adaptive_margins, occurring_sid_counts, sid_identity_counts
from cerberus.attributes.table import AttributeTable
from tests.attributes.test_table import _table_with_unknowns
from tests.conftest import SHARED_ATTRIBUTES, needs_real, random_values


@needs_real
def test_real_market_sid_counts_match_paper():
    tables = load_attribute_mat(SHARED_ATTRIBUTES / "market_attribute.mat")
    assert len(tables["train"]) == 751 and len(tables["test"]) == 750
    train, test = occurring_sid_counts(tables["train"]), occurring_sid_counts(tables["test"])
    assert sum(train.values()) == 66  # method §1.3 / the paper
    assert sum(test.values()) == 61
    assert train == {"H": 4, "U": 16, "L": 34, "I": 8, "C": 4}


@needs_real
def test_real_duke_sid_counts_train_46_test_51():
    tables = load_attribute_mat(SHARED_ATTRIBUTES / "duke_attribute.mat")
    assert len(tables["train"]) == 702 and len(tables["test"]) == 1110
    assert sum(occurring_sid_counts(tables["train"]).values()) == 46
    assert sum(occurring_sid_counts(tables["test"]).values()) == 51


def test_adaptive_margin_formula_on_hand_counts():
    counts = {"H": np.array([0, 10, 30, 60])}
    m = adaptive_margins(counts, 100)["H"]
    expected = [math.log(0.4 * c / 100 + 1.8) for c in (0, 10, 30, 60)]
    assert np.allclose(m, expected)
    assert m[0] == pytest.approx(math.log(1.8))
    assert np.all(np.diff(m) > 0)  # rarer SIDs get smaller margins
    m2 = adaptive_margins(counts, 100, alpha=1.0, beta=1.0)["H"]
    assert np.allclose(m2, np.log(np.array([0, 10, 30, 60]) / 100 + 1))


def test_adaptive_margin_divides_by_all_identities_when_a_group_has_unknowns():
    """N is every training identity, also those whose group is unknown (not counted in any
    N_g): 40 of 100 identities have a known H SID here, so N_g / 40 would be wrong."""
    counts = {"H": np.array([0, 10, 30]), "U": np.array([50, 50])}
    m = adaptive_margins(counts, 100)
    want = [math.log(1.8), math.log(0.4 * 0.1 + 1.8), math.log(0.4 * 0.3 + 1.8)]
    assert np.allclose(m["H"], want)
    assert np.allclose(m["U"], [math.log(0.4 * 0.5 + 1.8)] * 2)


def test_counts_leave_unknown_sids_out(schema):
    table = _table_with_unknowns(schema)
    counts = sid_identity_counts(table)
    for k, g in enumerate(GROUPS):
        assert counts[g].sum() == (table.sids[:, k] >= 0).sum()
        assert occurring_sid_counts(table)[g] == len(set(table.sids[:, k].tolist()) - {-1})
    margins = adaptive_margins(counts, len(table))
    assert all(np.isfinite(m).all() for m in margins.values())


def test_identity_counts_sum_to_identities(schema):
    values = random_values(schema, 40, np.random.default_rng(2))
    table = AttributeTable(schema, np.arange(40), values)
    counts = sid_identity_counts(table)
    for g in GROUPS:
        assert counts[g].sum() == 40 and len(counts[g]) == schema.codecs[g].num_sids
