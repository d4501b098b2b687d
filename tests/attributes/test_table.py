"""Attribute tables (method §1): alternative colours, unknown values and the SIDs they give."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.attributes.mat import load_attribute_mat, save_attribute_mat
from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import (
    DUKEMTMC,
)
from cerberus.attributes.table import AttributeTable
from cerberus.errors import CerberusError
from tests.conftest import random_values


def test_alternative_colours_round_trip_and_alternative_sids(tmp_path):
    lower = DUKEMTMC.index("lower.color")
    values = np.zeros((3, DUKEMTMC.num_attributes), dtype=np.int64)
    values[:, lower] = [1, 2, 1]  # black, white, black
    alt = np.full((3, 2, DUKEMTMC.num_attributes), -1)
    alt[0, 0, lower] = 2  # identity 1: black or white
    alt[2, :, lower] = [2, 3]  # identity 3: black, white or red
    table = AttributeTable(DUKEMTMC, np.array([1, 2, 3]), values, alt)
    save_attribute_mat(tmp_path / "a.mat", {"train": table, "test": table})
    back = load_attribute_mat(tmp_path / "a.mat")["test"]
    assert np.array_equal(back.values, values) and np.array_equal(back.alt_values, alt)
    # Alternative SIDs: only group L changes; slot 1 of identity 1 and both of identity 2: none.
    codec = DUKEMTMC.codecs["L"]
    sids = back.alt_sids
    assert sids.shape == (3, 2, 5)
    assert (sids[:, :, [0, 1, 3, 4]] == -1).all()
    assert sids[0, 0, 2] == codec.encode(np.array([2, 0, 0])) and sids[0, 1, 2] == -1
    assert (sids[1, :, 2] == -1).all()
    assert list(sids[2, :, 2]) == [codec.encode(np.array([c, 0, 0])) for c in (2, 3)]
    # No alternative at all: K = 0; lookup of an absent identity: -1.
    plain = AttributeTable(DUKEMTMC, np.array([1]), values[:1])
    assert plain.alt_values.shape == (1, 0, DUKEMTMC.num_attributes)
    assert (back.lookup_alternatives([3, 99])[1] == -1).all()


@pytest.mark.parametrize(
    ("column", "code", "match"),
    [
        ("lower.color", 0, "lower.color must be -1 or a colour code 1..7, got 0"),
        ("lower.color", 8, "got 8"),
        ("gender", 1, "gender must be -1 .only colour attributes"),
    ],
)
def test_bad_alternatives_are_rejected(column, code, match):
    alt = np.full((2, 1, DUKEMTMC.num_attributes), -1)
    alt[0, 0, DUKEMTMC.index(column)] = code
    with pytest.raises(CerberusError, match=match):
        AttributeTable(DUKEMTMC, np.array([1, 2]), np.zeros((2, 10), dtype=int), alt)
    with pytest.raises(CerberusError, match=r"alt_values must have shape \(2, K, 10\)"):
        AttributeTable(DUKEMTMC, np.array([1, 2]), np.zeros((2, 10), dtype=int), alt[:1])


def _table_with_unknowns(schema):
    values = random_values(schema, 6, np.random.default_rng(5))
    values[1, schema.index("upper.color")] = -1  # a colour not annotated
    values[2, schema.index("gender")] = -1
    values[3, :] = -1  # nothing known
    return AttributeTable(schema, np.arange(10, 16), values)


def test_unknown_value_makes_only_its_group_sid_unknown(schema):
    table = _table_with_unknowns(schema)
    sids = table.sids
    u, i = GROUPS.index("U"), GROUPS.index("I")
    assert sids[1, u] == -1 and (np.delete(sids[1], u) >= 0).all()
    assert sids[2, i] == -1 and (np.delete(sids[2], i) >= 0).all()
    assert (sids[3] == -1).all()
    assert (sids[[0, 4, 5]] >= 0).all()
    back = schema.from_sids(sids)  # an unknown SID decodes to unknown values of its group
    assert (back[1, schema.group_columns("U")] == -1).all()
    assert np.array_equal(back[0], table.values[0])
    assert schema.describe(table.values[2])["gender"] == "unknown"
