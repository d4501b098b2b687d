"""Weights pairs (issue 13, part 5): safetensors + JSON, hash-checked, no pickle, offline."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from cerberus.checkpoints import (
    CHECKPOINT_VERSION,
    load_checkpoint,
    load_model_from_checkpoint,
    model_from_config,
    save_checkpoint,
)
from cerberus.config import config_from_dict
from cerberus.errors import CerberusError
from cerberus.export import export_weights
from cerberus.inference import InferenceModel, model_fingerprint
from cerberus.schema_files import MARKET1501
from cerberus.weights import pair_paths, read_weights_pair, sha256_hex, update_metadata

TINY = {
    "data": {"height": 64, "width": 32, "root": "data/x"},
    "model": {"backbone": "resnet18", "pretrained": False, "dim": 16},
}


def write_checkpoint(path: Path, seed: int = 0, root: Path | None = None, **meta) -> Path:
    """An untrained checkpoint as train writes it (built, not trained), data at ``root``."""
    raw = {k: dict(v) for k, v in TINY.items()}
    if root is not None:
        raw["data"]["root"] = str(root)
    cfg = config_from_dict(raw)
    torch.manual_seed(seed)
    model = model_from_config(cfg.model, MARKET1501, 4, load_weights=False)
    state = {
        "format": "cerberus",
        "version": CHECKPOINT_VERSION,
        "iteration": 7,
        "model": model.state_dict(),
        "optimizer": {},
        "rng": {"torch": torch.get_rng_state()},
        "config": cfg.to_dict(),
        "meta": {"schema": "market1501", "num_classes": 4, **meta},
    }
    save_checkpoint(state, path)
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("weights")
    ckpt = write_checkpoint(tmp / "last.pt", extra={"kept": [1, 2]})
    weights, meta = export_weights(ckpt, tmp / "model", metrics={"reid": {"map_score": 0.5}})
    return {"ckpt": ckpt, "weights": weights, "meta": meta, "tmp": tmp}


def test_pair_round_trips_the_model_and_its_metadata(pair):
    assert pair["weights"].name == "model.safetensors" and pair["meta"].name == "model.json"
    original, cfg, state = load_model_from_checkpoint(pair["ckpt"])
    for name in (pair["weights"], pair["meta"]):
        model, cfg2, state2 = load_model_from_checkpoint(name)
        assert model_fingerprint(model) == model_fingerprint(original)
        assert cfg2 == cfg and state2["meta"] == state["meta"]  # meta passed through as it is
    meta = json.loads(pair["meta"].read_text())
    assert meta["sha256"] == sha256_hex(pair["weights"].read_bytes())
    assert meta["input"]["height"] == 64 and len(meta["input"]["mean"]) == 3
    assert meta["training"]["iterations"] == 7 and meta["metrics"]["reid"]["map_score"] == 0.5
    assert meta["fingerprint"] == model_fingerprint(original)
    net = InferenceModel.from_checkpoint(pair["weights"], device="cpu")
    assert net.fingerprint == model_fingerprint(original) and net.height == 64


def test_tampered_weights_are_refused_in_one_line(pair, tmp_path):
    bad = tmp_path / "model.safetensors"
    data = bytearray(pair["weights"].read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    bad.write_bytes(bytes(data))
    (tmp_path / "model.json").write_bytes(pair["meta"].read_bytes())
    expected = json.loads(pair["meta"].read_text())["sha256"]
    with pytest.raises(CerberusError) as info:
        load_model_from_checkpoint(tmp_path / "model.json")
    message = str(info.value)
    assert "\n" not in message and str(bad) in message
    assert f"sha256 {sha256_hex(bytes(data))} does not match {expected}" in message


def test_loading_a_pair_never_unpickles_nor_goes_online(pair, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a pair must load without pickle or network")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr("urllib.request.urlopen", refuse)
    net = InferenceModel.from_checkpoint(pair["meta"], device="cpu")
    assert net.schema.name == "market1501"


def test_a_pickle_behind_a_matching_hash_is_not_run(pair, tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    payload = pickle.dumps(Boom())
    (tmp_path / "m.safetensors").write_bytes(payload)
    meta = json.loads(pair["meta"].read_text())
    meta.update(weights="m.safetensors", sha256=sha256_hex(payload))
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(CerberusError, match="m.safetensors: not a readable safetensors file"):
        read_weights_pair(tmp_path / "m.json")


@pytest.mark.parametrize(
    "change,names",
    [
        (lambda m: "{not json", ["model.json", "not readable JSON"]),
        (lambda m: {**m, "format": "other"}, ["not Cerberus weights metadata"]),
        (lambda m: {**m, "version": 9}, ["version 9"]),
        (lambda m: {**m, "weights": "../x.safetensors"}, ["'weights' must be a file name"]),
        (lambda m: {**m, "weights": "gone.safetensors"}, ["gone.safetensors: weights file"]),
        (lambda m: {**m, "sha256": "abc"}, ["'sha256' must be 64 hex digits"]),
        (lambda m: {k: v for k, v in m.items() if k != "config"}, ["no 'config' entry"]),
    ],
)
def test_bad_metadata_is_one_line(pair, tmp_path, change, names):
    (tmp_path / "model.safetensors").write_bytes(pair["weights"].read_bytes())
    new = change(json.loads(pair["meta"].read_text()))
    (tmp_path / "model.json").write_text(new if isinstance(new, str) else json.dumps(new))
    with pytest.raises(CerberusError) as info:
        load_checkpoint(tmp_path / "model.safetensors")
    assert "\n" not in str(info.value)
    for name in names:
        assert name in str(info.value)


def test_missing_metadata_names_the_pair(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"")
    with pytest.raises(CerberusError, match=r"w.json: weights metadata not found"):
        load_checkpoint(tmp_path / "w.safetensors")


def test_metadata_updates_keep_the_weights_valid(pair, tmp_path):
    for p in pair_paths(pair["meta"]):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    update_metadata(tmp_path / "model.json", "calibration", {"points": []})
    tensors, meta = read_weights_pair(tmp_path / "model.safetensors")
    assert meta["meta"]["calibration"] == {"points": []} and meta["meta"]["extra"]["kept"] == [1, 2]


def test_export_refuses_to_overwrite_its_source(pair):
    with pytest.raises(CerberusError, match="would overwrite the checkpoint"):
        export_weights(pair["meta"], pair["meta"])
