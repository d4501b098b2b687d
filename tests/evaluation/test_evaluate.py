"""Model-level evaluation on hand-built features: method §5 similarities and the method §6
protocols; search and eval of a run from another working directory."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cerberus.attributes.mat import load_attribute_mat, save_attribute_mat
from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import DUKEMTMC, MARKET1501
from cerberus.attributes.table import AttributeTable
from cerberus.data.datasets import ImageSet, read_dataset
from cerberus.data.table import read_table_dataset, write_table_dataset
from cerberus.evaluation.evaluate import (
    NO_CAMERA_PROTOCOL,
    EvalFeatures,
    evaluate_checkpoint,
    evaluate_features,
    format_report,
)
from cerberus.inference.embed import (
    attribute_query_scores,
    embed_features,
    predict_sids,
    prototype_scores,
)
from tests.conftest import invoke, make_tree


def _prototypes(schema, d, rng):
    return {g: rng.normal(size=(schema.codecs[g].num_sids, d)).astype(np.float32) for g in GROUPS}


def test_embedding_inner_product_is_mean_cosine():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 5, 8)), rng.normal(size=(4, 5, 8))
    slow = np.zeros((3, 4))
    for i in range(3):
        for j in range(4):
            slow[i, j] = np.mean(
                [
                    a[i, k] @ b[j, k] / np.linalg.norm(a[i, k]) / np.linalg.norm(b[j, k])
                    for k in range(5)
                ]
            )
    assert np.allclose(embed_features(a) @ embed_features(b).T, slow, atol=1e-6)


def test_attribute_query_scores_average_given_groups_only():
    rng = np.random.default_rng(1)
    per_group = [rng.normal(size=(3, 6)) for _ in GROUPS]
    q = np.array([[0, 1, 2, 0, 1], [2, 2, 2, 2, 2]])
    given = np.array([[1, 0, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    s = attribute_query_scores(q, given, per_group)
    assert np.allclose(s[0], (per_group[0][0] + per_group[2][2]) / 2)
    assert np.allclose(s[1], sum(per_group[k][2] for k in range(5)) / 5)


def test_predict_sids_is_nearest_prototype():
    rng = np.random.default_rng(2)
    protos = _prototypes(MARKET1501, 16, rng)
    sids = np.stack([rng.integers(0, MARKET1501.codecs[g].num_sids, 7) for g in GROUPS], 1)
    feats = np.stack([protos[g][sids[:, k]] * 3.0 for k, g in enumerate(GROUPS)], 1)
    assert np.array_equal(predict_sids(feats, protos), sids)
    assert [s.shape for s in prototype_scores(feats, protos)] == [
        (MARKET1501.codecs[g].num_sids, 7) for g in GROUPS
    ]


@pytest.fixture
def dataset(tmp_path):
    return read_dataset(make_tree(tmp_path / "m", MARKET1501, test_ids=(1, 3, 5, 7, 9)))


def _features(images, protos, rng, noise):
    """Each part = its SID's prototype + a per-identity direction + noise; junk random."""
    d = next(iter(protos.values())).shape[1]
    out = rng.normal(size=(len(images), 5, d)).astype(np.float32)
    ident = {p: rng.normal(size=(5, d)) for p in np.unique(images.pids)}
    for i, (pid, sid) in enumerate(zip(images.pids, images.sids)):
        if (sid >= 0).all():
            for k, g in enumerate(GROUPS):
                out[i, k] = protos[g][sid[k]] * 4 + ident[pid][k] + noise * rng.normal(size=d)
    return out


def _near_perfect_features(dataset) -> EvalFeatures:
    """Every representation at its SID prototype (x4) plus an identity offset and 0.01 noise."""
    rng = np.random.default_rng(3)
    protos = _prototypes(MARKET1501, 64, rng)
    return EvalFeatures(
        query=_features(dataset.query, protos, rng, 0.01),
        gallery=_features(dataset.gallery, protos, rng, 0.01),
        prototypes=protos,
    )


def test_perfect_features_give_perfect_scores(dataset):
    m = evaluate_features(_near_perfect_features(dataset), dataset)
    assert m["reid"]["map_score"] == pytest.approx(1.0)
    assert m["aps"]["full"]["map_score"] == pytest.approx(1.0)
    for name in ("without_H", "without_U", "without_L", "without_I", "without_C"):
        assert m["aps"][name]["map_score"] == pytest.approx(1.0)
    assert m["par"]["mean_accuracy_score"] == pytest.approx(1.0)
    assert len(m["par"]["attribute_accuracy_score"]) == 12
    assert 0 < m["chance"]["reid"]["map_score"] < 1
    assert 0 < m["chance"]["par"]["mean_accuracy_score"] <= 1
    json.dumps(m)  # report is JSON-serialisable
    text = format_report(m)
    assert "APS partial, no H group" in text and "PAR mean" in text


def test_par_reports_three_metrics_on_the_official_image_set(dataset):
    m = evaluate_features(_near_perfect_features(dataset), dataset)
    par, chance = m["par"], m["chance"]["par"]
    # Lin et al.'s images: the test gallery without junk and distractors, no query image.
    assert par["num_images"] == int((dataset.gallery.pids > 0).sum())
    assert par["image_set"] == "test gallery without junk and distractors"
    colours = ("upper.color", "lower.color")
    for name, acc in par["official_attribute_accuracy_score"].items():
        if name not in colours:
            assert acc == pytest.approx(1.0)
    # Perfect predictions: a colour is wrong only for identities with no colour ("none").
    gallery = dataset.gallery.values[dataset.gallery.pids > 0]
    for name in colours:
        expected = np.mean(gallery[:, MARKET1501.index(name)] > 0)
        assert par["official_attribute_accuracy_score"][name] == pytest.approx(expected)
    assert par["label_mean_accuracy_score"] == pytest.approx(1.0)
    assert chance["label_mean_accuracy_score"] == 0.5
    assert 0 <= chance["official_accuracy_score"] <= 1
    assert set(par["label_accuracy_score"]) >= {"gender=female", "age=old", "upper.color=red"}
    json.dumps(m)
    text = format_report(m)
    assert "PAR official protocol (Lin et al.)" in text and "PAR label-based (" in text
    assert f"test gallery without junk and distractors ({par['num_images']} images)" in text
    assert "PAR hat" in text and "PAR mean" in text


def test_two_colour_identities_count_under_either_colour(tmp_path):
    """Identity 1 wears black or white trousers; its images look like identity 3 (white)."""
    root = make_tree(tmp_path / "d", DUKEMTMC, test_ids=(1, 3, 5))
    train = load_attribute_mat(root / "duke_attribute.mat")["train"]
    lower = DUKEMTMC.index("lower.color")
    values = np.ones((3, DUKEMTMC.num_attributes), dtype=np.int64)  # colours known (black)
    values[1, lower] = 2  # identity 3: white trousers
    values[2] = [0, 4, 0, 6, 0, 1, 0, 0, 1, 0]  # identity 5: far from both
    alt = np.full((3, 1, DUKEMTMC.num_attributes), -1)
    alt[0, 0, lower] = 2  # identity 1: black, or white
    test = AttributeTable(DUKEMTMC, np.array([1, 3, 5]), values, alt)
    save_attribute_mat(root / "duke_attribute.mat", {"train": train, "test": test})
    ds = read_dataset(root, "dukemtmc")
    assert (ds.gallery.alt_values[ds.gallery.pids == 1, 0, lower] == 2).all()
    plain = replace(
        ds,
        query=replace(ds.query, alt_values=None),
        gallery=replace(ds.gallery, alt_values=None),
    )

    rng = np.random.default_rng(5)
    protos = _prototypes(DUKEMTMC, 64, rng)

    def features(images):
        looks = images.sids.copy()
        looks[images.pids == 1] = ds.gallery.sids[ds.gallery.pids == 3][0]  # white trousers
        out = np.zeros((len(images), 5, 64), dtype=np.float32)
        for i, sid in enumerate(looks):
            for k, g in enumerate(GROUPS):
                out[i, k] = protos[g][sid[k]] * 4 + 0.01 * rng.normal(size=64)
        return out

    feats = EvalFeatures(features(ds.query), features(ds.gallery), protos)
    with_alt, without = evaluate_features(feats, ds), evaluate_features(feats, plain)
    official = with_alt["par"]["official_attribute_accuracy_score"]
    assert official["lower.color"] == 1.0  # white is accepted for identity 1
    assert without["par"]["official_attribute_accuracy_score"]["lower.color"] < 1.0
    assert with_alt["par"]["attribute_accuracy_score"]["lower.color"] < 1.0  # the paper's mA
    # APS: identity 1's images are relevant to identity 3's (white) query only with the
    # alternative, where they share the top of the ranking with identity 3's images.
    assert with_alt["aps"]["full"]["map_score"] > without["aps"]["full"]["map_score"]


def test_random_features_score_at_the_computed_chance_level(dataset):
    """Over many draws of random features (and prototypes) the mean reID / APS scores equal the
    exact chance levels the report computes, within 4 standard errors of the mean of the draws
    (a true chance level falls outside with probability ~6e-5 per metric)."""
    rng = np.random.default_rng(4)
    draws, chance = [], None
    for _ in range(150):
        feats = EvalFeatures(
            query=rng.normal(size=(len(dataset.query), 5, 16)).astype(np.float32),
            gallery=rng.normal(size=(len(dataset.gallery), 5, 16)).astype(np.float32),
            prototypes=_prototypes(MARKET1501, 16, rng),
        )
        m = evaluate_features(feats, dataset, chance=chance is None)
        chance = chance or m["chance"]
        draws.append(
            [m["reid"]["map_score"], m["reid"]["rank1_score"], m["aps"]["full"]["map_score"],
             m["aps"]["full"]["rank1_score"], m["par"]["mean_accuracy_score"]]
        )  # fmt: skip
    draws = np.array(draws)
    mean, se = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(len(draws))
    expected = [chance["reid"]["map_score"], chance["reid"]["rank1_score"],
                chance["aps"]["map_score"], chance["aps"]["rank1_score"]]  # fmt: skip
    for k, want in enumerate(expected):
        assert abs(mean[k] - want) < 4 * se[k], (k, mean[k], want, se[k])
    # The tolerance itself stays small: under 0.06, against chance levels of 0.16 - 0.29.
    assert (4 * se[:4] < 0.06).all(), (se, mean, expected)
    # PAR: with prototypes drawn afresh, the nearest one is a uniformly random SID, so the
    # expected mA is that of decoding a uniform SID of each attribute's group.
    truth = dataset.gallery.values[dataset.gallery.pids > 0]
    accs = []
    for j, attr in enumerate(MARKET1501.attributes):
        k = GROUPS.index(attr.group)
        sids = np.zeros((MARKET1501.num_sids[attr.group], 5), dtype=np.int64)
        sids[:, k] = np.arange(len(sids))
        decoded = MARKET1501.from_sids(sids)[:, j]
        accs.append(np.mean([(decoded == t).mean() for t in truth[:, j]]))
    assert abs(mean[4] - np.mean(accs)) < 4 * se[4], (mean[4], np.mean(accs), se[4])


def _without_cameras(images: ImageSet) -> ImageSet:
    camids = np.full(len(images), -1, dtype=np.int64)
    return replace(images, camids=camids)


def test_evaluation_without_cameras_removes_only_the_query_image_itself(dataset):
    # A camera-less dataset whose gallery also lists every query image (the same files).
    q, g = dataset.query, dataset.gallery
    gallery = ImageSet(
        g.paths + q.paths,
        np.concatenate([g.pids, q.pids]),
        np.full(len(g) + len(q), -1),
        np.concatenate([g.labels, q.labels]),
        np.concatenate([g.values, q.values]),
        g.schema,
    )
    data = replace(dataset, query=_without_cameras(q), gallery=gallery, cameras_known=False)
    rng = np.random.default_rng(5)
    protos = _prototypes(MARKET1501, 16, rng)
    query = _features(q, protos, rng, 1.0)
    feats = EvalFeatures(
        query=query,
        gallery=np.concatenate([_features(g, protos, rng, 1.0), query]),  # the same images
        prototypes=protos,
    )
    m = evaluate_features(feats, data)
    # Reference: each query against the gallery without its own image; nothing else removed.
    scores = embed_features(feats.query) @ embed_features(feats.gallery).T
    aps = []
    for i in range(len(q)):
        keep = (np.arange(len(gallery)) != len(g) + i) & (gallery.pids != -1)
        order = np.argsort(-scores[i, keep], kind="stable")
        hits = np.nonzero(gallery.pids[keep][order] == q.pids[i])[0] + 1
        aps.append(np.mean(np.arange(1, len(hits) + 1) / hits))
    assert m["reid"]["map_score"] == pytest.approx(np.mean(aps))
    assert m["reid"]["num_valid_queries"] == len(q)
    assert m["reid"]["protocol"] == NO_CAMERA_PROTOCOL
    report = format_report(m)
    assert "reID protocol: cameras unknown: only the query image itself" in report
    # With cameras the report says nothing of a protocol.
    with_cameras = EvalFeatures(query, feats.gallery[: len(g)], protos)
    assert "protocol" not in evaluate_features(with_cameras, dataset)["reid"]


def test_unknown_attribute_cells_are_left_out_of_aps_and_par(tmp_path):
    """A table dataset whose test identities have empty cells (docs/data.md: empty = unknown).

    Identity 3 has no hat value (its H SID is unknown), identity 5 no gender (I unknown). Every
    representation lies at the prototype of its SID with the unknown values read as 0, so a
    rule that judges only known groups scores 1.0 everywhere.
    """
    root = make_tree(tmp_path / "t", MARKET1501, test_ids=(1, 3, 5, 7, 9))
    write_table_dataset(read_dataset(root, "market1501"), root)
    rows = (root / "attributes.csv").read_text().splitlines()
    header = rows[0].split(",")
    for i, row in enumerate(rows):
        cells = row.split(",")
        if cells[0] in ("3", "5"):
            cells[header.index("hat" if cells[0] == "3" else "gender")] = ""
            rows[i] = ",".join(cells)
    (root / "attributes.csv").write_text("\n".join(rows) + "\n")
    data = read_table_dataset(root)
    ids = data.test_attributes.ids.tolist()
    assert data.test_attributes.sids[ids.index(3), 0] == -1
    assert data.test_attributes.sids[ids.index(5), 3] == -1

    rng = np.random.default_rng(6)
    protos = _prototypes(MARKET1501, 64, rng)

    def features(images):
        looks = MARKET1501.to_sids(np.maximum(images.values, 0))
        out = rng.normal(size=(len(images), 5, 64)).astype(np.float32)  # junk: random
        for i in np.nonzero(images.pids > 0)[0]:
            for k, g in enumerate(GROUPS):
                out[i, k] = protos[g][looks[i, k]] * 4 + 0.01 * rng.normal(size=64)
        return out

    feats = EvalFeatures(features(data.query), features(data.gallery), protos)
    m = evaluate_features(feats, data)
    full = m["aps"]["full"]
    assert full["num_queries"] == 5 and full["num_queries_without_unknown_groups"] == 3
    for name, a in m["aps"].items():
        assert a["map_score"] == pytest.approx(1.0), name
    assert m["aps"]["without_H"]["num_queries_without_unknown_groups"] == 4  # 5 still lacks I
    # PAR: the unknown cells are not scored, every known one is right.
    par = m["par"]
    assert par["mean_accuracy_score"] == pytest.approx(1.0)
    per_identity = (data.gallery.pids == 3).sum()
    assert par["num_labelled"]["hat"] == par["num_images"] - per_identity
    assert par["num_labelled"]["hair"] == par["num_images"]
    assert 0 < m["chance"]["aps"]["map_score"] < 1
    json.dumps(m)
    # The report gives each attribute its own count, not the image set's for every row.
    text = format_report(m)
    hat, n = par["num_labelled"]["hat"], par["num_images"]
    assert f"PAR hat ({hat} img)" in text and f"PAR hair ({n} img)" in text
    (fewer,) = [line for line in text.splitlines() if "scored on fewer images" in line]
    assert f"hat {hat}" in fewer and "hair" not in fewer


def test_search_and_eval_from_another_folder(written, monkeypatch):
    a = written / "a"
    monkeypatch.chdir(written / "b")
    query = next((a / "data" / "query").glob("*.jpg"))
    out = invoke(
        "search", "--index", "../a/g.index.npz", "--image", query, "-k", 3, "--json",
        "--figure", "ranks.png", "--device", "cpu",
    )  # fmt: skip
    rows = json.loads(out)["results"]
    assert len(rows) == 3 and all(Path(r["path"]).is_file() for r in rows)
    assert (written / "b" / "ranks.png").is_file()
    metrics_out = invoke(
        "eval", "--checkpoint", "../a/run/last.pt", "--device", "cpu", "--out", "m.json"
    )
    # The same metrics and report as evaluating in the folder the run was written from.
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(a)
        expected = evaluate_checkpoint(Path("run/last.pt"), device="cpu")
    got = json.loads((written / "b" / "m.json").read_text())
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)  # NaN == NaN
    assert format_report(expected) in metrics_out
    assert expected["reid"]["num_valid_queries"] == 3  # every query of make_tree's 3 test ids
    assert expected["par"]["num_images"] == 15  # 3 ids x 5 gallery images, junk left out
