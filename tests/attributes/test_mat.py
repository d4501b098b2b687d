"""Lin et al. .mat attribute files (method §1): round trips, unknown codes, the real files and
bad files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cerberus.attributes.mat import load_attribute_mat, save_attribute_mat
from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import (
    DUKEMTMC,
    MARKET1501,
    get_schema,
)
from cerberus.attributes.sids import sid_identity_counts
from cerberus.attributes.table import AttributeTable
from cerberus.errors import CerberusError
from tests.attributes.test_table import _table_with_unknowns
from tests.conftest import SHARED_ATTRIBUTES, needs_real, random_values


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


def test_unknown_values_round_trip_through_mat(schema, tmp_path):
    """Coded 0 in the file (a binary field, or the one-hot fields of a colour) = unknown."""
    table = _table_with_unknowns(schema)
    save_attribute_mat(tmp_path / "a.mat", {"train": table, "test": table})
    back = load_attribute_mat(tmp_path / "a.mat")["train"]
    assert np.array_equal(back.values, table.values)
    assert np.array_equal(back.sids, table.sids)


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


def test_mat_io_needs_a_schema_with_mat_fields(tmp_path):
    values = random_values(MARKET1501, 3, np.random.default_rng(0))
    table = AttributeTable(MARKET1501, np.array([1, 2, 3]), values)
    save_attribute_mat(tmp_path / "a.mat", {"train": table, "test": table})
    with pytest.raises(CerberusError, match="retail_example schema names no Lin .mat layout"):
        load_attribute_mat(tmp_path / "a.mat", get_schema("retail_example"))


def _valid_split(n: int, rng: np.random.Generator) -> dict:
    fields = {}
    for attr in MARKET1501.attributes:
        if attr.is_onehot:
            hot = rng.integers(0, attr.num_values, n)
            for i, f in enumerate(attr.fields):
                fields[f] = np.where(hot == i + 1, 2, 1).astype(np.uint8)[None]
        else:
            fields[attr.fields[0]] = rng.integers(1, attr.num_values + 1, n).astype(np.uint8)[None]
    ids = np.empty((1, n), dtype=object)
    for k in range(n):
        ids[0, k] = np.array([f"{k + 1:04d}"])
    fields["image_index"] = ids
    return fields


corruptions = st.sampled_from(
    ["drop_field", "short_field", "bad_code", "bad_id", "drop_split", "wrong_key", "none"]
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    corruptions, st.integers(1, 6), st.integers(0, 2**16), st.sampled_from(MARKET1501.attributes)
)
def test_malformed_mat_parses_or_raises_our_error(tmp_path, corruption, n, seed, attr):
    rng = np.random.default_rng(seed)
    splits = {"train": _valid_split(n, rng), "test": _valid_split(n, rng)}
    field = attr.fields[int(rng.integers(len(attr.fields)))]
    key = "market_attribute"
    if corruption == "drop_field":
        del splits["train"][field]
    elif corruption == "short_field":
        splits["test"][field] = splits["test"][field][:, :-1] if n > 1 else np.zeros((1, 3))
    elif corruption == "bad_code":
        splits["train"][field] = np.full((1, n), 7, dtype=np.uint8)
    elif corruption == "bad_id":
        splits["train"]["image_index"][0, 0] = np.array(["abc"])
    elif corruption == "drop_split":
        del splits["test"]
    elif corruption == "wrong_key":
        key = "other_attribute"
    path = tmp_path / f"a{seed}.mat"
    scipy.io.savemat(path, {key: splits})
    try:
        tables = load_attribute_mat(path)
    except CerberusError as exc:
        assert str(path) in str(exc)
        assert corruption != "none"
    else:
        assert corruption == "none"
        assert tables["train"].values.shape == (n, MARKET1501.num_attributes)
