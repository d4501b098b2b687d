"""The search layer (issue 20) and its issue 21 behaviour: a gallery item is left out of its own
results, predicted groups say how sure they are, every verdict names the data its threshold was
calibrated on, and ``verify`` names every unreadable input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import MARKET1501
from cerberus.evaluation.calibration import store_calibration
from cerberus.inference.features import FeatureSet
from cerberus.inference.scoring import WEAK_CERTAINTY, describe_features, l2_normalize
from cerberus.search import Gallery, load_model
from cerberus.store.npz import NpzStore
from cerberus.web.app import create_app


@pytest.fixture(scope="module")
def gallery(tiny_index) -> Gallery:
    return Gallery.open(tiny_index["index"], tiny_index["ckpt"], device="cpu")


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_a_gallery_item_is_left_out_of_its_own_results(gallery, tiny_index, kind):
    """Issue 21: querying with item i returned i itself at rank 1, score 1.0, "same person".
    The IVF index keeps no vectors: its item query embeds the crop again, same rule."""
    store = gallery.store
    if kind == "ivf":
        store = NpzStore.build(FeatureSet.load(tiny_index["features"]), kind="ivf", nlist=2)
    search = Gallery(store, gallery.net)
    index = store.index
    n = len(index)
    for item in (0, n // 2, n - 1):
        found = search.by_item(item, k=n)
        paths = [r["path"] for r in found.rows]
        assert index.paths[item] not in paths and len(paths) == n - 1
        assert [r["rank"] for r in found.rows] == list(range(1, n))
        assert found.excluded == item
        by_file = search.by_image(index.paths[item], k=n).rows
        assert [r["path"] for r in by_file if r["path"] != index.paths[item]] == paths
    assert len(search.by_item(1, k=3).rows) == 3


def test_certainty_marks_weak_groups():
    """Issue 21: each predicted group says how sure it is (the probability of its SID among
    the group's SIDs at the model's scale) and groups under 0.5 are marked weak."""
    rng = np.random.default_rng(3)
    d = 8
    protos = {g: l2_normalize(rng.normal(size=(MARKET1501.codecs[g].num_sids, d))) for g in GROUPS}
    sure = np.stack([protos[g][1] for g in GROUPS])  # every part on a prototype
    torn = np.stack([protos[g][0] + protos[g][1] for g in GROUPS])  # halfway between two
    a, b = describe_features(np.stack([sure, torn]), protos, MARKET1501, scale=30.0)
    for g in GROUPS:
        assert a["certainty"][g] > 0.5 and b["certainty"][g] <= 0.5 + 1e-6
        assert 0 < b["certainty"][g] <= a["certainty"][g] <= 1
    assert a["weak"] == [] and b["weak"] == list(GROUPS)
    flat = describe_features(np.stack([sure]), protos, MARKET1501, scale=1e-3)[0]
    assert flat["weak"] == list(GROUPS)  # a softmax at a tiny scale is sure of nothing
    assert WEAK_CERTAINTY == 0.5


def test_describe_command_shows_how_sure_each_group_is(tiny_index, cli):
    query = tiny_index["query"]
    code, out, err = cli("describe", "--checkpoint", tiny_index["ckpt"], query, "--device", "cpu")
    assert code == 0, err
    first, second = out.strip().splitlines()
    assert first.startswith(f"{query}: ")
    assert second.startswith("  how sure, per group: head ")
    code, out, _ = cli("describe", "--checkpoint", tiny_index["ckpt"], query, "--json")
    said = json.loads(out)[0]
    weak = [g for g, p in said["certainty"].items() if p < 0.5]
    assert said["weak"] == weak and second.count("(weak)") == len(weak)


@pytest.fixture(scope="module")
def calibrated(tiny_index, tmp_path_factory):
    """A copy of the tiny checkpoint with a calibration stored as ``calibrate`` stores it."""
    tmp = tmp_path_factory.mktemp("calibrated")
    ckpt = tmp / "last.pt"
    shutil.copy(tiny_index["ckpt"], ckpt)
    net = load_model(ckpt, device="cpu")
    point = {"fpr_target": 1e-2, "threshold": 0.5, "tpr": 0.9, "fpr": 0.01, "resolved": True}
    cal = {
        "chosen_fpr": 1e-2,
        "points": [point],
        "split": "query",
        "data": "/datasets/synthetic-v2",
        "num_different_pairs": 900,
        "fingerprint": net.fingerprint,
    }
    store_calibration(ckpt, cal)
    return {"ckpt": ckpt, "net": load_model(ckpt, device="cpu", num_workers=0)}


def test_every_verdict_names_its_calibration_data(calibrated, tiny_index, cli):
    """Issue 21: a "same person" verdict says which data its threshold was calibrated on:
    beside each verdict on the page, in the CLI's verify line and search footer, in JSON."""
    source = "the query split of /datasets/synthetic-v2"
    ckpt, query = calibrated["ckpt"], tiny_index["query"]
    other = sorted((tiny_index["data"] / "bounding_box_test").glob("*.jpg"))[0]
    code, out, err = cli("verify", query, other, "--checkpoint", ckpt, "--device", "cpu")
    assert code == 0, err
    assert out.strip().endswith(f"calibrated on {source}")
    code, out, _ = cli("verify", query, other, "--checkpoint", ckpt, "--json")
    assert json.loads(out)["calibrated_on"] == source
    args = ["search", "--index", tiny_index["index"], "--checkpoint", ckpt, "--image", query]
    code, out, err = cli(*args, "-k", "3")
    assert code == 0, err
    assert out.strip().splitlines()[-1].endswith(f"calibrated on {source}")
    code, out, _ = cli(*args, "-k", "3", "--json")
    body = json.loads(out)
    assert body["calibrated_on"] == source
    assert [r["calibrated_on"] for r in body["results"]] == [source] * 3

    gallery = NpzStore.load(tiny_index["index"])
    with TestClient(create_app(gallery, calibrated["net"])) as client:
        for data in ({"gallery_id": 2, "k": 4}, {"k": 4}):
            files = None if "gallery_id" in data else {"image": ("q.jpg", query.read_bytes())}
            r = client.post("/api/search/image", data=data, files=files)
            assert r.status_code == 200, r.text
            point, rows = r.json()["operating_point"], r.json()["results"]
            assert point["calibrated_on"] == "the query split of synthetic-v2"  # no server path
            assert point["text"].endswith("calibrated on the query split of synthetic-v2")
            assert all(row["calibrated_on"] == point["calibrated_on"] for row in rows)
            assert all(row["same_person"] == (row["score"] > 0.5) for row in rows)
    # an uncalibrated model: no verdict, no source
    plain = dataclasses.replace(calibrated["net"], calibration=None)
    with TestClient(create_app(gallery, plain)) as client:
        rows = client.post("/api/search/image", data={"gallery_id": 2, "k": 2}).json()["results"]
    assert [(r["same_person"], r["calibrated_on"]) for r in rows] == [(None, None)] * 2


def test_page_says_the_clicked_crop_is_left_out_and_shows_certainty():
    from cerberus.web.app import web_folder

    script = (web_folder() / "app.js").read_text(encoding="utf-8")
    page = (web_folder() / "index.html").read_text(encoding="utf-8")
    assert "left out of its own results" in script and "left out of its own results" in page
    assert "query.groups" in script and "(weak)" in script and "row.calibrated_on" in script


def test_verify_names_every_unreadable_input(tiny_index, cli, tmp_path):
    """Issue 21: two unreadable images named only the first; a folder was "image not found"."""
    ckpt = tiny_index["ckpt"]
    a, b = tmp_path / "a.jpg", tmp_path / "b.png"
    a.write_bytes(b"not an image")
    b.write_bytes(b"")
    code, _, err = cli("verify", a, b, "--checkpoint", ckpt, "--device", "cpu")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(a) in lines[0] and str(b) in lines[0]
    assert lines[0].count("unreadable image") == 2
    folder = tmp_path / "crops"
    folder.mkdir()
    code, _, err = cli("verify", folder, tmp_path / "gone.jpg", "--checkpoint", ckpt)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{folder}: is a folder, not an image" in err
    assert f"{tmp_path / 'gone.jpg'}: image not found" in err
    good = tiny_index["query"]
    code, _, err = cli("verify", good, folder, "--checkpoint", ckpt)
    assert code == 2 and "is a folder, not an image" in err and str(good) not in err
    Image.new("RGB", (8, 16)).save(tmp_path / "ok.png")
    code, out, _ = cli("verify", good, tmp_path / "ok.png", "--checkpoint", ckpt)
    assert code == 0 and out.startswith("similarity ")
