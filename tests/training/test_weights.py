"""Weights pairs: safetensors + JSON, hash-checked, no pickle, offline."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from cerberus.attributes.schema_files import MARKET1501
from cerberus.config import config_from_dict
from cerberus.errors import CerberusError
from cerberus.inference.embed import InferenceModel
from cerberus.inference.export import export_weights
from cerberus.inference.loading import load_model, model_fingerprint
from cerberus.training.checkpoints import (
    CHECKPOINT_VERSION,
    load_checkpoint,
    model_from_config,
    save_checkpoint,
)
from cerberus.training.weights import pair_paths, read_weights_pair, sha256_hex, update_metadata

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
    yield {"ckpt": ckpt, "weights": weights, "meta": meta, "tmp": tmp}
    shutil.rmtree(tmp, ignore_errors=True)  # a model is ~250 MB: free it with the module


def test_pair_round_trips_the_model_and_its_metadata(pair):
    assert pair["weights"].name == "model.safetensors" and pair["meta"].name == "model.json"
    original = load_model(pair["ckpt"])
    for name in (pair["weights"], pair["meta"]):
        loaded = load_model(name)
        assert model_fingerprint(loaded.model) == model_fingerprint(original.model)
        assert loaded.config == original.config
        assert loaded.meta == original.meta  # meta passed through as it is
    meta = json.loads(pair["meta"].read_text())
    assert meta["sha256"] == sha256_hex(pair["weights"].read_bytes())
    assert meta["input"]["height"] == 64 and len(meta["input"]["mean"]) == 3
    assert meta["training"]["iterations"] == 7 and meta["metrics"]["reid"]["map_score"] == 0.5
    assert meta["fingerprint"] == original.fingerprint
    net = InferenceModel.from_checkpoint(pair["weights"], device="cpu")
    assert net.fingerprint == original.fingerprint and net.height == 64


def test_tampered_weights_are_refused_in_one_line(pair, tmp_path):
    bad = tmp_path / "model.safetensors"
    data = bytearray(pair["weights"].read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    bad.write_bytes(bytes(data))
    (tmp_path / "model.json").write_bytes(pair["meta"].read_bytes())
    expected = json.loads(pair["meta"].read_text())["sha256"]
    with pytest.raises(CerberusError) as info:
        load_model(tmp_path / "model.json")
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


def copy_pair(pair, folder: Path, stem: str = "model", suffix: str = ".safetensors") -> Path:
    """The fixture's pair copied into ``folder`` as ``stem + suffix`` and ``stem.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}{suffix}").write_bytes(pair["weights"].read_bytes())
    (folder / f"{stem}.json").write_bytes(pair["meta"].read_bytes())
    return folder / f"{stem}.json"


def edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta, indent=2))


@pytest.mark.parametrize(
    "field, change",
    [
        ("meta.schema", lambda m: m["meta"].update(schema="dukemtmc")),
        ("config.data.height", lambda m: m["config"]["data"].update(height=96)),
        ("config.eval.flip_test", lambda m: m["config"]["eval"].update(flip_test=True)),
        ("input.height", lambda m: m["input"].update(height=96)),
        ("meta.calibration", lambda m: m["meta"].update(calibration={"points": []})),
    ],
)
def test_metadata_that_decides_outputs_is_hash_checked(pair, tmp_path, field, change):
    """The JSON's schema, config and input decide what the model outputs; an edit by
    hand is refused in one line naming the file, like a changed weights file."""
    meta = copy_pair(pair, tmp_path)
    edit_json(meta, change)
    with pytest.raises(CerberusError) as info:
        load_model(meta)
    message = str(info.value)
    assert "\n" not in message and str(meta) in message and "metadata_sha256" in message


def test_a_schema_with_swapped_values_is_refused(pair, tmp_path):
    """Swapping two values of an attribute in the stored schema would flip what ``describe``
    answers (values are read by position): refused, while the same schema unswapped loads."""
    from cerberus.attributes.schema_files import MARKET1501
    from cerberus.training.weights import metadata_sha256, write_metadata

    meta = copy_pair(pair, tmp_path)
    raw = json.loads(meta.read_text())
    raw["meta"]["schema"] = MARKET1501.to_dict()  # the full schema, as train stores it
    write_metadata(meta, raw)
    assert load_checkpoint(meta)["meta"]["schema"]["name"] == "market1501"
    raw = json.loads(meta.read_text())
    assert raw["metadata_sha256"] == metadata_sha256(raw)
    gender = next(a for a in raw["meta"]["schema"]["attributes"] if a["name"] == "gender")
    gender["values"].reverse()
    if "phrases" in gender:
        gender["phrases"].reverse()
    meta.write_text(json.dumps(raw, indent=2))
    with pytest.raises(CerberusError, match="model.json: its config, meta, input entries"):
        load_checkpoint(meta)


def test_input_contradicting_config_is_refused_even_with_a_matching_hash(pair, tmp_path):
    """The ``input`` entry is cross-checked with ``config`` (the model runs as the config says):
    a contradiction is one line naming the field, even when the hash was recomputed."""
    from cerberus.training.weights import write_metadata

    meta = copy_pair(pair, tmp_path)
    raw = json.loads(meta.read_text())
    raw["input"]["height"] = 96  # config.data.height is 64
    write_metadata(meta, raw)  # a consistent hash over the contradiction
    with pytest.raises(CerberusError) as info:
        load_checkpoint(meta)
    message = str(info.value)
    assert str(meta) in message and "input.height is 96" in message
    assert "config.data.height gives 64" in message and "\n" not in message


@pytest.mark.parametrize("named", ["y.json", "y.safetensors"])
def test_a_pair_renamed_consistently_loads(pair, tmp_path, named):
    """``y.safetensors`` + ``y.json`` (renamed from ``model``) load: the partner is
    found by the pair's own stem and checked by hash, not by the name recorded at export."""
    copy_pair(pair, tmp_path, stem="y")
    original = load_model(pair["ckpt"])
    assert load_model(tmp_path / named).fingerprint == original.fingerprint


def test_a_partner_of_other_weights_is_refused_by_hash(pair, tmp_path):
    other = write_checkpoint(tmp_path / "other.pt", seed=1)
    export_weights(other, tmp_path / "other")
    copy_pair(pair, tmp_path / "y", stem="y")
    (tmp_path / "y" / "y.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes())
    with pytest.raises(CerberusError, match=r"y.safetensors: sha256 .* does not match"):
        load_checkpoint(tmp_path / "y" / "y.json")


def test_only_the_json_renamed_still_finds_the_recorded_weights(pair, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(pair["weights"].read_bytes())
    (tmp_path / "renamed.json").write_bytes(pair["meta"].read_bytes())
    tensors, _ = read_weights_pair(tmp_path / "renamed.json")
    assert tensors
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CerberusError) as info:
        read_weights_pair(tmp_path / "renamed.json")
    assert "renamed.safetensors: weights file not found" in str(info.value)
    assert "model.safetensors" in str(info.value)


def test_safetensors_renamed_pt_is_read_as_weights(pair, tmp_path):
    """The format is told by the content (a safetensors header), not by the suffix:
    ``y.pt`` holding safetensors + ``y.json`` loads, and is never called a pickle."""
    from cerberus.training.weights import is_safetensors

    copy_pair(pair, tmp_path, stem="y", suffix=".pt")
    assert is_safetensors(tmp_path / "y.pt") and not is_safetensors(pair["ckpt"])
    state = load_checkpoint(tmp_path / "y.pt")
    assert state["weights_metadata"]["sha256"] == sha256_hex((tmp_path / "y.pt").read_bytes())
    net = InferenceModel.from_checkpoint(tmp_path / "y.pt", device="cpu")
    assert net.schema.name == "market1501"
    (tmp_path / "y.json").unlink()
    with pytest.raises(CerberusError, match=r"y.json: weights metadata not found"):
        load_checkpoint(tmp_path / "y.pt")


def test_a_checkpoint_is_still_a_checkpoint_whatever_its_name(pair, tmp_path):
    renamed = tmp_path / "c.bin"
    renamed.write_bytes(pair["ckpt"].read_bytes())
    assert load_checkpoint(renamed)["iteration"] == 7


def test_json_with_a_byte_order_mark_is_read(pair, tmp_path):
    """JSON saved by an editor with a UTF-8 BOM is accepted."""
    meta = copy_pair(pair, tmp_path)
    meta.write_bytes(b"\xef\xbb\xbf" + pair["meta"].read_bytes())
    tensors, raw = read_weights_pair(meta)
    assert tensors and raw["format"] == "cerberus-weights"


def test_export_metrics_json_with_a_byte_order_mark(pair, tmp_path, cli):
    metrics = tmp_path / "metrics.json"
    metrics.write_bytes(b"\xef\xbb\xbf" + json.dumps({"reid": {"map_score": 0.25}}).encode())
    code, out, err = cli(
        "export",
        "--checkpoint",
        pair["ckpt"],
        "--out",
        tmp_path / "bom.safetensors",
        "--metrics",
        metrics,
    )
    assert code == 0, err
    assert json.loads((tmp_path / "bom.json").read_text())["metrics"]["reid"]["map_score"] == 0.25
