"""Attribute schemas and the SID codec (method §1): every SID round-trips, dummy coding, queries
(case-insensitive, an attribute given once), the colour none value wherever it stands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from cerberus.attributes.mat import load_attribute_mat, save_attribute_mat
from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import (
    DUKEMTMC,
    MARKET1501,
    load_schema_file,
)
from cerberus.attributes.table import AttributeTable
from cerberus.errors import CerberusError
from tests.conftest import assert_one_line, random_values


@pytest.mark.parametrize("group", GROUPS)
def test_codec_round_trips_every_sid(schema, group):
    codec = schema.codecs[group]
    sids = np.arange(codec.num_sids)
    values = codec.decode(sids)
    assert np.array_equal(codec.encode(values), sids)
    # Every combination of values appears exactly once: the full product space.
    assert len({tuple(v) for v in values}) == codec.num_sids == int(np.prod(codec.radices))


def test_sid_space_sizes():
    # Market: H hat x hair, U 9 colours x sleeve, L 10 colours x length x clothes, I 2x4, C 2^3.
    assert MARKET1501.num_sids == {"H": 4, "U": 18, "L": 40, "I": 8, "C": 8}
    assert DUKEMTMC.num_sids == {"H": 2, "U": 18, "L": 32, "I": 2, "C": 8}
    assert MARKET1501.num_attributes == 12 and DUKEMTMC.num_attributes == 10


def test_full_rows_round_trip(schema):
    values = random_values(schema, 50, np.random.default_rng(0))
    assert np.array_equal(schema.from_sids(schema.to_sids(values)), values)


def test_binary_vectors_are_dummy_coding(schema):
    for g in GROUPS:
        codec = schema.codecs[g]
        a = codec.binary_vectors()
        assert a.shape == (codec.num_sids, sum(x.num_values - 1 for x in codec.attributes))
        values = codec.decode(np.arange(codec.num_sids))
        # Number of ones = number of attributes not at their reference (first) value.
        assert np.array_equal(a.sum(1), (values > 0).sum(1))
        assert len({tuple(r) for r in a}) == codec.num_sids  # distinct SIDs, distinct vectors
    u = MARKET1501.codecs["U"]
    sid = int(u.encode(np.array([MARKET1501.attributes[2].value_index("red"), 1])))
    assert u.describe(sid) == {"upper.color": "red", "upper.sleeve": "short"}


def test_query_parsing_and_partial_groups():
    q = MARKET1501.parse_query("gender=female, age=adult, backpack=yes, bag=no, handbag=no")
    sids = MARKET1501.query_sids(q)
    assert set(sids) == {"I", "C"}
    assert MARKET1501.codecs["I"].describe(sids["I"]) == {"gender": "female", "age": "adult"}
    with pytest.raises(CerberusError, match="valid: .*upper.color"):
        MARKET1501.parse_query("colour=red")
    with pytest.raises(CerberusError, match="no value 'teal'.*valid: none, black"):
        MARKET1501.parse_query("upper.color=teal")
    with pytest.raises(CerberusError, match="partly given; also give: age"):
        MARKET1501.query_sids(MARKET1501.parse_query("gender=male"))


def test_values_below_unknown_code_are_rejected():
    values = random_values(MARKET1501, 2, np.random.default_rng(0))
    values[0, 0] = -2
    with pytest.raises(CerberusError, match="below -1"):
        MARKET1501.to_sids(values)


# ----------------------------------------------------------------------------- schema files


def _none_in_the_middle() -> dict:
    """Market-1501 with ``none`` third among the upper-body colours (same .mat fields)."""
    raw = MARKET1501.to_dict()
    upper = next(a for a in raw["attributes"] if a["name"] == "upper.color")
    colours = [v for v in upper["values"] if v != "none"]
    upper["values"] = colours[:2] + ["none"] + colours[2:]
    return raw


def test_a_colour_none_value_anywhere_in_the_values(tmp_path):
    """``none`` names the no-colour value: every user follows it, not the first position."""
    from cerberus.data.table import _parse_value
    from cerberus.evaluation.metrics.par import binary_labels, par_official_accuracy
    from cerberus.inference.scoring import _phrase

    path = tmp_path / "middle.yaml"
    path.write_text(yaml.safe_dump(_none_in_the_middle(), sort_keys=False))
    middle = load_schema_file(path)
    j = middle.index("upper.color")
    upper = middle.attributes[j]
    assert (upper.none, upper.none_code) == ("none", 2)
    assert upper.colour_codes == (0, 1, 3, 4, 5, 6, 7, 8)

    # The same Lin file reads as the same value names under both schemas.
    values = random_values(MARKET1501, 40, np.random.default_rng(3))
    values[:5, j] = 0  # no upper-body colour set
    table = AttributeTable(MARKET1501, np.arange(1, 41), values)
    save_attribute_mat(tmp_path / "a.mat", {"train": table, "test": table})
    read = load_attribute_mat(tmp_path / "a.mat", middle)["train"]
    named = [[middle.describe(r)[a.name] for a in middle.attributes] for r in read.values]
    assert named == [
        [MARKET1501.describe(r)[a.name] for a in MARKET1501.attributes] for r in values
    ]
    save_attribute_mat(tmp_path / "b.mat", {"train": read, "test": read})
    again = load_attribute_mat(tmp_path / "b.mat", middle)["train"]
    assert np.array_equal(again.values, read.values)

    # Dummy coding: none is the reference (all colour dimensions 0), each colour one dimension.
    codec = middle.codecs["U"]
    sleeve = middle.attributes[middle.index("upper.sleeve")]
    vectors = codec.binary_vectors()
    combos = codec.decode(np.arange(codec.num_sids))
    colour_dims = vectors[:, : upper.num_values - 1]
    assert not colour_dims[combos[:, 0] == 2].any()
    assert (colour_dims[combos[:, 0] != 2].sum(1) == 1).all()
    assert len({tuple(v) for v in vectors}) == codec.num_sids
    assert codec.num_binary_dims == upper.num_values - 1 + sleeve.num_values - 1

    # PAR: no label for none; a predicted or true none is never credited by the official rule.
    labels = [name for col, _, name in binary_labels(middle) if col == j]
    assert "upper.color=none" not in labels and len(labels) == 8
    true = np.zeros((3, middle.num_attributes), dtype=int)
    true[:, j] = [2, 0, 0]  # none, black, black
    pred = true.copy()
    pred[1, j] = 2  # none for a black top
    acc = par_official_accuracy(pred, true, middle)["official_attribute_accuracy_score"]
    assert acc["upper.color"] == pytest.approx(1 / 3)

    # Tables and alternatives: none is no colour; descriptions say so.
    assert _parse_value(middle, j, "black|red") == (0, [3])
    with pytest.raises(CerberusError, match="lists 'none' with colours"):
        _parse_value(middle, j, "black|none")
    alt = np.full((1, 1, middle.num_attributes), -1)
    alt[0, 0, j] = 2
    with pytest.raises(CerberusError, match=r"colour code 0, 1, 3, 4, 5, 6, 7, 8, got 2"):
        AttributeTable(middle, np.array([1]), true[:1], alt)
    assert _phrase(upper, 2) == "no top colour" and _phrase(upper, 0) == "black top"


@pytest.mark.parametrize(
    "query", ["gender=female, backpack=yes", "Gender=Female, BACKPACK=Yes", "GENDER = female"]
)
def test_attribute_queries_are_case_insensitive(index_file, cli, query):
    code, out, err = cli("search", "--index", index_file, "--attrs", query, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["query"]["attributes"]["gender"] == "gender: female"
    # The same search as the plain lower-case spelling: the same items, order and scores.
    plain = ", ".join(p.replace(" ", "").lower() for p in query.split(","))
    code, base, err = cli("search", "--index", index_file, "--attrs", plain, "--json")
    assert code == 0, err
    assert found["results"] and found["results"] == json.loads(base)["results"]


@pytest.mark.parametrize(
    "query, name",
    [("gender=male, gender=female", "gender"), ("backpack=yes, Backpack=no", "backpack")],
)
def test_a_repeated_attribute_is_refused(index_file, cli, query, name):
    code, _, err = cli("search", "--index", index_file, "--attrs", query)
    assert_one_line(code, err, repr(name), "more than once")
