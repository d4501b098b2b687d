"""Gallery index and search: method §5 similarities, faiss against brute force, files, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import MARKET1501
from cerberus.errors import CerberusError
from cerberus.inference.embed import (
    attribute_query_vectors,
    embed_features,
    extract_folder,
    l2_normalize,
    model_fingerprint,
    parse_attribute_query,
    scan_images,
)
from cerberus.inference.features import UNKNOWN, FeatureSet
from cerberus.search import Gallery, result_rows
from cerberus.store import GalleryInfo, StoreError, check_same_model
from cerberus.store.npz import NpzIndex, NpzStore, build_faiss_index
from cerberus.store.topk import recall_at_k
from tests import conftest
from tests.conftest import assert_one_line, make_tree
from tests.conftest import features_file as _features

D = 8


def random_features(n: int, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    values = np.stack([rng.integers(0, a.num_values, n) for a in MARKET1501.attributes], 1)
    return FeatureSet(
        features=rng.normal(size=(n, 5, D)).astype(np.float32),
        paths=[f"g/{i:05d}.jpg" for i in range(n)],
        pids=rng.integers(1, 50, n),
        camids=rng.integers(0, 6, n),
        values=values,
        prototypes={
            g: rng.normal(size=(s, D)).astype(np.float32) for g, s in MARKET1501.num_sids.items()
        },
        meta={"schema": "market1501", "fingerprint": "abc123", "checkpoint": "m.pt"},
    )


def brute_force_attribute_scores(query, features, prototypes) -> np.ndarray:
    """The slow obvious APS score of every gallery item, ``(N,)``, for checking the index.

    Mean over the given groups of the best cosine over the group's agreeing SIDs.
    """
    f = l2_normalize(np.asarray(features, np.float32))
    total = np.zeros(len(f), dtype=np.float64)
    for g, choice in zip(query.groups, query.choices):
        p = l2_normalize(np.asarray(prototypes[g], np.float32)[list(choice)])
        total += (f[:, GROUPS.index(g)] @ p.T).max(axis=1)
    return (total / len(query.groups)).astype(np.float32)


def mean_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """The obvious method §5 similarity of two (5, d) representations."""
    return float(np.mean([a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(x, y)]))


def test_retrieval_vectors_give_the_mean_part_cosine():
    f = random_features(6).features
    v = embed_features(f)
    assert v.shape == (6, 5 * D)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    for i in range(6):
        for j in range(6):
            assert v[i] @ v[j] == pytest.approx(mean_cosine(f[i], f[j]), abs=1e-6)


def test_attribute_queries_parse_full_and_partial_groups():
    q = parse_attribute_query("gender=female, age=adult, backpack=yes", MARKET1501)
    assert q.groups == ("I", "C")
    assert len(q.choices[0]) == 1  # the whole identity group is given
    assert len(q.choices[1]) == 4  # bag and handbag free
    assert q.num_combinations == 4
    codec = MARKET1501.codecs["C"]
    decoded = codec.decode(np.array(q.choices[1]))
    assert (decoded[:, 0] == 1).all()  # backpack = yes in every agreeing SID
    with pytest.raises(CerberusError, match="unknown attribute 'colour'; valid: hat, hair"):
        parse_attribute_query("colour=red", MARKET1501)
    with pytest.raises(CerberusError, match="no value 'teal'; valid: none, black, white"):
        parse_attribute_query("upper.color=teal", MARKET1501)
    with pytest.raises(CerberusError, match="not of the form name=value"):
        parse_attribute_query("female", MARKET1501)
    with pytest.raises(CerberusError, match=r"8 SID combinations \(more than 5\)"):
        parse_attribute_query("hat=yes, gender=male", MARKET1501, max_combinations=5)


def test_attribute_query_vector_is_the_spec_similarity_on_whole_groups():
    fs = random_features(20)
    q = parse_attribute_query(
        "upper.color=red, upper.sleeve=short, gender=male, age=young", MARKET1501
    )
    (vec,) = attribute_query_vectors(q, fs.prototypes)
    got = embed_features(fs.features) @ vec
    sids = {g: c[0] for g, c in zip(q.groups, q.choices)}
    for n in range(20):
        expected = np.mean(
            [
                mean_cosine(fs.features[n][[GROUPS.index(g)]], fs.prototypes[g][[s]])
                for g, s in sids.items()
            ]
        )
        assert got[n] == pytest.approx(expected, abs=1e-5)
    np.testing.assert_allclose(
        got, brute_force_attribute_scores(q, fs.features, fs.prototypes), atol=1e-5
    )


def test_exact_faiss_search_ranks_like_brute_force_torch():
    fs = random_features(500, seed=1)
    store = NpzStore.build(fs)
    queries = random_features(7, seed=2).features
    results = store.search(embed_features(queries), 25)
    g = torch.nn.functional.normalize(torch.from_numpy(fs.features), dim=-1)
    q = torch.nn.functional.normalize(torch.from_numpy(queries), dim=-1)
    sim = torch.einsum("qgd,ngd->qn", q, g) / 5  # mean part cosine, brute force
    top = sim.topk(25, dim=1)
    for r, s, i in zip(results, top.values, top.indices):
        np.testing.assert_array_equal(r.ids, i.numpy())
        np.testing.assert_allclose(r.scores, s.numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "text",
    [
        "gender=female, upper.color=red, backpack=yes",  # three partly given groups
        "hat=no, hair=long, lower.color=blue, lower.length=long, lower.clothes=pants",
        "age=old",
    ],
)
def test_attribute_search_merges_combinations_exactly(text):
    fs = random_features(800, seed=3)
    gallery = Gallery(NpzStore.build(fs))
    q = parse_attribute_query(text, MARKET1501)
    ids, scores = gallery.vector_top(attribute_query_vectors(q, fs.prototypes))(15, None)
    brute = brute_force_attribute_scores(q, fs.features, fs.prototypes)
    order = np.argsort(-brute, kind="stable")[:15]
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_allclose(scores, brute[order], atol=1e-5)
    rows = gallery.by_attributes(q, 15).rows  # the same merge answers the search layer
    assert [r["id"] for r in rows] == order.tolist()


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, dim))
    x = centres[rng.integers(0, 64, n)] + 0.4 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["ivf", "ivf-sq8", "hnsw"])
def test_approximate_indexes_report_their_recall(kind):
    x = clustered(4000, 40)
    index = build_faiss_index(x, kind=kind, nprobe=8)
    recall = recall_at_k(index, x, k=10, num_queries=300)
    assert 0.8 <= recall <= 1.0
    exact = build_faiss_index(x, kind="flat")
    assert recall_at_k(exact, x, k=10, num_queries=300) == 1.0
    fs = random_features(600, seed=4)
    built = NpzIndex.build(fs, kind=kind, recall_queries=200)
    assert 0 < built.meta["recall_at_10"] <= 1


def test_index_files_round_trip_and_refuse_bad_input(tmp_path):
    fs = random_features(50)
    index = NpzIndex.build(fs, kind="ivf-sq8", nlist=4, recall_queries=50)
    path = index.save(tmp_path / "gallery")
    assert path.name == "gallery.npz"
    again = NpzIndex.load(path)
    assert again.paths == index.paths and again.meta["recall_at_10"] == index.meta["recall_at_10"]
    q = embed_features(fs.features[:3])
    for a, b in zip(NpzStore(index).search(q, 10), NpzStore.load(path).search(q, 10)):
        np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(again.values, fs.values)

    feats = fs.save(tmp_path / "f.npz")
    with pytest.raises(CerberusError, match="f.npz: a Cerberus features file, not an index$"):
        NpzIndex.load(feats)
    assert FeatureSet.load(feats).paths == fs.paths
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CerberusError, match="bad.npz: not a readable Cerberus index"):
        NpzIndex.load(bad)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    os.replace(tmp_path / "obj.npy", tmp_path / "obj.npz")
    with pytest.raises(CerberusError, match="obj.npz: not a readable"):
        NpzIndex.load(tmp_path / "obj.npz")
    with pytest.raises(CerberusError, match="missing.npz: index not found"):
        NpzIndex.load(tmp_path / "missing.npz")
    store = NpzStore(again)
    other = GalleryInfo(dim=5 * D, fingerprint="999", schema={}, prototypes={})
    with pytest.raises(StoreError, match="other.pt: model 999 .* is not the model this gallery"):
        check_same_model(store, other, "other.pt")
    check_same_model(store, GalleryInfo(5 * D, "abc123", {}, {}), "m.pt")  # the same model


def test_index_save_failure_keeps_the_previous_file(tmp_path, read_only):
    fs = random_features(30)
    index = NpzIndex.build(fs)
    path = index.save(tmp_path / "i.npz")
    before = path.read_bytes()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CerberusError, match="could not write index"):
        index.save(blocker / "sub" / "i.npz")
    assert path.read_bytes() == before
    read_only(tmp_path)
    with pytest.raises(CerberusError, match="i.npz: could not write index"):
        NpzIndex.build(random_features(31)).save(path)
    assert path.read_bytes() == before


def test_result_rows_mark_correct_items():
    fs = random_features(40)
    fs.pids[5] = UNKNOWN
    store = NpzStore.build(fs)
    index = store.index
    r = store.search(embed_features(fs.features[[5]]), 40)[0]
    rows = result_rows(store, r, query_pid=int(fs.pids[0]))
    by_index = {int(i): row for i, row in zip(r.ids, rows)}
    assert by_index[5]["pid"] is None and by_index[5]["correct"] is None
    assert by_index[0]["correct"] is True
    q = parse_attribute_query("gender=female", MARKET1501)
    rows = Gallery(store).by_attributes(q, 40).rows
    female = MARKET1501.index("gender")
    for row in rows:
        i = index.paths.index(row["path"])
        assert row["correct"] == (fs.values[i, female] == 1)


def tiny_model():
    return conftest.tiny_model(dim=D).eval()


def test_scan_and_extract_folder_skip_or_stop_on_bad_images(tmp_path, caplog):
    root = make_tree(tmp_path / "m", MARKET1501, size=(64, 32))
    folder = root / "bounding_box_test"
    (folder / "sub").mkdir()
    from PIL import Image

    Image.new("RGB", (17, 91), "red").save(folder / "sub" / "odd size.png")
    images = scan_images(folder, MARKET1501)
    assert images.paths[-1].name == "odd size.png" and images.pids[-1] == UNKNOWN
    assert {-1, 0} <= set(images.pids.tolist())  # junk and distractor names parse
    model = tiny_model()
    fs = extract_folder(
        model, folder, schema=MARKET1501, height=64, width=32, num_workers=0, batch_size=4
    )
    assert fs.features.shape == (len(images), 5, D)
    assert fs.meta["fingerprint"] == model_fingerprint(model)

    (folder / "0001_c1s1_000001_00.jpg").write_bytes(b"")  # zero bytes
    (folder / "notes.jpg").write_text("not an image")
    with pytest.raises(CerberusError, match=r"0001_c1s1_000001_00\.jpg: unreadable image"):
        extract_folder(model, folder, schema=MARKET1501, height=64, width=32, num_workers=0)
    with caplog.at_level("WARNING"):
        fs2 = extract_folder(
            model, folder, schema=MARKET1501, height=64, width=32, num_workers=2, skip_bad=True
        )
    assert len(fs2.paths) == len(images)
    assert "notes.jpg" in caplog.text and "skipped 2 unreadable images" in caplog.text
    # the bad files change the batches' sizes, and oneDNN picks kernels by batch size: the same
    # images give the same features up to float32 rounding (seen: 1.9e-5 on values near 1)
    np.testing.assert_allclose(fs2.features, fs.features, rtol=1e-4, atol=1e-4)


def test_fingerprint_changes_with_weights():
    a, b = tiny_model(), tiny_model()
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.prototypes["H"][0, 0] += 1
    assert model_fingerprint(a) != model_fingerprint(b)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_chunked_build_equals_building_from_all_vectors(kind):
    raw = random_features(300, seed=5).features
    whole = build_faiss_index(embed_features(raw), kind=kind, nlist=4)
    chunked = build_faiss_index(raw, kind=kind, nlist=4, transform=embed_features, chunk=7)
    q = embed_features(raw[:20])
    s1, i1 = whole.search(q, 10)
    s2, i2 = chunked.search(q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    r1 = recall_at_k(whole, embed_features(raw), num_queries=50)
    assert recall_at_k(chunked, raw, num_queries=50, transform=embed_features) == r1


def test_attribute_search_does_not_import_torch(tmp_path):
    """APS on an index needs NumPy and faiss only: the command stays fast (no PyTorch import)."""
    import subprocess
    import sys

    path = NpzStore.build(random_features(40)).save(tmp_path / "g.index.npz")
    code = (
        "import sys\n"
        "from cerberus.cli import main\n"
        "sys.argv = ['cerberus', 'search', '--index', sys.argv[1], '--attrs', 'gender=female',"
        " '-k', '3', '--json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "import cerberus.store.npz\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert '"rank": 3' in done.stdout
    assert "torch imported: False" in done.stdout, done.stdout + done.stderr


def _index(n: int, seed: int) -> NpzIndex:
    rng = np.random.default_rng(seed)
    fs = FeatureSet(
        features=rng.normal(size=(n, 5, 4)).astype(np.float32),
        paths=[f"{i}.jpg" for i in range(n)],
        pids=np.arange(n),
        camids=np.zeros(n, dtype=np.int64),
        values=np.full((n, 12), -1),
        prototypes={
            g: rng.normal(size=(n_sids, 4)).astype(np.float32)
            for g, n_sids in MARKET1501.num_sids.items()
        },
        meta={"schema": "market1501", "fingerprint": "f"},
    )
    return NpzIndex.build(fs)


def test_full_disk_keeps_the_previous_index(tmp_path, request):
    path = _index(50, 0).save(tmp_path / "gallery.npz")
    request.getfixturevalue("full_disk")
    with pytest.raises(CerberusError, match=r"gallery.npz: could not write index \(No space"):
        _index(60, 1).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.npz"]
    assert len(NpzIndex.load(path)) == 50


@pytest.mark.parametrize(
    "args, option",
    [
        (["--kind", "ivf", "--nlist", "1000"], "--nlist"),
        (["--kind", "ivf", "--nlist", "0"], "--nlist"),
        (["--kind", "ivf", "--nprobe", "0"], "--nprobe"),
        (["--kind", "ivf-sq8", "--nprobe", "-3"], "--nprobe"),
        (["--kind", "hnsw", "--hnsw-m", "0"], "--hnsw-m"),
        (["--kind", "hnsw", "--ef-search", "-1"], "--ef-search"),
    ],
)
def test_bad_index_options_are_one_line(tmp_path, cli, args, option):
    feats = _features(tmp_path)
    code, _, err = cli("index", "--features", feats, "--out", tmp_path / "i.npz", *args)
    assert_one_line(code, err, option)
    assert not (tmp_path / "i.npz").exists()


def _damage_index(index: Path, out: Path, how: str) -> Path:
    import numpy as np

    from cerberus.inference.features import load_npz, save_npz

    arrays, meta = load_npz(index, "index", "index")
    if how == "no schema":
        del meta["schema"]
    elif how == "prototype shape":
        arrays["prototype_U"] = arrays["prototype_U"][:-1]
    elif how == "short values":
        arrays["values"] = arrays["values"][:-2]
    elif how == "short pids":
        arrays["pids"] = arrays["pids"][:3]
    elif how == "no paths":
        del arrays["paths"]
    elif how == "ragged prototypes":
        arrays["prototype_H"] = np.zeros((arrays["prototype_H"].shape[0], 7), np.float32)
    save_npz(out, arrays, meta, "index")
    return out


@pytest.mark.parametrize(
    "how, names",
    [
        ("no schema", ["schema"]),
        ("prototype shape", ["prototype_U"]),
        ("short values", ["values"]),
        ("short pids", ["pids"]),
        ("no paths", ["paths"]),
        ("ragged prototypes", ["prototype"]),
    ],
)
def test_damaged_index_files_are_one_line(tmp_path, cli, how, names):
    index = tmp_path / "i.npz"
    assert cli("index", "--features", _features(tmp_path), "--out", index)[0] == 0
    bad = _damage_index(index, tmp_path / "bad.npz", how)
    code, _, err = cli("search", "--index", bad, "--attrs", "gender=female")
    assert_one_line(code, err, bad, *names)
