"""ONNX exports of the common detector families run with onnxruntime, method §9.3:
``--detector onnx:FILE``.

Families and what each expects and gives (``C`` classes, one image in, the first output read):

=================  ===================  ==========================================================
family             output               input, boxes
=================  ===================  ==========================================================
``yolox``          ``(1, N, 5+C)``      YOLOX's raw head (its ``export_onnx.py`` default): per
                                        grid cell of strides 8, 16, 32 (row by row, level by
                                        level, ``N = sum (H/s)(W/s)``) ``x, y, log w, log h,
                                        obj, classes``; box centre ``(x + col, y + row) s``,
                                        size ``exp(w) s``. BGR 0-255, the frame scaled to fit
                                        and put top-left on a 114 grey canvas.
``yolox-decoded``  ``(1, N, 5+C)``      the same model exported with ``--decode_in_inference``:
                                        ``cx, cy, w, h`` in input pixels already.
``yolov5``         ``(1, 3N, 5+C)``     YOLOv5 (three anchors per cell): ``cx, cy, w, h`` in
                                        input pixels, objectness, class scores. RGB / 255,
                                        the frame scaled to fit and centred on 114 grey
                                        (ultralytics' letterbox).
``yolov8``         ``(1, 4+C, N)``      YOLOv8 / YOLO11 (also YOLOv5u, v9): ``cx, cy, w, h`` in
                                        input pixels, class scores, no objectness; input as
                                        ``yolov5``.
``rtdetr``         ``(1, Q, 4+C)``      RT-DETR as ultralytics exports it: ``Q`` queries (300),
                                        ``cx, cy, w, h`` normalised to 0-1, class scores; RGB /
                                        255 stretched to the input size (ultralytics' RT-DETR
                                        does not keep the aspect).
=================  ===================  ==========================================================

A box's score is ``obj * class`` where there is an objectness, else the class score; its class
is the best-scoring one. Kept: class in ``classes``, score at least ``score``, then greedy NMS
per class at ``nms_iou`` (:func:`~cerberus.footage.detect.nms`); boxes are mapped back to the
frame (the letterbox undone) and clipped to it.

**The family rule** (when ``family`` is not given): the model is run once on a grey image at
construction and its first output ``(1, A, B)`` compared with the grid count ``N`` of the input
size (strides 8/16/32, or 8/16/32/64 for P6 models):
``A == N`` -> ``yolox`` (``yolox-decoded`` when the graph holds an ``Exp`` node, which only
the decoding adds); ``A == 3N`` -> ``yolov5``; ``B == N`` and ``A < B`` -> ``yolov8``;
otherwise ``5 <= B < A <= 1000`` (more queries than channels) -> ``rtdetr``. Anything else,
or a class count that disagrees with the ``names`` metadata that ultralytics writes, is refused
in one line.

Input size: the graph's own; a dynamic one is ``size`` (default: the ``imgsz`` metadata of an
ultralytics export, else 640). Default classes: those named ``person`` in the ``names``
metadata, else class 0 (COCO's person in every YOLO family and in ultralytics' RT-DETR).
"""

from __future__ import annotations

import ast
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detections, nms
from cerberus.footage.video import Frame

logger = logging.getLogger(__name__)

FAMILIES = ("yolox", "yolox-decoded", "yolov5", "yolov8", "rtdetr")
DEFAULT_SIZE = 640
PAD = 114
MAX_QUERIES = 1000

_FAMILY_ALIASES = {"yolo11": "yolov8", "yolov11": "yolov8", "yolov9": "yolov8", "rt-detr": "rtdetr"}


def grid_count(height: int, width: int, strides: Sequence[int] = (8, 16, 32)) -> int:
    """Cells of a YOLO head over an input of ``height x width``: ``sum ceil(H/s) ceil(W/s)``."""
    return sum(math.ceil(height / s) * math.ceil(width / s) for s in strides)


def grid_centres(height: int, width: int, strides: Sequence[int] = (8, 16, 32)) -> np.ndarray:
    """``(N, 3)`` float32 ``col, row, stride`` of each YOLOX cell, in the head's order (level by
    level, row by row)."""
    parts = []
    for s in strides:
        rows, cols = math.ceil(height / s), math.ceil(width / s)
        yy, xx = np.mgrid[0:rows, 0:cols]
        parts.append(np.stack([xx.ravel(), yy.ravel(), np.full(rows * cols, s)], axis=1))
    return np.concatenate(parts).astype(np.float32)


def letterbox(
    image: np.ndarray, size: tuple[int, int], *, mode: str
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The frame as the model's input.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        size: ``(height, width)`` of the model's input.
        mode: ``"centre"`` (scale ``r = min(h/H, w/W)``, centred on 114 grey; ultralytics),
            ``"corner"`` (the same scale, top-left on 114 grey; YOLOX) or ``"stretch"`` (each
            axis scaled on its own; ultralytics' RT-DETR).

    Returns:
        ``(canvas, (sx, sy, dx, dy))``: ``(h, w, 3)`` float32 RGB 0-255, and the map of a frame
        point to the canvas, ``x' = sx x + dx``, ``y' = sy y + dy`` (bilinear resampling).
    """
    th, tw = size
    h, w = image.shape[:2]
    if mode == "stretch":
        nh, nw, sx, sy = th, tw, tw / w, th / h
    else:
        r = min(th / h, tw / w)
        cut = int if mode == "corner" else round  # as YOLOX and ultralytics size the picture
        nh, nw = min(max(cut(h * r), 1), th), min(max(cut(w * r), 1), tw)
        sx, sy = nw / w, nh / h
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    if (nh, nw) != (h, w):
        pixels = F.interpolate(pixels, size=(nh, nw), mode="bilinear", align_corners=False)
    canvas = np.full((th, tw, 3), float(PAD), np.float32)
    if mode == "centre":
        top, left = round((th - nh) / 2 - 0.1), round((tw - nw) / 2 - 0.1)
    else:
        top = left = 0
    canvas[top : top + nh, left : left + nw] = pixels[0].permute(1, 2, 0).numpy()
    return canvas, (sx, sy, float(left), float(top))


def _metadata(session) -> dict[str, str]:
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:  # pragma: no cover - a model without a metadata table
        return {}


def _names(meta: dict[str, str]) -> dict[int, str] | None:
    """The ``names`` metadata of an ultralytics export (``{0: 'person', ...}``), if any."""
    text = meta.get("names")
    if not text:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        return None
    try:
        return {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        return None


def _has_exp(path: Path) -> bool:
    """Whether the graph holds an ``Exp`` node (YOLOX's decoding adds one; the raw head has
    none). Without the ``onnx`` package: ``False`` (the raw head, YOLOX's export default)."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - the export extra installs both
        return False
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # pragma: no cover - onnxruntime loaded it, so this is rare
        return False
    graphs, seen = [model.graph], False
    while graphs and not seen:
        graph = graphs.pop()
        for node in graph.node:
            seen = seen or node.op_type == "Exp"
            graphs.extend(a.g for a in node.attribute if a.HasField("g"))
    return seen


class OnnxDetector:
    """A person detector from an ONNX export of a YOLOX, YOLOv5, YOLOv8/11 or RT-DETR model
    (the module doc has the families and the rule that tells them apart).

    Args:
        path: the ``.onnx`` file.
        score: a box needs at least this score.
        nms_iou: NMS drops a box whose IoU with a better one of its class is above this.
        classes: class indices kept (default: ``person`` from the metadata, else 0).
        family: one of :data:`FAMILIES` (default: told from the output's shape).
        size: input size for a graph of dynamic size (an int, or ``(height, width)``).
        max_boxes: at most this many boxes per frame (the best).
    """

    gives_ids = False

    def __init__(
        self,
        path: str | Path,
        *,
        score: float = 0.3,
        nms_iou: float = 0.5,
        classes: Sequence[int] | int | None = None,
        family: str | None = None,
        size: int | Sequence[int] | None = None,
        max_boxes: int = 300,
    ) -> None:
        self.path = path = Path(path)
        where = f"--detector onnx:{path}"
        if not 0 <= score <= 1:
            raise CerberusError(f"{where}: score {score} is not between 0 and 1")
        if not 0 < nms_iou <= 1:
            raise CerberusError(f"{where}: nms {nms_iou} is not in (0, 1]")
        if family is not None:
            family = _FAMILY_ALIASES.get(family.lower(), family.lower())
            if family not in FAMILIES:
                raise CerberusError(
                    f"{where}: family {family!r} unknown; give one of {', '.join(FAMILIES)}"
                )
        if not path.is_file():
            raise CerberusError(f"{path}: detector model not found; give the path of a .onnx file")
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - the export extra installs it
            raise CerberusError(
                f"{where} needs onnxruntime: pip install 'cerberus-reid[export]'"
            ) from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings on stderr
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            reason = " ".join(str(exc).split())[:160]
            raise CerberusError(
                f"{path}: not an ONNX model onnxruntime can load ({type(exc).__name__}: "
                f"{reason}); give an ONNX export of a detector (onnx:FILE)"
            ) from None
        self.score, self.nms_iou, self.max_boxes = float(score), float(nms_iou), int(max_boxes)
        meta = _metadata(self.session)
        names = _names(meta)
        self.input = self._input(where, size, meta)
        self.family = family or self._family(where)
        self.channels = self._check_output(where, names)
        if classes is None:
            people = [k for k, v in (names or {}).items() if v.lower() == "person"]
            classes = people or [0]
        self.classes = np.array(sorted({int(c) for c in np.atleast_1d(classes)}), np.int64)
        if len(self.classes) and (self.classes.min() < 0 or self.classes.max() >= self.channels):
            raise CerberusError(
                f"{where}: classes {self.classes.tolist()} outside the model's "
                f"{self.channels} classes (0..{self.channels - 1})"
            )
        logger.info(
            "%s: %s, input %dx%d, classes %s, score >= %g",
            path.name,
            self.family,
            self.input[1],
            self.input[0],
            self.classes.tolist(),
            self.score,
        )

    # ------------------------------------------------------------------ set-up

    def _input(self, where: str, size, meta: dict[str, str]) -> tuple[int, int]:
        """``(height, width)`` of the model's input; also keeps its name and dtype."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            shapes = ", ".join(f"{i.name} {list(i.shape)}" for i in inputs)
            raise CerberusError(
                f"{self.path}: inputs {shapes}; a detector export takes one image (1, 3, H, W)"
            )
        spec = inputs[0]
        self.input_name = spec.name
        self.dtype = np.float16 if spec.type == "tensor(float16)" else np.float32
        channels, fixed = spec.shape[1], spec.shape[2:]
        if isinstance(channels, int) and channels != 3:
            raise CerberusError(
                f"{self.path}: input {spec.name} {list(spec.shape)} has {channels} channels, "
                "not 3; a detector export takes one RGB image (1, 3, H, W)"
            )
        if size is not None:
            wanted = tuple(int(v) for v in np.atleast_1d(size))
            wanted = wanted * 2 if len(wanted) == 1 else wanted
            if len(wanted) != 2 or min(wanted) < 32:
                raise CerberusError(f"{where}: size {size} is not one or two sizes of 32 px up")
        else:
            wanted = (DEFAULT_SIZE, DEFAULT_SIZE)
            given = _imgsz(meta.get("imgsz"))
            if given is not None:
                wanted = given
        out = []
        for dim, want in zip(fixed, wanted):
            if isinstance(dim, int) and dim > 0:
                if size is not None and dim != want:
                    raise CerberusError(
                        f"{where}: size {size} but the model's input is fixed at "
                        f"{fixed[0]}x{fixed[1]} (height x width); leave size out"
                    )
                out.append(dim)
            else:
                out.append(want)
        return out[0], out[1]

    def _run(self, blob: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: blob})[0])

    def _family(self, where: str) -> str:
        """The family told from the output's shape (the module doc's rule)."""
        shape = self._probe()
        h, w = self.input
        if len(shape) == 3 and shape[0] == 1:
            a, b = shape[1], shape[2]
            for strides in ((8, 16, 32), (8, 16, 32, 64)):
                n = grid_count(h, w, strides)
                if a == n and b >= 6:
                    return "yolox-decoded" if _has_exp(self.path) else "yolox"
                if a == 3 * n and b >= 6:
                    return "yolov5"
                if b == n and 5 <= a < b:
                    return "yolov8"
            if 5 <= b < a <= MAX_QUERIES:
                return "rtdetr"
        raise CerberusError(
            f"{self.path}: output of shape {list(shape)} is none of the layouts known for a "
            f"{h}x{w} input (YOLOX / YOLOv5 (1, N, 5+C), YOLOv8/11 (1, 4+C, N), RT-DETR "
            "(1, Q, 4+C)); export the detector's head without its NMS, or name the family "
            f"(onnx:FILE,family=...: {', '.join(FAMILIES)})"
        )

    def _probe(self) -> tuple[int, ...]:
        """The first output's shape on a grey image (the model is run once)."""
        if not hasattr(self, "_probed"):
            h, w = self.input
            blob = np.full((1, 3, h, w), PAD / 255.0, self.dtype)
            try:
                self._probed = tuple(int(v) for v in self._run(blob).shape)
            except Exception as exc:
                reason = " ".join(str(exc).split())[:160]
                raise CerberusError(
                    f"{self.path}: the model does not run on a {h}x{w} image "
                    f"({type(exc).__name__}: {reason}); give size=... (onnx:FILE,size=640)"
                ) from None
        return self._probed

    def _check_output(self, where: str, names: dict[int, str] | None) -> int:
        """The class count ``C`` the output holds for the family (a shape that does not fit
        is refused)."""
        shape = self._probe()
        extra = {"yolox": 5, "yolox-decoded": 5, "yolov5": 5, "yolov8": 4, "rtdetr": 4}
        per_box = shape[1] if self.family == "yolov8" else shape[-1]
        channels = per_box - extra[self.family] if len(shape) == 3 and shape[0] == 1 else 0
        if self.family == "yolox":
            h, w = self.input
            if shape[1] != grid_count(h, w):
                channels = 0
        if channels < 1:
            raise CerberusError(
                f"{self.path}: output of shape {list(shape)} does not fit family "
                f"{self.family}; leave family out to have it told from the shape (the "
                "layouts: docs/footage.md, Your own detector)"
            )
        if names is not None and len(names) != channels:
            raise CerberusError(
                f"{self.path}: output of shape {list(shape)} read as {self.family} holds "
                f"{channels} classes but the model names {len(names)}; an export with NMS "
                "built in is not supported: export the head without it"
            )
        return channels

    # ------------------------------------------------------------------ per frame

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
        """``(1, 3, h, w)`` model input of a frame and the frame -> input map
        ``(sx, sy, dx, dy)`` (see :func:`letterbox`)."""
        mode = {"yolox": "corner", "yolox-decoded": "corner", "rtdetr": "stretch"}.get(
            self.family, "centre"
        )
        canvas, warp = letterbox(image, self.input, mode=mode)
        if mode == "corner":
            blob = canvas[..., ::-1]  # YOLOX: BGR 0-255
        else:
            blob = canvas / 255.0
        return np.ascontiguousarray(blob.transpose(2, 0, 1)[None], dtype=self.dtype), warp

    def decode(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes (n, 4) xyxy in input pixels, scores (n,), classes (n,))`` of one output."""
        out = np.asarray(out, np.float32)[0]
        h, w = self.input
        if self.family == "yolov8":
            out = out.T
        xywh = out[:, :4].copy()
        if self.family in ("yolox", "yolox-decoded", "yolov5"):
            cls = out[:, 5:] * out[:, 4:5]
        else:
            cls = out[:, 4:]
        if self.family == "yolox":
            cells = grid_centres(h, w)
            xywh[:, :2] = (xywh[:, :2] + cells[:, :2]) * cells[:, 2:]
            xywh[:, 2:] = np.exp(np.minimum(xywh[:, 2:], 20.0)) * cells[:, 2:]
        elif self.family == "rtdetr":
            xywh *= np.array([w, h, w, h], np.float32)
        boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
        best = cls.argmax(1)
        return boxes, cls[np.arange(len(cls)), best], best

    def detect(self, frame: Frame) -> Detections:
        image = frame.image
        blob, (sx, sy, dx, dy) = self.preprocess(image)
        boxes, scores, labels = self.decode(self._run(blob))
        keep = (scores >= self.score) & np.isin(labels, self.classes)
        keep &= np.isfinite(boxes).all(1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        chosen = []
        for label in np.unique(labels):
            rows = np.flatnonzero(labels == label)
            chosen.append(rows[nms(boxes[rows], scores[rows], self.nms_iou)])
        if not chosen:
            return Detections.empty()
        rows = np.concatenate(chosen)
        rows = rows[np.argsort(-scores[rows], kind="stable")][: self.max_boxes]
        boxes, scores = boxes[rows], scores[rows]
        fh, fw = image.shape[:2]
        boxes = (boxes - np.array([dx, dy, dx, dy], np.float32)) / np.array(
            [sx, sy, sx, sy], np.float32
        )
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, fw)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, fh)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Detections.of(boxes[keep], scores[keep])


def _imgsz(text: str | None) -> tuple[int, int] | None:
    """The ``imgsz`` metadata of an ultralytics export (``[640, 640]``: height, width)."""
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    sizes = [value] if isinstance(value, int) else list(value) if isinstance(value, list) else []
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or not all(isinstance(v, int) and v >= 32 for v in sizes):
        return None
    return sizes[0], sizes[1]
