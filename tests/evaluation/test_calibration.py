"""Calibration and verification: thresholds against brute force, stored
operating points, and calibrate / verify / search through the command line."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cerberus.attributes.schema_files import MARKET1501
from cerberus.data.datasets import ImageSet, read_dataset
from cerberus.errors import CerberusError
from cerberus.evaluation.calibration import (
    calibrate_features,
    identity_halves,
    labelled_split,
    operating_point,
    store_calibration,
    verdict,
)
from cerberus.evaluation.figures import roc_figure
from cerberus.files import same_file_key
from cerberus.inference.embed import InferenceModel
from cerberus.inference.export import export_weights
from tests.conftest import make_tree
from tests.evaluation.metrics.test_verification import brute_force_threshold
from tests.training.test_weights import write_checkpoint


def identity_features(pids: np.ndarray, seed: int = 0, d: int = 8) -> np.ndarray:
    """``(N, 5, d)`` features: an identity's mean per group plus noise."""
    rng = np.random.default_rng(seed)
    centres = {p: rng.normal(size=(5, d)) for p in np.unique(pids)}
    return np.stack([centres[p] + rng.normal(size=(5, d)) for p in pids]).astype(np.float32)


def mean_part_cosine(x: np.ndarray, y: np.ndarray) -> float:
    return float(
        np.mean([x[g] @ y[g] / np.linalg.norm(x[g]) / np.linalg.norm(y[g]) for g in range(5)])
    )


def test_calibration_thresholds_match_brute_force_on_all_pairs():
    pids = np.repeat(np.arange(12), 5)
    feats = identity_features(pids)
    cal, (fpr, tpr) = calibrate_features(feats, pids, fprs=(0.1, 0.01, 0.001), chosen_fpr=0.01)
    pairs = list(combinations(range(len(pids)), 2))
    scores = np.array([mean_part_cosine(feats[i], feats[j]) for i, j in pairs])
    same = np.array([pids[i] == pids[j] for i, j in pairs])
    assert not cal["sampled"] and cal["num_same_pairs"] == same.sum() == 12 * 10
    assert cal["num_different_pairs"] == (~same).sum()
    assert [p["fpr_target"] for p in cal["points"]] == [0.1, 0.01, 0.001]
    for p in cal["points"]:
        t, r, f = brute_force_threshold(scores, same, p["fpr_target"])
        assert p["threshold"] == pytest.approx(t, abs=1e-6)
        assert p["tpr"] == pytest.approx(r, abs=1 / same.sum()) and p["fpr"] <= p["fpr_target"]
    assert operating_point(cal)["fpr_target"] == 0.01
    assert operating_point(cal, 0.1)["threshold"] < operating_point(cal, 0.001)["threshold"]
    with pytest.raises(CerberusError, match="--fpr 0.5: not calibrated"):
        operating_point(cal, 0.5)


def test_sampled_calibration_is_seeded_and_keeps_every_same_pair():
    pids = np.repeat(np.arange(30), 4)  # 7140 pairs, 180 same
    feats = identity_features(pids, seed=1)
    a, _ = calibrate_features(feats, pids, max_pairs=2000, seed=3)
    b, _ = calibrate_features(feats, pids, max_pairs=2000, seed=3)
    assert a == b and a["sampled"] and a["num_same_pairs"] == 180
    assert a["num_same_pairs"] + a["num_different_pairs"] == 2000
    full, _ = calibrate_features(feats, pids)
    assert abs(a["points"][0]["threshold"] - full["points"][0]["threshold"]) < 0.1


def _brute_force_rates(scores, same, t):
    pos = [x for x, m in zip(scores, same) if m]
    neg = [x for x, m in zip(scores, same) if not m]
    return sum(x > t for x in pos) / len(pos), sum(x > t for x in neg) / len(neg)


@pytest.mark.parametrize("seed", [0, 5])
def test_heldout_thresholds_are_chosen_on_other_identities(seed):
    pids = np.repeat(np.arange(100, 114), 4)  # 14 identities
    feats = identity_features(pids, seed=seed + 2)
    cal, _ = calibrate_features(feats, pids, fprs=(0.1, 0.02), chosen_fpr=0.02, seed=seed)
    held = cal["heldout"]
    half = identity_halves(pids, seed)
    assert held["num_identities"] == [7, 7] and held["seed"] == seed
    assert not set(pids[half]) & set(pids[~half])  # identity-disjoint
    assert half.tolist() != identity_halves(pids, seed + 1).tolist()  # seeded
    parts = []
    for part in (half, ~half):
        idx = np.nonzero(part)[0]
        pairs = list(combinations(idx, 2))
        scores = np.array([mean_part_cosine(feats[i], feats[j]) for i, j in pairs])
        parts.append((scores, np.array([pids[i] == pids[j] for i, j in pairs])))
    for k, fold in enumerate(held["folds"]):
        (choose, choose_same), (report, report_same) = parts[k], parts[1 - k]
        for p in fold["points"]:
            t, _, _ = brute_force_threshold(choose, choose_same, p["fpr_target"])
            assert p["threshold"] == pytest.approx(t, abs=1e-6)
            tpr, fpr = _brute_force_rates(report, report_same, p["threshold"])
            assert p["tpr"] == pytest.approx(tpr, abs=1e-9)
            assert p["fpr"] == pytest.approx(fpr, abs=1e-9)
    for k, p in enumerate(held["points"]):
        a, b = held["folds"][0]["points"][k], held["folds"][1]["points"][k]
        assert p["fpr_target"] == cal["points"][k]["fpr_target"]
        assert p["tpr"] == pytest.approx((a["tpr"] + b["tpr"]) / 2)
        assert p["fpr"] == pytest.approx((a["fpr"] + b["fpr"]) / 2)
    # The in-sample FPR never exceeds its target; the held-out one is measured, not promised.
    assert all(p["fpr"] <= p["fpr_target"] for p in cal["points"])
    assert any(p["fpr"] != q["fpr"] for p, q in zip(held["points"], cal["points"]))


def test_heldout_estimate_needs_two_identities_per_half():
    pids = np.repeat(np.arange(3), 4)
    cal, _ = calibrate_features(identity_features(pids), pids)
    assert "too few for two halves" in cal["heldout"]["skipped"]
    assert "points" not in cal["heldout"] and len(cal["points"]) == 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("calibrate")
    tree = make_tree(tmp / "m", MARKET1501, test_ids=(1, 3, 5, 7), size=(64, 32))
    yield {"tree": tree, "ckpt": write_checkpoint(tmp / "last.pt", root=tree), "tmp": tmp}
    shutil.rmtree(tmp, ignore_errors=True)  # a model is ~250 MB: free it with the module


def test_labelled_split_drops_junk_and_distractors(setup):
    dataset = read_dataset(setup["tree"])
    test = labelled_split(dataset, "test")
    n = len(dataset.query) + int((dataset.gallery.pids > 0).sum())
    assert len(test) == n and (test.pids > 0).all()
    with pytest.raises(CerberusError, match="--split 'val'"):
        labelled_split(dataset, "val")


def test_an_image_listed_twice_is_never_paired_with_itself(setup):
    """Without cameras a query file may also be a gallery image (spelled another way here)."""
    dataset = read_dataset(setup["tree"])
    q, g = dataset.query, dataset.gallery
    again = tuple(p.parent / ".." / p.parent.name / p.name for p in q.paths)
    gallery = ImageSet(
        g.paths + again,
        np.concatenate([g.pids, q.pids]),
        np.full(len(g) + len(q), -1),
        np.concatenate([g.labels, q.labels]),
        np.concatenate([g.values, q.values]),
        g.schema,
    )
    data = replace(dataset, gallery=gallery, cameras_known=False)
    test = labelled_split(data, "test")
    assert len(test) == len(q) + int((g.pids > 0).sum())
    assert len({same_file_key(p) for p in test.paths}) == len(test)
    cal, _ = calibrate_features(identity_features(test.pids), test.pids)
    counts = np.unique(test.pids, return_counts=True)[1]
    assert cal["num_same_pairs"] == int((counts * (counts - 1) // 2).sum())


def test_stored_calibration_belongs_to_its_weights(setup, tmp_path, caplog):
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(setup["ckpt"].read_bytes())
    net = InferenceModel.from_checkpoint(ckpt, device="cpu")
    assert net.calibration is None
    cal = {"points": [{"fpr_target": 0.01, "threshold": 0.5, "tpr": 0.9}], "chosen_fpr": 0.01}
    store_calibration(ckpt, {**cal, "fingerprint": net.fingerprint})
    assert InferenceModel.from_checkpoint(ckpt, device="cpu").calibration["chosen_fpr"] == 0.01
    weights, meta = export_weights(ckpt, tmp_path / "w.safetensors")  # travels with the pair
    assert InferenceModel.from_checkpoint(meta, device="cpu").calibration is not None
    store_calibration(weights, {**cal, "fingerprint": "other"})  # made with other weights
    assert InferenceModel.from_checkpoint(weights, device="cpu").calibration is None
    assert "made with other weights" in caplog.text
    assert verdict(0.51, cal["points"][0]) and not verdict(0.5, cal["points"][0])


def test_roc_figure_is_a_png(tmp_path):
    fpr = np.array([0, 0.001, 0.01, 0.5, 1.0])
    tpr = np.array([0, 0.4, 0.7, 0.95, 1.0])
    points = [{"fpr_target": 0.01, "fpr": 0.01, "tpr": 0.7, "threshold": 0.61}]
    path = roc_figure(tmp_path / "roc.png", fpr, tpr, points, title="t", chosen_fpr=0.01)
    assert Image.open(path).size[0] > 500


# --------------------------------------------------------------------------- command line


def test_calibrate_verify_search_with_checkpoint_and_pair(setup, cli, tmp_path):
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(setup["ckpt"].read_bytes())
    query = sorted((setup["tree"] / "query").glob("*.jpg"))
    a, b = query[0], query[1]

    code, out, err = cli("verify", a, b, "--checkpoint", ckpt, "--device", "cpu")
    assert code == 0 and "no calibrated threshold" in out and "cerberus calibrate" in out

    args = ["--checkpoint", ckpt, "--workers", "0", "--device", "cpu", "--fprs", "0.1,0.01"]
    code, out, err = cli("calibrate", *args, "--fpr", "0.1", "--out", tmp_path / "cal.json")
    assert code == 0, err
    cal = json.loads((tmp_path / "cal.json").read_text())
    assert "(all pairs)" in out and f"stored in {ckpt}" in out
    # In-sample and held-out figures, on screen and in the JSON.
    assert "held-out TPR" in out and "held-out FPR" in out
    assert "identities split into two seeded halves" in out and "(2 / 2 identities" in out
    held = cal["heldout"]["points"]
    assert [p["fpr_target"] for p in held] == [p["fpr_target"] for p in cal["points"]]
    row = next(line for line in out.splitlines() if line.strip().startswith("1e-01"))
    assert row.split()[-2:] == [f"{100 * held[0]['tpr']:.1f}%", f"{held[0]['fpr']:.2e}"]
    assert Image.open(tmp_path / "last_roc_test.png").size[0] > 500
    point = operating_point(cal)
    assert point["fpr_target"] == 0.1

    code, out, err = cli("verify", a, b, "--checkpoint", ckpt, "--device", "cpu", "--json")
    found = json.loads(out)
    assert found["operating_point"] == point
    assert found["same_person"] == (found["similarity"] > point["threshold"])
    assert found["calibrated_on"] == f"the test split of {setup['tree'].resolve()}"
    code, out, err = cli("verify", a, a, "--checkpoint", ckpt, "--device", "cpu")
    assert out.startswith("same person: similarity 1.0000 > threshold")
    assert "at FPR 1e-01" in out
    assert out.strip().endswith(f"calibrated on the test split of {setup['tree'].resolve()}")

    # the pair carries the calibration; search and verify need nothing else
    weights, meta = export_weights(ckpt, tmp_path / "pair" / "model.safetensors")
    code, out, err = cli("verify", a, b, "--checkpoint", weights, "--fpr", "0.01", "--json")
    assert json.loads(out)["operating_point"] == operating_point(cal, 0.01)
    feats, index = tmp_path / "g.npz", tmp_path / "g.index.npz"
    gallery = setup["tree"] / "bounding_box_test"
    code, out, err = cli(
        "extract", "--checkpoint", meta, "--images", gallery, "--out", feats, "--workers", "0"
    )
    assert code == 0, err
    assert cli("index", "--features", feats, "--out", index)[0] == 0
    code, out, err = cli("search", "--index", index, "--image", a, "-k", "3", "--json")
    rows = json.loads(out)["results"]
    assert [r["same_person"] for r in rows] == [r["score"] > point["threshold"] for r in rows]
    code, out, err = cli("search", "--index", index, "--image", a, "-k", "3")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["rank", "score", "item", "person", "cam", "ok", "same", "path"]
    assert lines[-1].startswith("same person if score > threshold")
    code, out, err = cli("describe", "--checkpoint", weights, a)
    assert code == 0 and out.startswith(f"{a}: ")

    # tampering with the weights: one line, exit code 2
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, out, err = cli("verify", a, b, "--checkpoint", weights)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{weights}: sha256" in err and "does not match" in err


def test_calibration_errors_are_one_line(setup, cli, tmp_path):
    a = sorted((setup["tree"] / "query").glob("*.jpg"))[0]
    code, out, err = cli("verify", a, "--checkpoint", setup["ckpt"])
    assert code == 2 and "verify takes two images, got 1" in err
    code, out, err = cli("verify", a, a, "--checkpoint", setup["ckpt"], "--fpr", "0.01")
    assert code == 2 and "has no calibration" in err
    code, out, err = cli("calibrate", "--checkpoint", setup["ckpt"], "--fprs", "x")
    assert code == 2 and "--fprs 'x': expected comma-separated numbers" in err
    code, out, err = cli("calibrate", "--checkpoint", setup["ckpt"], "--fprs", "0.1,2")
    assert code == 2 and "--fprs 2: must be between 0 and 1" in err
