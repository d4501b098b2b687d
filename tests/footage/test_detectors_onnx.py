"""ONNX detectors (cerberus.footage.detectors.onnx): tiny graphs with a fixed output pin the
decoding of each family, the letterbox, the score threshold, NMS and the class filter."""

from __future__ import annotations

import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cerberus.errors import CerberusError  # noqa: E402
from cerberus.footage.detectors.onnx import (  # noqa: E402
    OnnxDetector,
    grid_centres,
    grid_count,
    letterbox,
)
from cerberus.footage.video import Frame  # noqa: E402


def fixed_model(
    path,
    output: np.ndarray,
    *,
    size=(64, 64),
    exp: bool = False,
    metadata: dict[str, str] | None = None,
    extra_input: bool = False,
):
    """An ONNX graph ``images (1, 3, H, W) -> out``: ``output`` whatever the image (``0 *`` the
    image's sum is added so the input is used; ``exp``: multiplied by ``exp(0)``, the node YOLOX's
    decoding adds). ``size`` ``None``: a dynamic input."""
    dims = ["batch", 3, "height", "width"] if size is None else [1, 3, *size]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("sizes", TensorProto.INT64, [1, 2]))
    value = numpy_helper.from_array(np.asarray(output, np.float32), "value")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["value", "nothing"], ["sum" if exp else "out"]),
    ]
    if exp:
        nodes += [
            helper.make_node("Exp", ["zero"], ["one"]),
            helper.make_node("Mul", ["sum", "one"], ["out"]),
        ]
    graph = helper.make_graph(
        nodes,
        "fixed",
        inputs,
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(np.shape(output)))],
        initializer=[value, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, text in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, text
    onnx.save(model, str(path))
    return path


def frame(width=200, height=100, colour=(200, 10, 50)) -> Frame:
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = colour
    return Frame(1, 0.0, float("nan"), image)


def v8_output(rows: list[tuple], classes: int = 3, n: int | None = None, size=(64, 64)):
    """``(1, 4 + classes, N)``: ``rows`` of ``(cx, cy, w, h, class, score)`` first, the rest 0."""
    n = n or grid_count(*size)
    out = np.zeros((1, 4 + classes, n), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(rows):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + cls, i] = score
    return out


def boxes_of(rows) -> object:
    """``pytest.approx`` of an ``(n, 4)`` array of boxes."""
    return pytest.approx(np.asarray(rows, np.float32).reshape(-1, 4), abs=1e-3)


# a frame 200 x 100 into 64 x 64: scale 0.32, the 64 x 32 picture centred from row 16
CENTRE_BOX = (32, 32, 32, 16)  # cx, cy, w, h in the model's input
CENTRE_FRAME_BOX = [50, 25, 150, 75]


def test_letterbox_centre_corner_and_stretch():
    image = frame().image
    canvas, warp = letterbox(image, (64, 64), mode="centre")
    assert warp == pytest.approx((0.32, 0.32, 0.0, 16.0))
    assert (canvas[:16] == 114).all() and (canvas[48:] == 114).all()
    assert np.allclose(canvas[16:48], [200, 10, 50])  # RGB kept
    canvas, warp = letterbox(image, (64, 64), mode="corner")
    assert warp == pytest.approx((0.32, 0.32, 0.0, 0.0))
    assert np.allclose(canvas[:32], [200, 10, 50]) and (canvas[32:] == 114).all()
    canvas, warp = letterbox(image, (64, 64), mode="stretch")
    assert warp == pytest.approx((0.32, 0.64, 0.0, 0.0)) and np.allclose(canvas, [200, 10, 50])
    # a tall frame is padded left and right
    canvas, warp = letterbox(frame(50, 100).image, (64, 64), mode="centre")
    assert warp == pytest.approx((0.64, 0.64, 16.0, 0.0))
    assert (canvas[:, :16] == 114).all() and np.allclose(canvas[:, 16:48], [200, 10, 50])


def test_preprocess_per_family(tmp_path):
    v8 = OnnxDetector(fixed_model(tmp_path / "v8.onnx", v8_output([])), family="yolov8")
    blob, _ = v8.preprocess(frame().image)
    assert blob.shape == (1, 3, 64, 64) and blob.dtype == np.float32
    assert blob[0, :, 32, 32] == pytest.approx(np.array([200, 10, 50]) / 255)
    assert blob[0, 0, 0, 0] == pytest.approx(114 / 255)
    yolox_out = np.zeros((1, grid_count(64, 64), 6), np.float32)
    yolox = OnnxDetector(fixed_model(tmp_path / "x.onnx", yolox_out))
    blob, _ = yolox.preprocess(frame().image)
    assert blob[0, :, 10, 10] == pytest.approx([50, 10, 200])  # BGR, 0-255
    assert blob[0, 0, 60, 10] == pytest.approx(114)  # padded below the picture


def test_yolov8_boxes_come_back_to_the_frame_with_score_class_and_nms(tmp_path):
    rows = [
        (*CENTRE_BOX, 0, 0.9),
        (33, 32, 32, 16, 0, 0.8),  # the same person again: NMS drops it
        (33, 32, 32, 16, 2, 0.95),  # another class on the person: not a person
        (10, 40, 8, 8, 0, 0.2),  # below the score
        (50, 40, 8, 8, 0, 0.4),
    ]
    path = fixed_model(tmp_path / "v8.onnx", v8_output(rows))
    detector = OnnxDetector(path, score=0.3)
    assert detector.family == "yolov8" and detector.classes.tolist() == [0]
    dets = detector.detect(frame())
    assert dets.boxes == boxes_of([CENTRE_FRAME_BOX, [143.75, 62.5, 168.75, 87.5]])
    assert dets.scores.tolist() == pytest.approx([0.9, 0.4])
    assert (dets.ids == -1).all()
    # NMS is per class: with class 2 kept too, its box stays beside class 0's
    both = OnnxDetector(path, score=0.3, classes=[0, 2]).detect(frame())
    assert both.scores.tolist() == pytest.approx([0.95, 0.9, 0.4])
    # no NMS to speak of at IoU 1: the duplicate stays
    loose = OnnxDetector(path, score=0.3, nms_iou=1.0).detect(frame())
    assert loose.scores.tolist() == pytest.approx([0.9, 0.8, 0.4])
    assert len(OnnxDetector(path, score=0.95).detect(frame())) == 0


def test_yolov5_scores_are_objectness_times_class(tmp_path):
    n = 3 * grid_count(64, 64)
    out = np.zeros((1, n, 5 + 2), np.float32)
    out[0, 7] = [*CENTRE_BOX, 0.5, 0.8, 0.1]  # 0.4 as a person
    out[0, 8] = [10, 10, 4, 4, 0.9, 0.1, 0.9]  # class 1
    out[0, 9] = [20, 30, 4, 4, 0.2, 0.9, 0.0]  # 0.18: below the score
    detector = OnnxDetector(fixed_model(tmp_path / "v5.onnx", out), score=0.3)
    assert detector.family == "yolov5" and detector.channels == 2
    dets = detector.detect(frame())
    assert dets.boxes == boxes_of([CENTRE_FRAME_BOX])
    assert dets.scores.tolist() == pytest.approx([0.4])


def test_yolox_raw_head_is_decoded_over_the_grid(tmp_path):
    cells = grid_centres(64, 64)
    assert len(cells) == grid_count(64, 64) == 64 + 16 + 4
    # the cell of stride 16 at column 1, row 1 (the first 64 cells are stride 8's)
    row = 64 + 1 * 4 + 1
    assert cells[row].tolist() == [1, 1, 16]
    out = np.zeros((1, len(cells), 6), np.float32)
    out[0, row] = [0.5, 0.5, math.log(2.0), math.log(1.0), 0.9, 1.0]
    detector = OnnxDetector(fixed_model(tmp_path / "x.onnx", out), score=0.3)
    assert detector.family == "yolox"
    dets = detector.detect(frame())
    # centre (24, 24), 32 x 16 in the input; the picture at the top-left, scale 0.32
    assert dets.boxes == boxes_of([[8 / 0.32, 16 / 0.32, 40 / 0.32, 32 / 0.32]])
    assert dets.scores.tolist() == pytest.approx([0.9])
    # the same numbers from a decoded export are pixels already
    out[0, row] = [24, 24, 32, 16, 0.9, 1.0]
    decoded = OnnxDetector(fixed_model(tmp_path / "xd.onnx", out, exp=True), score=0.3)
    assert decoded.family == "yolox-decoded"
    assert decoded.detect(frame()).boxes == boxes_of([[25, 50, 125, 100]])


def test_rtdetr_boxes_are_normalised_and_the_frame_stretched(tmp_path):
    out = np.zeros((1, 300, 4 + 3), np.float32)
    out[0, 0] = [0.5, 0.5, 0.5, 0.2, 0.7, 0.0, 0.0]
    out[0, 1] = [0.1, 0.1, 0.1, 0.1, 0.0, 0.0, 0.8]
    detector = OnnxDetector(fixed_model(tmp_path / "detr.onnx", out), score=0.3)
    assert detector.family == "rtdetr"
    dets = detector.detect(frame())
    assert dets.boxes == boxes_of([[50, 40, 150, 60]])
    assert dets.scores.tolist() == pytest.approx([0.7])
    blob, warp = detector.preprocess(frame().image)
    assert warp == pytest.approx((0.32, 0.64, 0, 0)) and blob.max() == pytest.approx(200 / 255)


def test_ultralytics_metadata_names_the_person_class_and_the_size(tmp_path):
    names = "{0: 'car', 1: 'dog', 2: 'person'}"
    rows = [(*CENTRE_BOX, 2, 0.9), (10, 40, 8, 8, 0, 0.9)]
    meta = {"names": names, "imgsz": "[64, 64]", "stride": "32"}
    path = fixed_model(tmp_path / "m.onnx", v8_output(rows), size=None, metadata=meta)
    detector = OnnxDetector(path)
    assert detector.input == (64, 64) and detector.classes.tolist() == [2]
    assert detector.detect(frame()).boxes == boxes_of([CENTRE_FRAME_BOX])
    # names that disagree with the output (an export with NMS built in: (1, 300, 6))
    nms_out = np.zeros((1, 300, 6), np.float32)
    bad = fixed_model(tmp_path / "nms.onnx", nms_out, metadata={"names": names})
    with pytest.raises(CerberusError, match="nms.onnx: output of shape .* 2 classes but the "
                       "model names 3"):  # fmt: skip
        OnnxDetector(bad)


def test_a_dynamic_input_defaults_to_640(tmp_path):
    out = v8_output([(320, 320, 64, 128, 0, 0.9)], classes=1, n=8400, size=(640, 640))
    detector = OnnxDetector(fixed_model(tmp_path / "dyn.onnx", out, size=None))
    assert detector.input == (640, 640) and detector.family == "yolov8"
    # 200 x 100 into 640: scale 3.2, 320 rows from row 160
    assert detector.detect(frame()).boxes == boxes_of([[90, 30, 110, 70]])
    small = OnnxDetector(fixed_model(tmp_path / "dyn64.onnx", v8_output([]), size=None), size=64)
    assert small.input == (64, 64)
    with pytest.raises(CerberusError, match="size 320 but the model's input is fixed at 64x64"):
        OnnxDetector(fixed_model(tmp_path / "fixed.onnx", v8_output([])), size=320)


def test_family_named_explicitly(tmp_path):
    # (1, 5, 300) fits no rule as told (A < B, B no grid) but is yolov8 when named so
    out = np.zeros((1, 5, 300), np.float32)
    out[0, :, 3] = [*CENTRE_BOX, 0.9]
    path = fixed_model(tmp_path / "odd.onnx", out)
    with pytest.raises(CerberusError, match=r"odd.onnx: output of shape \[1, 5, 300\] is none "
                       "of the layouts known.*family="):  # fmt: skip
        OnnxDetector(path)
    named = OnnxDetector(path, family="yolo11")
    assert named.family == "yolov8"
    assert named.detect(frame()).boxes == boxes_of([CENTRE_FRAME_BOX])
    with pytest.raises(CerberusError, match="does not fit family yolox"):
        OnnxDetector(path, family="yolox")
    with pytest.raises(CerberusError, match="family 'ssd' unknown; give one of yolox"):
        OnnxDetector(path, family="ssd")


def test_bad_files_are_one_line_naming_them(tmp_path):
    with pytest.raises(CerberusError, match="none.onnx: detector model not found"):
        OnnxDetector(tmp_path / "none.onnx")
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(0).bytes(2000))
    text = tmp_path / "notes.onnx"
    text.write_text("a text file, not a model\n")
    for path in (noise, text):
        with pytest.raises(CerberusError, match=f"{path.name}: not an ONNX model") as caught:
            OnnxDetector(path)
        assert "\n" not in str(caught.value)
    flat = fixed_model(tmp_path / "flat.onnx", np.zeros((1, 7), np.float32))
    with pytest.raises(CerberusError, match=r"flat.onnx: output of shape \[1, 7\] is none"):
        OnnxDetector(flat)
    two = fixed_model(tmp_path / "two.onnx", v8_output([]), extra_input=True)
    with pytest.raises(CerberusError, match="two.onnx: inputs images .*, sizes"):
        OnnxDetector(two)
    with pytest.raises(CerberusError, match=r"classes \[5\] outside the model's 3 classes"):
        OnnxDetector(fixed_model(tmp_path / "v8.onnx", v8_output([])), classes=5)


def test_a_graph_exported_from_pytorch_with_a_dynamic_size(tmp_path):
    """A real exported graph (convolutions at strides 8/16/32, a YOLOv8-shaped output) whose
    output length follows the input size: the rule reads it at the size chosen."""
    import warnings

    import torch

    class Head(torch.nn.Module):
        def __init__(self, classes: int = 2):
            super().__init__()
            self.convs = torch.nn.ModuleList(
                torch.nn.Conv2d(3, 4 + classes, s, stride=s) for s in (8, 16, 32)
            )

        def forward(self, x):
            out = torch.cat([conv(x).flatten(2) for conv in self.convs], 2).sigmoid()
            return torch.cat([out[:, :4] * 64, out[:, 4:]], 1)  # boxes over the input

    torch.manual_seed(0)
    path = tmp_path / "head.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Head().eval(), torch.zeros(1, 3, 64, 64), str(path),
                          input_names=["images"], output_names=["out"],
                          dynamic_axes={"images": {2: "h", 3: "w"}, "out": {2: "n"}},
                          dynamo=False)  # fmt: skip
    for size in (96, 64):
        detector = OnnxDetector(path, size=size, score=0.0, nms_iou=1.0)
        assert (detector.family, detector.input, detector.channels) == ("yolov8", (size,) * 2, 2)
        dets = detector.detect(frame())
        assert 0 < len(dets) <= grid_count(size, size)
        assert (dets.boxes[:, 2] <= 200).all() and (dets.boxes[:, 3] <= 100).all()
