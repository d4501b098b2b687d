"""Same-person verdicts: each names the data its threshold was calibrated on, in the
CLI, its JSON and the page's API."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from cerberus.evaluation.calibration import store_calibration
from cerberus.search import load_model
from cerberus.store.npz import NpzStore
from cerberus.web.app import create_app
from tests.web import local_client


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
    yield {"ckpt": ckpt, "net": load_model(ckpt, device="cpu", num_workers=0)}
    shutil.rmtree(tmp, ignore_errors=True)  # a model is ~250 MB: free it with the module


def test_every_verdict_names_its_calibration_data(calibrated, tiny_index, cli):
    """A "same person" verdict says which data its threshold was calibrated on:
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
    with local_client(create_app(gallery, calibrated["net"])) as client:
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
    with local_client(create_app(gallery, plain)) as client:
        rows = client.post("/api/search/image", data={"gallery_id": 2, "k": 2}).json()["results"]
    assert [(r["same_person"], r["calibrated_on"]) for r in rows] == [(None, None)] * 2
