"""Our PyTorch SSDLite (``cerberus.modeling.ssdlite``) against an independent run of the same
frozen graph by OpenCV DNN (``cv2.dnn.readNetFromTensorflow(pb, pbtxt)``).

OpenCV cannot run the graph's pre- and post-processing (TF while loops, TensorArrays), so this
script writes a text graph (``.pbtxt``) of the part it can: from the trunk's input to the twelve
head convolutions (box codes and class logits of the six feature maps); OpenCV takes the
weights from the ``.pb`` by node name. Both get the same preprocessed 300x300 input; the table
gives the largest absolute differences of the raw box codes and of the person scores
(``sigmoid(logit)``), per feature map, and how many boxes at score >= 0.3 each side finds and
how many match (IoU >= 0.9) after decoding both with our anchors and box coder.

Usage: python benchmarks/ssdlite_reference.py [--video runs/vtest/vtest.avi] [--frames 4]
    [--random 4] [--graph PB]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import markdown_table, print_machine, run_script

from cerberus.errors import CerberusError
from cerberus.footage.detect import iou_matrix, nms
from cerberus.modeling.ssdlite import (
    INPUT_SIZE,
    decode_boxes,
    default_graph_path,
    load_ssdlite,
    preprocess,
)
from cerberus.modeling.tf_graph import Node, read_graph

KEPT_OPS = ("Conv2D", "DepthwiseConv2dNative", "FusedBatchNorm", "Relu6", "BiasAdd", "Add")
KEPT_ATTRS = ("strides", "padding", "data_format", "epsilon", "dilations")
HEADS = ("BoxEncodingPredictor", "ClassPredictor")
INPUT = "input"


def _text_value(value: object) -> str:
    """An ``AttrValue`` in protobuf text format."""
    if isinstance(value, bytes):
        return f's: "{value.decode()}"'
    if isinstance(value, bool):
        return f"b: {str(value).lower()}"
    if isinstance(value, float):
        return f"f: {value!r}"
    if isinstance(value, int):
        return f"i: {value}"
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return "list { " + " ".join(f"i: {v}" for v in value) + " }"
    raise CerberusError(f"no text form for the attribute value {value!r}")


def _source(nodes: dict[str, Node], name: str) -> str:
    """The node an input names, through ``Identity`` nodes (``weights/read`` -> ``weights``);
    the preprocessor's output becomes the text graph's placeholder."""
    node = nodes[name.split(":")[0]]
    while node.op == "Identity":
        node = nodes[node.inputs[0].split(":")[0]]
    return INPUT if node.name.startswith("Preprocessor/") else node.name


def write_text_graph(nodes: dict[str, Node], path: Path) -> list[str]:
    """Write the text graph of the network from its input to the head convolutions; returns
    the names of OpenCV's output layers, in :class:`SsdLite` order (per map: box codes, class
    logits; OpenCV fuses each ``BiasAdd`` into its ``Conv2D`` layer, so the names end with
    ``/Conv2D``)."""
    dtype = 'attr { key: "dtype" value { type: DT_FLOAT } }'
    lines = [f'node {{ name: "{INPUT}" op: "Placeholder" {dtype} }}']
    for node in nodes.values():
        if node.op not in KEPT_OPS or not node.name.startswith(
            ("FeatureExtractor/", "BoxPredictor_")
        ):
            continue
        inputs = " ".join(f'input: "{_source(nodes, i)}"' for i in node.inputs)
        attrs = " ".join(
            f'attr {{ key: "{k}" value {{ {_text_value(v)} }} }}'
            for k, v in node.attr.items()
            if k in KEPT_ATTRS
        )
        lines.append(f'node {{ name: "{node.name}" op: "{node.op}" {inputs} {attrs} }}')
    path.write_text("\n".join(lines) + "\n")
    return [f"BoxPredictor_{k}/{h}/Conv2D" for k in range(6) for h in HEADS]


class Reference:
    """The graph's network run by OpenCV DNN from a text graph this module writes."""

    def __init__(self, pb: Path) -> None:
        import cv2

        self.folder = tempfile.TemporaryDirectory()
        pbtxt = Path(self.folder.name) / "ssdlite_heads.pbtxt"
        self.outputs = write_text_graph(read_graph(pb), pbtxt)
        self.net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box codes ``(n, 1917, 4)`` and logits ``(n, 1917, 2)`` for a ``(n, 3, 300, 300)``
        preprocessed batch, in the layout of :meth:`SsdLite.forward`."""
        self.net.setInput(x.numpy().astype(np.float32))
        outs = self.net.forward(self.outputs)
        n = len(x)
        codes = [torch.from_numpy(o).permute(0, 2, 3, 1).reshape(n, -1, 4) for o in outs[0::2]]
        logits = [torch.from_numpy(o).permute(0, 2, 3, 1).reshape(n, -1, 2) for o in outs[1::2]]
        return torch.cat(codes, 1), torch.cat(logits, 1)


def map_slices(model) -> list[slice]:
    """The rows of each feature map in the ``(n, 1917, .)`` outputs."""
    sizes = (19, 10, 5, 3, 2, 1)
    counts = [s * s * head[1].out_channels // 4 for s, head in zip(sizes, model.box_heads)]
    edges = np.cumsum([0, *counts])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def detections(codes: torch.Tensor, logits: torch.Tensor, anchors: torch.Tensor, threshold: float):
    """Boxes (pixels of the 300x300 input) and scores at ``score >= threshold`` after NMS 0.6."""
    boxes = decode_boxes(codes, anchors)[0].numpy() * INPUT_SIZE
    scores = logits[0, :, 1].sigmoid().numpy()
    keep = scores >= threshold
    boxes, scores = boxes[keep], scores[keep]
    kept = nms(boxes, scores, 0.6)
    return boxes[kept], scores[kept]


def images(video: Path, frames: int, random: int) -> list[tuple[str, np.ndarray]]:
    """``(name, 300x300x3 RGB uint8)``: evenly spaced frames of the video, then noise images."""
    import cv2

    out = []
    if frames:
        cap = cv2.VideoCapture(str(video))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not cap.isOpened() or total <= 0:
            raise CerberusError(f"{video}: cannot read the video (give --video or --frames 0)")
        for number in np.linspace(0, total - 1, frames).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(number))
            ok, bgr = cap.read()
            if ok:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                name = f"frame {number + 1}"  # 1-based, as the project numbers frames
                out.append((name, cv2.resize(rgb, (INPUT_SIZE, INPUT_SIZE))))
    rng = np.random.default_rng(0)
    for i in range(random):
        out.append((f"noise {i}", rng.integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), np.uint8)))
    return out


def compare(model, reference: Reference, image: np.ndarray, threshold: float = 0.3) -> dict:
    """Differences between ours and the reference on one image (see the module doc)."""
    x = preprocess(image[None])
    with torch.no_grad():
        codes, logits = model(x)
    ref_codes, ref_logits = reference.heads(x)
    row = {}
    for k, rows in enumerate(map_slices(model)):
        row[f"codes{k}"] = float((codes[:, rows] - ref_codes[:, rows]).abs().max())
        score, ref_score = logits[:, rows, 1].sigmoid(), ref_logits[:, rows, 1].sigmoid()
        row[f"scores{k}"] = float((score - ref_score).abs().max())
    ours, _ = detections(codes, logits, model.anchors, threshold)
    theirs, _ = detections(ref_codes, ref_logits, model.anchors, threshold)
    matched = (
        int((iou_matrix(ours, theirs) >= 0.9).any(1).sum()) if len(ours) and len(theirs) else 0
    )
    row |= {"ours": len(ours), "reference": len(theirs), "matched": matched}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=Path("runs/vtest/vtest.avi"))
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--random", type=int, default=4)
    parser.add_argument("--graph", type=Path, default=None)
    args = parser.parse_args()
    pb = args.graph or default_graph_path()
    print_machine()
    model = load_ssdlite(pb)
    reference = Reference(pb)
    rows = []
    for name, image in images(args.video, args.frames, args.random):
        r = compare(model, reference, image)
        codes = max(r[f"codes{k}"] for k in range(5))
        scores = max(r[f"scores{k}"] for k in range(5))
        rows.append(
            [
                name,
                f"{codes:.1e}",
                f"{scores:.1e}",
                f"{r['codes5']:.2f}",
                f"{r['scores5']:.1e}",
                f"{r['ours']} / {r['reference']} / {r['matched']}",
            ]
        )
    headers = [
        "image",
        "codes, maps 0-4",
        "scores, maps 0-4",
        "codes, map 5",
        "scores, map 5",
        "boxes >= 0.3: ours / OpenCV / matched",
    ]
    print(markdown_table(headers, rows))
    sys.stdout.flush()


if __name__ == "__main__":
    run_script(main)
