"""torchvision's detection models as person detectors, method §9.3:
``--detector torchvision:NAME`` (or ``torchvision:NAME@FILE``).

The names are torchvision's (``torchvision.models.list_models(module=torchvision.models.
detection)``): ``fasterrcnn_resnet50_fpn``, ``fasterrcnn_resnet50_fpn_v2``,
``fasterrcnn_mobilenet_v3_large_fpn``, ``fasterrcnn_mobilenet_v3_large_320_fpn``,
``retinanet_resnet50_fpn``, ``retinanet_resnet50_fpn_v2``, ``fcos_resnet50_fpn``,
``ssd300_vgg16``, ``ssdlite320_mobilenet_v3_large``, ``maskrcnn_resnet50_fpn[_v2]`` and
``keypointrcnn_resnet50_fpn`` (their boxes only).

Weights, the rule the reID backbone's ImageNet weights follow, without a download: a file given
(``@FILE``: a state dict of the model, or a training checkpoint holding one under ``model``,
read with ``torch.load(weights_only=True)``), else torchvision's COCO weights (``DEFAULT``)
from the torch hub cache (``$TORCH_HOME/hub/checkpoints/``, where
``torchvision.models.get_model(NAME, weights="DEFAULT")`` leaves them); missing: one line saying
where to put them. Nothing is fetched at run time.

The model takes the frame as RGB 0-1 and does its own resizing and normalisation; its boxes come
in frame pixels. Kept: labels in ``classes`` (default 1, COCO's person in torchvision's label
map, 0 being the background) with a score of at least ``score``; the model's own per-class NMS
is the only one.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detections
from cerberus.footage.video import Frame
from cerberus.modeling.model import StateDictError, read_state_dict, state_dict_misfit

logger = logging.getLogger(__name__)

PERSON = 1
"""COCO's person in torchvision's 91-entry label map (0: background)."""


def detection_models() -> list[str]:
    """torchvision's detection model names."""
    import torchvision.models as models
    from torchvision.models import detection

    return sorted(models.list_models(module=detection))


def cached_weights(name: str) -> Path:
    """Where torchvision's default weights of ``name`` lie in the torch hub cache (whether or
    not they are there)."""
    import torchvision.models as models

    weights = models.get_model_weights(name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]


def load_state_dict(path: Path, where: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (:func:`~cerberus.modeling.model.read_state_dict`), its
    faults in ``--detector`` words."""
    if not path.is_file():
        raise CerberusError(f"{where}: weights file {path} not found")
    try:
        return read_state_dict(path)
    except StateDictError as exc:
        hint = "" if "state dict" in exc.reason else (
            "; give a state dict saved with torch.save(model.state_dict(), FILE)"
        )
        raise CerberusError(f"{where}: {path} is {exc.reason}{hint}") from None


def _fit(net: torch.nn.Module, state: dict[str, torch.Tensor], where: str, path: Path) -> None:
    missing, unexpected, wrong = state_dict_misfit(net.state_dict(), state)
    if missing or unexpected or wrong:
        example = (wrong or missing or unexpected)[0]
        raise CerberusError(
            f"{where}: {path} does not fit the model ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} wrongly shaped keys, e.g. {example!r}); give the "
            "weights of this model with torchvision's 91 COCO labels"
        )
    net.load_state_dict(state)


class TorchvisionDetector:
    """One of torchvision's detection models as a person detector (see the module doc).

    Args:
        name: the model's torchvision name.
        weights: a state dict file (default: torchvision's COCO weights from the hub cache).
        score: a box needs at least this score (also the model's own score cut).
        classes: labels kept (default ``(1,)``: person).
        device: where the model runs.
    """

    gives_ids = False

    def __init__(
        self,
        name: str,
        *,
        weights: str | Path | None = None,
        score: float = 0.5,
        classes: Sequence[int] | int = (PERSON,),
        device: str | torch.device = "cpu",
    ) -> None:
        import torchvision.models as models

        where = f"--detector torchvision:{name}"
        names = detection_models()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise CerberusError(
                f"{where}: no such torchvision detection model; {hint}valid: {', '.join(names)}"
            )
        if not 0 <= score <= 1:
            raise CerberusError(f"{where}: score {score} is not between 0 and 1")
        if weights is not None:
            path = Path(weights)
        else:
            path = cached_weights(name)
            if not path.is_file():
                raise CerberusError(
                    f"{where}: torchvision's weights are not in the torch hub cache ({path}); "
                    f"fetch them once (torchvision.models.get_model({name!r}, "
                    f"weights='DEFAULT')) or give a file: torchvision:{name}@FILE"
                )
        state = load_state_dict(path, where)
        net = models.get_model(name, weights=None, weights_backbone=None)
        _fit(net, state, where, path)
        self.name, self.path = name, path
        self.score = float(score)
        self.classes = torch.tensor(sorted({int(c) for c in np.atleast_1d(classes)}))
        _set_score_cut(net, self.score)
        self.device = torch.device(device)
        self.model = net.eval().to(self.device)
        logger.info("%s: weights %s, labels %s, score >= %g", name, path, self.classes.tolist(),
                    self.score)  # fmt: skip

    @torch.inference_mode()
    def detect(self, frame: Frame) -> Detections:
        image = torch.from_numpy(np.ascontiguousarray(frame.image)).to(self.device)
        out = self.model([image.permute(2, 0, 1).float() / 255.0])[0]
        boxes, scores, labels = (out[k].detach().cpu() for k in ("boxes", "scores", "labels"))
        keep = (scores >= self.score) & torch.isin(labels, self.classes)
        boxes, scores = boxes[keep].numpy(), scores[keep].numpy()
        h, w = frame.image.shape[:2]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        order = np.argsort(-scores[keep], kind="stable")
        return Detections.of(boxes[keep][order], scores[keep][order])


def _set_score_cut(net: torch.nn.Module, score: float) -> None:
    """The model's own score cut lowered or raised to ``score`` (R-CNNs keep it in
    ``roi_heads``; RetinaNet, FCOS and SSD on the model)."""
    for owner in (getattr(net, "roi_heads", None), net):
        if owner is not None and hasattr(owner, "score_thresh"):
            owner.score_thresh = score
            return
