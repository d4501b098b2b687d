"""Attribute schemas, SID codec, the real Lin et al. files and the adaptive margins (method §1,
§3)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import yaml

from cerberus.attributes.mat import load_attribute_mat, save_attribute_mat
from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import (
    DUKEMTMC,
    MARKET1501,
    SCHEMA_FILES,
    SCHEMAS,
    get_schema,
    load_schema_file,
    schema_from_dict,
    schema_from_meta,
    shipped_schemas,
)
from cerberus.attributes.sids import adaptive_margins, occurring_sid_counts, sid_identity_counts
from cerberus.attributes.table import AttributeTable
from cerberus.errors import CerberusError
from tests.conftest import SHARED_ATTRIBUTES, random_values

needs_real = pytest.mark.skipif(
    not (SHARED_ATTRIBUTES / "market_attribute.mat").is_file(),
    reason="real attribute files not beside the checkout",
)


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


def test_mat_round_trip(schema, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    tables = {
        s: AttributeTable(
            schema, np.arange(1, 9) * (2 if s == "train" else 3), random_values(schema, 8, rng)
        )
        for s in ("train", "test")
    }
    save_attribute_mat(tmp_path / "a.mat", tables)
    back = load_attribute_mat(tmp_path / "a.mat")
    for s in tables:
        assert back[s].schema is schema
        assert np.array_equal(back[s].ids, tables[s].ids)
        assert np.array_equal(back[s].values, tables[s].values)
    # Same tables, same bytes, whatever the clock (scipy puts the time in the header).
    monkeypatch.setattr("time.asctime", lambda *_: "Thu Jan  1 00:00:00 1970")
    save_attribute_mat(tmp_path / "b.mat", tables)
    assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()


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


@needs_real
def test_real_duke_two_colour_identities_keep_their_alternatives():
    tables = load_attribute_mat(SHARED_ATTRIBUTES / "duke_attribute.mat")
    assert tables["train"].alt_values.shape[1] == 0
    test = tables["test"]
    lower = DUKEMTMC.index("lower.color")
    has_alt = (test.alt_values >= 0).any(1)
    assert not np.delete(has_alt, lower, axis=1).any()  # only lower-body colours
    assert has_alt[:, lower].sum() == 23
    assert {6505, 5951, 80} <= set(test.ids[has_alt[:, lower]].tolist())
    row = {int(i): r for r, i in enumerate(test.ids)}
    names = DUKEMTMC.attributes[lower].values
    colours = [names[test.values[row[5951], lower]]]
    colours += [names[c] for c in test.alt_values[row[5951], :, lower] if c >= 0]
    assert colours == ["black", "white", "red"]  # the one identity with three colours
    assert names[test.alt_values[row[6505], 0, lower]] == "green"


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


@needs_real
def test_real_duke_unlabelled_top_is_unknown():
    """Train identities 0370 and 0679 have `top` coded 0: U SID -1, every other group known."""
    train = load_attribute_mat(SHARED_ATTRIBUTES / "duke_attribute.mat")["train"]
    unknown = train.ids[(train.values < 0).any(1)]
    assert unknown.tolist() == [370, 679]
    rows = np.isin(train.ids, unknown)
    u = GROUPS.index("U")
    assert (train.sids[rows, u] == -1).all()
    assert (np.delete(train.sids[rows], u, axis=1) >= 0).all()
    assert (train.sids[~rows] >= 0).all()
    assert sid_identity_counts(train)["U"].sum() == 700  # the two are not counted in U
    assert sid_identity_counts(train)["L"].sum() == 702


def test_adaptive_margin_formula_on_hand_counts():
    counts = {"H": np.array([0, 10, 30, 60])}
    m = adaptive_margins(counts, 100)["H"]
    expected = [math.log(0.4 * c / 100 + 1.8) for c in (0, 10, 30, 60)]
    assert np.allclose(m, expected)
    assert m[0] == pytest.approx(math.log(1.8))
    assert np.all(np.diff(m) > 0)  # rarer SIDs get smaller margins
    m2 = adaptive_margins(counts, 100, alpha=1.0, beta=1.0)["H"]
    assert np.allclose(m2, np.log(np.array([0, 10, 30, 60]) / 100 + 1))


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


def test_counts_leave_unknown_sids_out(schema):
    table = _table_with_unknowns(schema)
    counts = sid_identity_counts(table)
    for k, g in enumerate(GROUPS):
        assert counts[g].sum() == (table.sids[:, k] >= 0).sum()
        assert occurring_sid_counts(table)[g] == len(set(table.sids[:, k].tolist()) - {-1})
    margins = adaptive_margins(counts, len(table))
    assert all(np.isfinite(m).all() for m in margins.values())


def test_unknown_values_round_trip_through_mat(schema, tmp_path):
    """Coded 0 in the file (a binary field, or the one-hot fields of a colour) = unknown."""
    table = _table_with_unknowns(schema)
    save_attribute_mat(tmp_path / "a.mat", {"train": table, "test": table})
    back = load_attribute_mat(tmp_path / "a.mat")["train"]
    assert np.array_equal(back.values, table.values)
    assert np.array_equal(back.sids, table.sids)


def test_values_below_unknown_code_are_rejected():
    values = random_values(MARKET1501, 2, np.random.default_rng(0))
    values[0, 0] = -2
    with pytest.raises(CerberusError, match="below -1"):
        MARKET1501.to_sids(values)


def test_identity_counts_sum_to_identities(schema):
    values = random_values(schema, 40, np.random.default_rng(2))
    table = AttributeTable(schema, np.arange(40), values)
    counts = sid_identity_counts(table)
    for g in GROUPS:
        assert counts[g].sum() == 40 and len(counts[g]) == schema.codecs[g].num_sids


def test_malformed_mat_errors_name_the_file(tmp_path):
    import scipy.io

    path = tmp_path / "bad.mat"
    scipy.io.savemat(path, {"something": np.zeros(3)})
    with pytest.raises(CerberusError, match=r"bad.mat: no known attribute table"):
        load_attribute_mat(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CerberusError, match=r"bad.mat: not a readable .mat file"):
        load_attribute_mat(path)
    with pytest.raises(CerberusError, match="not found"):
        load_attribute_mat(tmp_path / "missing.mat")


# ----------------------------------------------------------------------------- schema files


def _schema_digest(schema) -> str:
    """Binary vectors, attributes, values, .mat fields, phrases and kinds of a schema."""
    h = hashlib.sha256()
    for g in GROUPS:
        h.update(schema.codecs[g].binary_vectors().tobytes())
    rows = [
        (a.name, a.group, a.values, a.fields, a.phrases, a.is_onehot) for a in schema.attributes
    ]
    h.update(repr(rows).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize(
    "name, digest", [("market1501", "1844cd11bec9ae88"), ("dukemtmc", "7ac025aba15cd24e")]
)
def test_shipped_schema_files_equal_the_former_python_tables(name, digest):
    # Digests of the schemas when they were Python code (commit a76c177).
    schema = load_schema_file(SCHEMA_FILES / f"{name}.yaml")
    assert _schema_digest(schema) == digest
    assert get_schema(name) == schema and SCHEMAS[name] == schema
    assert schema_from_dict(schema.to_dict()) == schema  # what checkpoints carry


def test_shipped_schemas_load_and_the_example_differs_per_group():
    assert {"market1501", "dukemtmc", "retail_example"} <= set(shipped_schemas())
    example = get_schema("retail_example")
    assert example.num_sids == {"H": 4, "U": 20, "L": 9, "I": 2, "C": 4}
    assert [a.name for a in example.attributes if a.group == "L"] == ["lower.type", "lower.color"]
    values = np.array([[1, 3, 2, 2, 0, 1, 3]])
    sids = example.to_sids(values)
    assert np.array_equal(example.from_sids(sids), values)
    query = example.parse_query("headwear=cap, upper.color=blue, upper.type=jacket")
    assert set(example.query_sids(query)) == {"H", "U"}


@pytest.mark.parametrize("group", GROUPS)
def test_codec_round_trips_on_the_example_schema(group):
    codec = get_schema("retail_example").codecs[group]
    sids = np.arange(codec.num_sids)
    assert np.array_equal(codec.encode(codec.decode(sids)), sids)


def test_schema_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(get_schema("retail_example").to_dict()))
    assert get_schema(path).to_dict() == get_schema("retail_example").to_dict()
    with pytest.raises(CerberusError, match="unknown attribute schema 'nope'; valid: dukemtmc"):
        get_schema("nope")


def _example() -> dict:
    return get_schema("retail_example").to_dict()


def _set(raw: dict, index: int, **changes) -> dict:
    raw["attributes"][index].update(changes)
    return raw


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: _set(r, 0, group="X"), r"attributes\[1\] \(headwear\): group 'X' is not one of"),
        (lambda r: _set(r, 0, kind="tri"), r"\(headwear\): kind 'tri' is not one of binary"),
        (lambda r: _set(r, 5, values=[False, True]), "holds the boolean False: YAML reads"),
        (lambda r: _set(r, 5, values=["no", "yes", "maybe"]), "a binary attribute has two"),
        (lambda r: _set(r, 0, values=["cap", "Cap"]), "values must be distinct"),
        (lambda r: _set(r, 1, phrases=["a"]), "one phrase per value"),
        (lambda r: _set(r, 0, colour=1), r"attributes\[1\]: unknown key 'colour'"),
        (lambda r: _set(r, 2, kind="color", none="shirt"), "group U has several color attributes"),
        (lambda r: _set(r, 3, name="upper.color"), "attribute 'upper.color' is declared twice"),
        (lambda r: _set(r, 5, group="C"), r"group I \(identity\) has no attribute"),
        (lambda r: {k: v for k, v in r.items() if k != "name"}, "missing key 'name'"),
        (lambda r: {**r, "attributes": []}, "'attributes' must be a non-empty list"),
        (lambda r: {**r, "extra": 1}, "unknown key 'extra'"),
        (lambda r: _set(r, 0, name="person_id"), "attribute name 'person_id' is not allowed"),
        (lambda r: _set(r, 0, name="a=b"), "attribute name 'a=b' is not allowed"),
        (lambda r: _set(r, 1, values=["none", "red|blue"]), "value 'red|blue' holds one of"),
        (
            lambda r: _set(r, 0, values=[f"v{i}" for i in range(100_001)]),
            "group H has 100001 value combinations",
        ),
    ],
)
def test_bad_schema_files_say_where_and_what(tmp_path, change, match):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(change(_example())))
    with pytest.raises(CerberusError, match=match) as info:
        load_schema_file(path)
    assert str(path) in str(info.value)


def test_unquoted_yes_no_in_a_schema_file_is_explained(tmp_path):
    path = tmp_path / "s.yaml"
    text = (SCHEMA_FILES / "retail_example.yaml").read_text().replace('["no", "yes"]', "[no, yes]")
    path.write_text(text)
    with pytest.raises(CerberusError, match=r"\(adult\): values holds the boolean False"):
        load_schema_file(path)
    path.write_text("name: [unclosed")
    with pytest.raises(CerberusError, match="not valid YAML at line 1"):
        load_schema_file(path)


def test_mat_io_needs_a_schema_with_mat_fields(tmp_path):
    values = random_values(MARKET1501, 3, np.random.default_rng(0))
    table = AttributeTable(MARKET1501, np.array([1, 2, 3]), values)
    save_attribute_mat(tmp_path / "a.mat", {"train": table, "test": table})
    with pytest.raises(CerberusError, match="retail_example schema names no Lin .mat layout"):
        load_attribute_mat(tmp_path / "a.mat", get_schema("retail_example"))


def test_schema_from_meta_reads_names_and_dicts():
    assert schema_from_meta("market1501", "ckpt") is MARKET1501
    assert schema_from_meta(DUKEMTMC.to_dict(), "ckpt") == DUKEMTMC
    with pytest.raises(CerberusError, match="ckpt: no attribute schema in its metadata"):
        schema_from_meta(None, "ckpt")
    with pytest.raises(CerberusError, match=r"ckpt \[schema\]: missing key 'name'"):
        schema_from_meta({"attributes": []}, "ckpt")


def _sid_digest(table) -> str:
    arrays = (table.ids, table.sids, table.alt_sids)
    data = b"".join(np.ascontiguousarray(a, np.int64).tobytes() for a in arrays)
    return hashlib.sha256(data).hexdigest()[:16]


@needs_real
@pytest.mark.parametrize(
    "name, file, digests, totals",
    [
        (
            "market1501",
            "market_attribute.mat",
            ("4aecb6250b7864ef", "89a79dc0f600fd54"),
            (66, 61),
        ),
        ("dukemtmc", "duke_attribute.mat", ("63678ce0b9b2643d", "a92b5a605eaee4be"), (46, 51)),
    ],
)
def test_schema_files_reproduce_the_sid_tables_of_the_real_files(name, file, digests, totals):
    # Digests of (ids, SIDs, alternative SIDs) per split as read before schemas were files.
    schema = load_schema_file(SCHEMA_FILES / f"{name}.yaml")
    tables = load_attribute_mat(SHARED_ATTRIBUTES / file, schema)
    for split, digest, total in zip(("train", "test"), digests, totals):
        assert _sid_digest(tables[split]) == digest
        assert sum(occurring_sid_counts(tables[split]).values()) == total


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
    "change, match",
    [
        (lambda a: a.pop("none"), r"\(upper.color\): .*names its value meaning no colour"),
        (lambda a: a.update(none="teal"), r"none value 'teal' is not one of its values"),
        (lambda a: a.update(kind="multi"), r"only a color attribute has a none value"),
    ],
)
def test_colour_none_value_is_declared_in_schema_files(tmp_path, change, match):
    raw = _example()
    change(raw["attributes"][1])  # upper.color
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(CerberusError, match=match) as info:
        load_schema_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: attributes[2] (upper.color)") and "\n" not in message


def test_files_written_before_none_was_declared_still_load():
    """Checkpoints and indexes carry the schema; older ones have no ``none``: the first value."""
    old = MARKET1501.to_dict()
    for attr in old["attributes"]:
        attr.pop("none", None)
    assert schema_from_meta(old, "old.pt") == MARKET1501
    with pytest.raises(CerberusError, match="names its value meaning no colour"):
        schema_from_dict(old, "schema.yaml")
