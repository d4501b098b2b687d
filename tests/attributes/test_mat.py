"""Lin et al. .mat attribute files (method §1): round trips, unknown codes, the real files and
bad files."""

from __future__ import annotations

import numpy as np
import pytest

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
