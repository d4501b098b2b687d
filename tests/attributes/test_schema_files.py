"""Schema files (YAML): the shipped schemas, schemas by path or from metadata, and bad files
that say where and what."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml

from cerberus.attributes.mat import load_attribute_mat
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
from cerberus.attributes.sids import occurring_sid_counts
from cerberus.errors import CerberusError
from tests.conftest import SHARED_ATTRIBUTES, needs_real


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
