"""The SID score columns (description queries read as column sums): checked against the
inner products and top-k a brute force computes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cerberus.attributes.schema import GROUPS
from cerberus.inference.scoring import AttributeQuery, attribute_query_vectors, embed_features
from cerberus.store.sidcolumns import SidColumns

D = 8


def setup(seed: int = 0, n: int = 500):
    rng = np.random.default_rng(seed)
    protos = {g: rng.normal(size=(3 + i, D)).astype(np.float32) for i, g in enumerate(GROUPS)}
    x = embed_features(rng.normal(size=(n, 5, D))).astype(np.float32)
    return protos, x, rng


def every_query(protos):
    """Every description of one to three groups with one SID each (a few per group set)."""
    for size in (1, 2, 3):
        for names in itertools.combinations(GROUPS, size):
            choices = tuple((len(protos[g]) - 1,) for g in names)
            yield attribute_query_vectors(AttributeQuery({}, names, choices), protos)[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_column_sums_are_the_inner_products_and_top_is_brute_force(seed):
    protos, x, rng = setup(seed)
    cols = SidColumns.of(protos, 5 * D)
    ids = rng.permutation(len(x) + 40)[: len(x)]  # ids with gaps
    cols.add(ids, x)
    for share in (0.6, 0.05, 1.0):  # many passing (masked), few (scored where they are), all
        passing = np.sort(ids[rng.random(len(ids)) < share]) if share < 1 else np.sort(ids)
        allowed = np.zeros(cols.rows, bool)
        allowed[passing] = True
        tops(cols, protos, ids, x, passing, allowed)


def tops(cols, protos, ids, x, passing, allowed):
    for q in every_query(protos):
        got_cols, scale = cols.decode(q)
        s = cols.scores(got_cols, scale)
        np.testing.assert_allclose(s[ids], x @ q, rtol=1e-5, atol=1e-5)
        assert np.isnan(np.delete(s, ids)).all()  # no item: no score
        (top,) = cols.top(q[None], 7, passing)
        slow = np.full(cols.rows, -np.inf)
        slow[ids] = x @ q
        slow[~allowed] = -np.inf
        want = np.argsort(-slow, kind="stable")[: min(7, len(passing))]
        assert set(top[top >= 0].tolist()) == set(want.tolist())


def test_what_is_no_description_is_not_read_as_one():
    protos, x, rng = setup()
    cols = SidColumns.of(protos, 5 * D)
    cols.add(np.arange(len(x)), x)
    q = next(iter(every_query(protos)))
    assert cols.decode(rng.normal(size=5 * D)) is None  # a photo's vector
    assert cols.decode(np.zeros(5 * D)) is None
    assert cols.decode(np.full(5 * D, np.nan)) is None
    two = attribute_query_vectors(AttributeQuery({}, GROUPS[:2], ((0,), (1,))), protos)[0]
    uneven = two.copy()
    uneven[:D] *= 2  # the given slots of unequal length
    assert cols.decode(uneven) is None
    slot = q[:D].copy()  # the first group's slot (every_query's first gives only it)
    assert np.abs(q[D:]).max() == 0
    bent = q.copy()
    turned = slot + 0.2 * np.linalg.norm(slot) * rng.normal(size=D) / np.sqrt(D)
    bent[:D] = turned * np.linalg.norm(slot) / np.linalg.norm(turned)  # same length, turned
    assert cols.decode(q) is not None and cols.decode(bent) is None  # near is not a prototype
    assert cols.top(np.stack([q, x[0]]), 5, np.arange(cols.rows)) is None


def test_columns_fit_only_prototypes_of_the_vectors_slots(tmp_path):
    protos, x, _ = setup()
    assert SidColumns.of(protos, 5 * D + 1) is None
    assert SidColumns.of({}, 5 * D) is None
    assert SidColumns.of({g: protos[g] for g in GROUPS[:4]}, 5 * D) is None
    cols = SidColumns.of(protos, 5 * D)
    cols.add(np.arange(100), x[:100], rows=120)
    cols.save(tmp_path)
    back = SidColumns.of(protos, 5 * D)
    assert back.load(tmp_path, 120) and back.rows == 120
    np.testing.assert_array_equal(back.table[:, :120], cols.table[:, :120])
    assert not SidColumns.of(protos, 5 * D).load(tmp_path, 100)  # another length: refilled
    (tmp_path / "sid.npy").write_bytes(b"not an array")
    assert not SidColumns.of(protos, 5 * D).load(tmp_path, 120)


@pytest.mark.parametrize("gaps", [False, True])
def test_a_build_fills_the_same_columns_as_adding_the_items_one_by_one(gaps):
    """A build makes room for its items first (``nan`` only where no item is) and adds them
    in blocks, runs of ids written in place: the same table as adding each item alone."""
    protos, x, rng = setup(3, n=300)
    ids = np.sort(rng.permutation(400)[:300]) if gaps else np.arange(300)
    built = SidColumns.of(protos, 5 * D)
    built.make_room_for(ids)
    for a in range(0, 300, 64):
        built.add(ids[a : a + 64], x[a : a + 64])
    one_by_one = SidColumns.of(protos, 5 * D)
    for i, v in zip(ids[::-1], x[::-1]):
        one_by_one.add(i[None], v[None])
    assert built.rows == one_by_one.rows == int(ids[-1]) + 1
    np.testing.assert_allclose(
        built.table[:, : built.rows], one_by_one.table[:, : built.rows], rtol=1e-6, atol=1e-6
    )
    assert np.isnan(built.table[:, np.setdiff1d(np.arange(built.rows), ids)]).all()
    assert not np.isnan(built.table[:, ids]).any()
