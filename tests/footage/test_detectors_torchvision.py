"""torchvision detectors (cerberus.footage.detectors.torchvision): weights from a file or the
torch hub cache (never downloaded), the person label, the score cut, boxes in the frame; bad
names and weights are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cerberus.errors import CerberusError
from cerberus.footage.detectors.torchvision import (
    TorchvisionDetector,
    cached_weights,
    detection_models,
)
from cerberus.footage.video import Frame

NAME = "ssdlite320_mobilenet_v3_large"  # the smallest (3.4 M parameters)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random-weights SSDLite's state dict on disk."""
    import torchvision.models as models

    torch.manual_seed(0)
    net = models.get_model(NAME, weights=None, weights_backbone=None)
    path = tmp_path_factory.mktemp("tv") / "ssdlite.pth"
    torch.save(net.state_dict(), path)
    return path


def frame(width=96, height=48) -> Frame:
    rng = np.random.default_rng(0)
    return Frame(1, 0.0, float("nan"), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


class Fixed(torch.nn.Module):
    """A stand-in for the model: fixed boxes, scores and labels whatever the image."""

    def __init__(self, boxes, scores, labels):
        super().__init__()
        self.out = {
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }
        self.seen = []

    def forward(self, images):
        self.seen.append(images[0])
        return [self.out]


def test_the_model_runs_from_a_weights_file(weights):
    torch.set_num_threads(1)
    detector = TorchvisionDetector(NAME, weights=weights, score=0.0)
    assert detector.path == weights and detector.classes.tolist() == [1]
    image = frame()
    with torch.inference_mode():
        raw = detector.model([torch.from_numpy(image.image).permute(2, 0, 1).float() / 255])[0]
    assert len(raw["boxes"]) > 0  # random weights: boxes of every label at score 0
    assert (raw["boxes"][:, 2] <= 96).all() and (raw["boxes"][:, 3] <= 48).all()  # frame pixels
    label = int(raw["labels"][0])  # random weights: no person may be among them; one label
    detector.classes = torch.tensor([label])
    dets = detector.detect(image)
    people = raw["labels"] == label
    assert len(dets) == int(people.sum()) > 0
    assert np.allclose(np.sort(dets.scores), np.sort(raw["scores"][people].numpy()))
    assert (dets.boxes[:, 2] <= 96).all() and (dets.boxes[:, 3] <= 48).all()
    assert (np.diff(dets.scores) <= 0).all() and (dets.ids == -1).all()


def test_label_filter_score_cut_and_clipping(weights):
    detector = TorchvisionDetector(NAME, weights=weights, score=0.5)
    assert detector.model.score_thresh == 0.5  # the model's own cut follows
    fixed = Fixed(
        [[10, 5, 30, 40], [0, 0, 20, 20], [50, 10, 120, 60], [5, 5, 6, 6], [60, 0, 70, 10]],
        [0.6, 0.9, 0.8, 0.4, 0.95],
        [1, 3, 1, 1, 1],
    )
    detector.model = fixed
    dets = detector.detect(frame())
    # the car (label 3) and the 0.4 person go; the box over the frame's edge is clipped
    assert dets.boxes.tolist() == [[60, 0, 70, 10], [50, 10, 96, 48], [10, 5, 30, 40]]
    assert dets.scores.tolist() == pytest.approx([0.95, 0.8, 0.6])
    image = fixed.seen[-1]
    assert image.shape == (3, 48, 96) and 0 <= image.min() and image.max() <= 1  # RGB 0-1
    assert torch.allclose(image[:, 7, 9] * 255, torch.tensor(frame().image[7, 9]).float())
    detector.classes = torch.tensor([3])
    assert detector.detect(frame()).boxes.tolist() == [[0, 0, 20, 20]]


def test_weights_come_from_the_hub_cache_never_downloaded(weights, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was tried")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    cached = cached_weights(NAME)
    assert cached.parent == tmp_path / "hub" / "checkpoints" and cached.suffix == ".pth"
    missing = f"torchvision:{NAME}: torchvision's weights are not in the torch hub cache "
    with pytest.raises(CerberusError, match=f"{missing}.*{cached.name}.*torchvision:{NAME}@FILE"):
        TorchvisionDetector(NAME)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights.read_bytes())
    assert TorchvisionDetector(NAME).path == cached


def test_bad_names_and_weights_are_one_line(weights, tmp_path):
    assert "fasterrcnn_resnet50_fpn" in detection_models() and NAME in detection_models()
    unknown = "torchvision:fasterrcnn_resnet_fpn: no such torchvision detection model"
    with pytest.raises(CerberusError, match=f"{unknown}; did you mean fasterrcnn_resnet50_fpn"):
        TorchvisionDetector("fasterrcnn_resnet_fpn")
    with pytest.raises(CerberusError, match="no such torchvision detection model; valid: "):
        TorchvisionDetector("zzz")
    with pytest.raises(CerberusError, match="weights file .*none.pth not found"):
        TorchvisionDetector(NAME, weights=tmp_path / "none.pth")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(CerberusError, match="noise.pth is not a readable weights file"):
        TorchvisionDetector(NAME, weights=noise)
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    with pytest.raises(CerberusError, match="notes.pth is not a readable weights file"):
        TorchvisionDetector(NAME, weights=text)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], listed)
    with pytest.raises(CerberusError, match="list.pth is not a state dict"):
        TorchvisionDetector(NAME, weights=listed)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(CerberusError, match=r"other.pth does not fit the model \(\d+ missing, "
                       "1 unexpected"):  # fmt: skip
        TorchvisionDetector(NAME, weights=other)
    # another model's weights (the right names, the wrong class count) do not fit either
    state = torch.load(weights, weights_only=True)
    head = [k for k in state if "classification_head" in k and k.endswith("weight")][-1]
    state[head] = state[head][: state[head].shape[0] // 2]
    torch.save({"model": state, "epoch": 3}, tmp_path / "half.pth")
    with pytest.raises(CerberusError, match="half.pth does not fit .* 1 wrongly shaped"):
        TorchvisionDetector(NAME, weights=tmp_path / "half.pth")
    with pytest.raises(CerberusError, match="score 2 is not between 0 and 1"):
        TorchvisionDetector(NAME, weights=weights, score=2)
