"""The validation split and the sensitivity grid (paper section 4.3.4, Fig. 10)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cerberus.attributes.schema_files import MARKET1501
from cerberus.attributes.table import AttributeTable
from cerberus.config import load_config
from cerberus.data.datasets import (
    ImageSet,
    ReIDDataset,
    read_dataset,
    unmatched_queries,
    validation_split,
)
from cerberus.errors import CerberusError
from cerberus.experiments.sensitivity import expand_grid, load_grid, parse_grid, run_sensitivity
from tests.conftest import make_tree
from tests.training.test_engine import tiny_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = make_tree(
        tmp_path_factory.mktemp("val") / "m",
        MARKET1501,
        train_ids=tuple(range(2, 62, 2)),
        cams=(1, 2, 3),
    )
    return read_dataset(root)


def test_validation_split_sizes_disjoint_and_seeded(dataset):
    v = validation_split(dataset, num_val_ids=6, num_queries=9, seed=3)
    train_ids, val_ids = set(v.train.pids), set(v.gallery.pids)
    assert len(val_ids) == 6 and len(train_ids) == 30 - 6
    assert not train_ids & val_ids and set(v.query.pids) <= val_ids
    assert len(v.query) == 9
    assert len(v.query) + len(v.gallery) == sum(np.isin(dataset.train.pids, list(val_ids)))
    assert not set(v.query.paths) & set(v.gallery.paths)
    assert (v.train.labels == np.searchsorted(sorted(train_ids), v.train.pids)).all()
    assert v.num_train_ids == 24
    # every query has a gallery image of its identity from another camera
    for pid, cam in zip(v.query.pids, v.query.camids):
        assert ((v.gallery.pids == pid) & (v.gallery.camids != cam)).any()
    # attributes of the validation identities come from the training table
    assert set(v.test_attributes.ids) == val_ids
    assert set(v.train_attributes.ids) == train_ids
    again = validation_split(dataset, num_val_ids=6, num_queries=9, seed=3)
    assert again.query.paths == v.query.paths and again.gallery.paths == v.gallery.paths
    other = validation_split(dataset, num_val_ids=6, num_queries=9, seed=4)
    assert set(other.gallery.pids) != val_ids


def test_validation_split_defaults_scale_the_market_split(dataset):
    v = validation_split(dataset, seed=0)
    assert len(set(v.gallery.pids)) == round(100 * 30 / 751)  # 4 of 30
    assert len(v.query) == round(1.6 * 4)


def test_validation_split_rejects_bad_sizes(dataset):
    with pytest.raises(CerberusError, match="num_val_ids"):
        validation_split(dataset, num_val_ids=30)
    with pytest.raises(CerberusError, match="num_queries"):
        validation_split(dataset, num_val_ids=2, num_queries=100)


def test_grid_from_yaml_expands_one_parameter_at_a_time(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "parameters": [
                    {"name": "lambda_sem", "key": "loss.lambda_sem", "values": [1, 5, 10]},
                    {"name": "sigma", "key": "model.align_sigma", "values": [2, 7]},
                ]
            }
        )
    )
    axes = load_grid(path)
    assert [a.name for a in axes] == ["lambda_sem", "sigma"]
    points = expand_grid(axes, load_config(None))  # lambda_sem 5 and sigma 5 are the defaults
    assert [p.run_name for p in points] == [
        "default", "lambda_sem=1", "lambda_sem=10", "sigma=2", "sigma=7",
    ]  # fmt: skip
    assert points[1].changes == {"loss": {"lambda_sem": 1}}


def test_the_shipped_grid_is_the_papers():
    axes = {a.name: a.values for a in load_grid("configs/sensitivity.yaml")}
    assert axes == {
        "lambda_sem": (1, 2, 5, 10),
        "lambda_reg": (0.1, 0.01, 0.001, 0.0001),
        "alpha": (0.3, 0.4, 0.5, 0.6),
        "beta": (1.6, 1.7, 1.8, 1.9),
        "sigma": (2, 5, 7, 10),
    }


@pytest.mark.parametrize(
    "raw, message",
    [
        ({}, "parameters"),
        ({"parameters": [{"key": "loss", "values": [1]}]}, "section.name"),
        ({"parameters": [{"key": "loss.lambda_sem", "values": []}]}, "non-empty"),
        ({"parameters": [{"key": "loss.nope", "values": [1]}]}, "unknown config key"),
        ({"parameters": [{"key": "loss.lambda_sem", "values": [-1]}]}, "must be >= 0"),
    ],
)
def test_bad_grids_name_the_problem(raw, message):
    with pytest.raises(CerberusError, match=message):
        expand_grid(parse_grid(raw, "grid.yaml"), load_config(None))


def test_sensitivity_writes_table_and_one_png_per_parameter(tmp_path):
    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 62, 2)), size=(64, 32))
    cfg = tiny_config(root, tmp_path / "unused", "optim.iterations=2", "eval.num_workers=0")
    axes = parse_grid(
        {"parameters": [{"name": "beta", "key": "loss.beta", "values": [1.6, 1.8]}]}, "g"
    )
    table = run_sensitivity(cfg, tmp_path / "s", axes, seeds=(0, 1))
    rows = [r for r in table.splitlines() if r.startswith("| beta")]
    assert len(rows) == 2 and "**1.8**" in rows[1] and "±" in rows[0]
    assert (tmp_path / "s" / "sensitivity_beta.png").is_file()
    assert not list((tmp_path / "s").rglob("last.pt"))


def test_validation_split_of_a_dataset_without_cameras(dataset, tmp_path):
    """Without cameras a query needs only another image of its identity, and the split keeps
    saying that cameras are unknown (so evaluation removes only the query image itself)."""
    from cerberus.data.table import read_table_dataset, write_table_dataset

    root = tmp_path / "t"  # the table names the crops of the tree by absolute path
    root.mkdir()
    write_table_dataset(dataset, root, cameras=False)
    data = read_table_dataset(root)
    assert not data.cameras_known
    v = validation_split(data, num_val_ids=6, num_queries=9, seed=3)
    assert not v.cameras_known and len(v.query) == 9
    for pid in v.query.pids:
        assert (v.gallery.pids == pid).any()


def _layout_dataset(camera_counts: list[list[int]], *, cameras_known: bool = True) -> ReIDDataset:
    """A training split without image files: identity i has camera_counts[i][c] images from
    camera c (only ids, cameras and paths matter to the split)."""
    pids, cams = [], []
    for i, counts in enumerate(camera_counts):
        for c, n in enumerate(counts):
            pids += [i + 1] * n
            cams += [c if cameras_known else -1] * n
    pids_a = np.asarray(pids, dtype=np.int64)
    values = np.zeros((len(camera_counts), MARKET1501.num_attributes), dtype=np.int64)
    table = AttributeTable(MARKET1501, np.arange(1, len(camera_counts) + 1), values)
    train = ImageSet(
        tuple(Path(f"img{k}.jpg") for k in range(len(pids))),
        pids_a,
        np.asarray(cams, dtype=np.int64),
        pids_a - 1,
        np.zeros((len(pids), MARKET1501.num_attributes), dtype=np.int64),
        MARKET1501,
    )
    empty = train.subset(np.zeros(len(train), dtype=bool))
    return ReIDDataset(
        "layout", Path("."), MARKET1501, train, empty, empty, table, table, cameras_known
    )


def _check_every_query_matched(v: ReIDDataset) -> None:
    assert unmatched_queries(v) == 0
    for pid, cam, path in zip(v.query.pids, v.query.camids, v.query.paths):
        others = (v.gallery.pids == pid) & np.array([p != path for p in v.gallery.paths])
        if v.cameras_known:
            others &= v.gallery.camids != cam
        assert others.any()


def test_two_camera_validation_queries_all_keep_a_cross_camera_match():
    """The layout: two cameras, 3 + 1 images per identity; 20 split seeds."""
    data = _layout_dataset([[3, 1]] * 30 + [[1, 2]] * 30)
    for seed in range(20):
        v = validation_split(data, num_val_ids=10, num_queries=10 + seed % 11, seed=seed)
        assert len(v.query) == 10 + seed % 11
        _check_every_query_matched(v)


def test_validation_split_reaches_the_most_queries_an_identity_can_give():
    # 2 + 1 images in two cameras: both camera-0 images can be queries (camera 1's stays).
    v = validation_split(_layout_dataset([[2, 1], [2, 1]]), num_val_ids=1, num_queries=2)
    assert (v.query.camids == 0).all() and (v.gallery.camids == 1).all()
    # 2 + 2: two stay (one per camera); one camera only: no query.
    with pytest.raises(CerberusError, match=r"num_queries must be in 1\.\.2 "):
        validation_split(_layout_dataset([[2, 2], [2, 2]]), num_val_ids=1, num_queries=3)
    with pytest.raises(CerberusError, match=r"num_queries must be in 1\.\.0 "):
        validation_split(_layout_dataset([[4, 0], [4, 0]]), num_val_ids=1, num_queries=1)


def _most_queries(counts: list[int], cameras_known: bool) -> int:
    """Brute force: the largest set of an identity's images that can all be queries."""
    cams = [c for c, n in enumerate(counts) for _ in range(n)]
    for size in range(len(cams), 0, -1):
        for chosen in itertools.combinations(range(len(cams)), size):
            rest = [cams[i] for i in range(len(cams)) if i not in chosen]
            if rest and (not cameras_known or all(set(rest) - {cams[i]} for i in chosen)):
                return size
    return 0


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(
        st.lists(st.integers(0, 3), min_size=1, max_size=4).filter(lambda c: sum(c) >= 2),
        min_size=2,
        max_size=9,
    ),
    cameras_known=st.booleans(),
    seed=st.integers(0, 2**31),
    num_val_ids=st.integers(1, 8),
    num_queries=st.integers(1, 20),
)
def test_validation_split_property_every_query_has_a_match(
    counts, cameras_known, seed, num_val_ids, num_queries
):
    data = _layout_dataset(counts, cameras_known=cameras_known)
    num_val_ids = min(num_val_ids, len(counts) - 1)
    try:
        v = validation_split(data, num_val_ids=num_val_ids, num_queries=num_queries, seed=seed)
    except CerberusError as exc:
        # Only when the identities drawn cannot give that many queries: each gives its images
        # minus one (no cameras, or a camera with one image) or minus two, none from one camera.
        drawn = np.random.default_rng(seed).choice(len(counts), num_val_ids, replace=False)
        most = sum(_most_queries(counts[i], cameras_known) for i in drawn)
        assert f"num_queries must be in 1..{most} " in str(exc) and num_queries > most
        return
    assert len(v.query) == num_queries
    assert not set(v.query.paths) & set(v.gallery.paths)
    assert len(v.query) + len(v.gallery) == np.isin(data.train.pids, v.gallery.pids).sum()
    _check_every_query_matched(v)


def test_unmatched_queries_counts_queries_without_a_true_match():
    from dataclasses import replace

    v = validation_split(_layout_dataset([[2, 1], [2, 1]]), num_val_ids=1, num_queries=2)
    assert unmatched_queries(v) == 0
    assert unmatched_queries(replace(v, gallery=v.query)) == 2  # same camera only
    # Without cameras the query file itself is no match; another file of the identity is.
    first = v.query.subset(np.array([True, False]))
    assert unmatched_queries(replace(v, gallery=first, cameras_known=False)) == 1
