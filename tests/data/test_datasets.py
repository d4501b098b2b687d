"""Readers for Market-1501 / DukeMTMC-reID trees (any file name parses or raises our error),
the P x K sampler and transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cerberus.attributes.schema_files import DUKEMTMC, MARKET1501
from cerberus.data.datasets import (
    DUKEMTMC_FORMAT,
    MARKET1501_FORMAT,
    ImageDataset,
    parse_filename,
    read_dataset,
)
from cerberus.data.samplers import PKBatchSampler
from cerberus.data.transforms import build_transforms
from cerberus.errors import CerberusError
from tests.conftest import make_tree


def test_reader_parses_generated_tree(schema, tmp_path):
    root = make_tree(tmp_path / "bench", schema)
    ds = read_dataset(root, schema.name)
    assert ds.schema is schema
    assert ds.num_train_ids == 4
    assert sorted(np.unique(ds.train.labels)) == [0, 1, 2, 3]
    assert np.array_equal(np.unique(ds.train.pids), [2, 4, 6, 8])  # Thumbs.db ignored
    assert len(ds.train) == 4 * 3 * 2
    assert set(ds.query.pids) == {1, 3, 5} and set(ds.query.camids) == {0}
    # every image carries its identity's attributes
    for s in (ds.train, ds.query):
        for pid, row in zip(s.pids, s.values):
            table = ds.train_attributes if s is ds.train else ds.test_attributes
            assert np.array_equal(row, table.values[list(table.ids).index(pid)])
    if schema is MARKET1501:
        assert {0, -1} <= set(ds.gallery.pids)
        junk = ds.gallery.pids <= 0
        assert (ds.gallery.values[junk] == -1).all() and (ds.gallery.sids[junk] == -1).all()
    assert (ds.gallery.sids[ds.gallery.pids > 0] >= 0).all()


def test_filename_parsing():
    assert parse_filename("0002_c1s1_000451_03.jpg", MARKET1501_FORMAT) == (2, 0)
    assert parse_filename("-1_c3s2_000100_01.jpg", MARKET1501_FORMAT) == (-1, 2)
    with pytest.raises(CerberusError, match="does not follow the market1501 pattern"):
        parse_filename("person.jpg", MARKET1501_FORMAT)
    with pytest.raises(CerberusError, match="camera 9 outside 1..6"):
        parse_filename("0002_c9s1_000451_03.jpg", MARKET1501_FORMAT)


def test_reader_errors_name_the_path(tmp_path):
    root = make_tree(tmp_path / "m", MARKET1501)
    (root / "query" / "bad_name.jpg").write_bytes(b"x")
    with pytest.raises(CerberusError, match=r"query/bad_name.jpg: file name does not follow"):
        read_dataset(root)
    (root / "query" / "bad_name.jpg").unlink()
    (root / "bounding_box_train" / "0010_c1s1_000001_00.jpg").write_bytes(b"x")
    with pytest.raises(CerberusError, match="training identity 0010 .* has no attributes"):
        read_dataset(root)
    (root / "bounding_box_train" / "0010_c1s1_000001_00.jpg").unlink()
    with pytest.raises(CerberusError, match="unknown dataset"):
        read_dataset(root, "cuhk")
    import shutil

    shutil.rmtree(root / "query")
    with pytest.raises(CerberusError, match=r"/query: folder not found"):
        read_dataset(root)
    with pytest.raises(CerberusError, match="dataset folder not found"):
        read_dataset(tmp_path / "nowhere")


def test_duke_names_rejected_by_market_reader(tmp_path):
    root = make_tree(tmp_path / "d", DUKEMTMC)
    with pytest.raises(CerberusError, match="duke_attribute.mat: missing top-level key"):
        read_dataset(root, "market1501", attributes=root / "duke_attribute.mat")
    with pytest.raises(CerberusError, match="_f0000000.jpg: file name does not follow the market"):
        read_dataset(root, "market1501", attributes=_as_market_mat(root, tmp_path))


def _as_market_mat(root, tmp_path):
    from cerberus.attributes.mat import load_attribute_mat, save_attribute_mat
    from cerberus.attributes.table import AttributeTable

    duke = load_attribute_mat(root / "duke_attribute.mat")
    rng = np.random.default_rng(0)
    tables = {
        s: AttributeTable(
            MARKET1501,
            t.ids,
            np.stack([rng.integers(0, a.num_values, len(t)) for a in MARKET1501.attributes], 1),
        )
        for s, t in duke.items()
    }
    save_attribute_mat(tmp_path / "market_attribute.mat", tables)
    return tmp_path / "market_attribute.mat"


def test_unreadable_image_error_names_file(tmp_path):
    root = make_tree(tmp_path / "m", MARKET1501)
    ds = read_dataset(root)
    ds.train.paths[0].write_bytes(b"\xff\xd8 truncated")
    data = ImageDataset(ds.train, build_transforms(height=32, width=16, train=False))
    with pytest.raises(CerberusError, match=rf"{ds.train.paths[0].name}: unreadable image"):
        data[0]


def test_seeded_items_are_reproducible(tmp_path):
    ds = read_dataset(make_tree(tmp_path / "m", MARKET1501))
    data = ImageDataset(ds.train, build_transforms(height=32, width=16, train=True))
    a, b = data[(3, 7)], data[(3, 7)]
    assert torch.equal(a["image"], b["image"])
    assert a["image"].shape == (3, 32, 16)
    assert a["sids"].shape == (5,) and a["label"] == ds.train.labels[3]
    # other seeds give other augmentations (flip / crop / erasing)
    assert any(not torch.equal(a["image"], data[(3, s)]["image"]) for s in range(8, 16))


def test_pk_sampler_batches():
    labels = np.repeat(np.arange(10), [3, 5, 4, 4, 6, 2, 4, 4, 4, 4])
    s = PKBatchSampler(labels, p=4, k=4, seed=0, stop=12)
    batches = list(s)
    assert len(batches) == 12
    for b in batches:
        idx = [i for i, _ in b]
        ids, counts = np.unique(labels[idx], return_counts=True)
        assert len(ids) == 4 and (counts == 4).all()
    # a batch is a pure function of (seed, iteration): resuming replays the same batches
    resumed = list(PKBatchSampler(labels, p=4, k=4, seed=0, start=7, stop=12))
    assert resumed == batches[7:]
    # an epoch covers every identity with P | N... here 10 // 4 = 2 batches per epoch
    first_epoch = {int(labels[i]) for b in batches[:2] for i, _ in b}
    assert len(first_epoch) == 8
    # ranks split a batch; their union is the single-process batch
    shards = [
        PKBatchSampler(labels, p=4, k=4, seed=0, stop=12, rank=r, world_size=2).batch(5)
        for r in range(2)
    ]
    assert shards[0] + shards[1] == batches[5]
    assert {int(labels[i]) for i, _ in shards[0]}.isdisjoint({int(labels[i]) for i, _ in shards[1]})


def test_pk_sampler_draws_without_replacement_when_an_identity_has_k_images():
    """An identity with at least K images never repeats an image within a batch (drawn
    without replacement); one with fewer repeats some (with replacement), all of its own."""
    sizes = [4, 5, 6, 4, 9, 2, 3, 4]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    s = PKBatchSampler(labels, p=4, k=4, seed=1, stop=60)
    short_seen = 0
    for b in s:
        idx = np.array([i for i, _ in b])
        for c in np.unique(labels[idx]):
            mine = idx[labels[idx] == c]
            assert len(mine) == 4 and (labels[mine] == c).all()
            if sizes[c] >= 4:
                assert len(np.unique(mine)) == 4, (c, mine.tolist())
            else:
                short_seen += 1
                assert len(np.unique(mine)) <= sizes[c]
    assert short_seen > 0  # the short identities were drawn too


def test_pk_sampler_rejects_bad_sizes():
    with pytest.raises(CerberusError, match="only 3 in the data"):
        PKBatchSampler(np.arange(3), p=4, k=2, seed=0, stop=1)
    with pytest.raises(CerberusError, match="not divisible by world size"):
        PKBatchSampler(np.arange(10), p=5, k=2, seed=0, stop=1, world_size=2)


def test_exclude_training_sids_makes_them_unseen(tmp_path):
    from cerberus.data.datasets import exclude_training_sids

    ds = read_dataset(make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 30, 2))))
    sid = int(ds.train.sids[0, 2])
    out = exclude_training_sids(ds, (f"L:{sid}",))
    assert (out.train.sids[:, 2] != sid).all() and len(out.train) < len(ds.train)
    assert sorted(np.unique(out.train.labels)) == list(range(out.num_train_ids))
    assert set(out.train_attributes.ids) == set(out.train.pids)
    with pytest.raises(CerberusError, match="not of the form G:index"):
        exclude_training_sids(ds, ("X:1",))


def test_unlabelled_duke_top_reads_as_unknown_u_sid(tmp_path):
    """A Duke training identity with `top` coded 0: U SID -1 on its images, everything else
    (labels, other groups, exclusion, sampler, adaptive margins) as for any identity."""
    from cerberus.attributes.mat import load_attribute_mat, save_attribute_mat
    from cerberus.attributes.schema import GROUPS
    from cerberus.config import Config
    from cerberus.data.datasets import exclude_training_sids
    from cerberus.training.engine import build_margins

    root = make_tree(tmp_path / "d", DUKEMTMC, train_ids=tuple(range(2, 20, 2)))
    mat = root / "duke_attribute.mat"
    tables = load_attribute_mat(mat)
    values = tables["train"].values.copy()
    values[0, DUKEMTMC.index("upper.length")] = -1  # identity 2: top not annotated
    tables["train"] = type(tables["train"])(DUKEMTMC, tables["train"].ids, values)
    save_attribute_mat(mat, tables)
    ds = read_dataset(root, "dukemtmc")
    u = GROUPS.index("U")
    mine = ds.train.pids == 2
    assert (ds.train.sids[mine, u] == -1).all() and (ds.train.sids[~mine] >= 0).all()
    assert (np.delete(ds.train.sids[mine], u, axis=1) >= 0).all()
    assert ds.num_train_ids == 9
    item = ImageDataset(ds.train, build_transforms(height=32, width=16, train=False))[0]
    assert item["sids"][u] == -1
    margins = build_margins(Config(), ds)
    assert all(torch.isfinite(m).all() for m in margins.values())
    sid = int(ds.train.sids[~mine][0, u])
    out = exclude_training_sids(ds, (f"U:{sid}",))
    assert 2 in out.train.pids  # an unknown SID is never an excluded one
    PKBatchSampler(out.train.labels, p=2, k=2, seed=0, stop=2)


@pytest.mark.parametrize("pad", [0, 4])
def test_train_transform_with_and_without_pad(pad):
    from PIL import Image

    t = build_transforms(height=32, width=16, train=True, pad=pad, random_erasing=0.0)
    names = [type(op).__name__ for op in t.transforms]
    assert ("Pad" in names) == (pad > 0) and ("RandomCrop" in names) == (pad > 0)
    img = Image.fromarray(np.zeros((50, 20, 3), dtype=np.uint8))
    assert t(img).shape == (3, 32, 16)
    assert "Pad" not in [
        type(op).__name__ for op in build_transforms(height=32, width=16, train=True).transforms
    ]  # off by default (method §4)


names = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"-?\d{1,5}_c\d{1,2}s\d_\d{1,7}_\d{1,3}\.jpg", fullmatch=True),
    st.from_regex(r"\d{1,5}_c\d{1,2}_f\d{1,8}\.jpg", fullmatch=True),
)


@given(names)
def test_filename_parser_parses_or_raises_our_error(name):
    for fmt in (MARKET1501_FORMAT, DUKEMTMC_FORMAT):
        try:
            pid, cam = parse_filename(name, fmt)
        except CerberusError as exc:
            assert name in str(exc)
        else:
            assert pid >= -1 and 0 <= cam < fmt.num_cameras
