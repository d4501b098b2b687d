"""Tiny test footage made on the fly: coloured person-like figures walking over a noisy
background, written with PyAV, with their MOTChallenge ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cerberus.footage.ingest import Embedded


@dataclass
class Walker:
    """A figure of ``size`` (w, h) and ``colour`` from ``first`` to ``last`` frame (1-based),
    moving from ``xy0`` by ``step`` (dx, dy) per frame."""

    ident: int
    colour: tuple[int, int, int]
    first: int
    last: int
    xy0: tuple[float, float]
    step: tuple[float, float]
    size: tuple[int, int] = (24, 60)

    def box(self, number: int) -> tuple[float, float, float, float] | None:
        if not self.first <= number <= self.last:
            return None
        k = number - self.first
        x, y = self.xy0[0] + k * self.step[0], self.xy0[1] + k * self.step[1]
        return (x, y, x + self.size[0], y + self.size[1])


def default_walkers() -> list[Walker]:
    return [
        Walker(1, (220, 30, 30), 1, 30, (10.0, 40.0), (4.0, 0.0)),
        Walker(2, (30, 60, 220), 6, 30, (200.0, 30.0), (-3.0, 0.5)),
    ]


def render(number: int, walkers: list[Walker], size=(256, 144), seed: int = 0) -> np.ndarray:
    """Frame ``number`` as ``(H, W, 3)`` uint8 RGB: a fixed textured background and the
    figures (head, a top and legs of the figure's colour, darker)."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (90 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0))[..., None]
    img = np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    for walker in walkers:
        box = walker.box(number)
        if box is None:
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        bh = y1 - y0
        c = np.array(walker.colour)
        cx0, cx1 = max(x0, 0), min(x1, w)
        if cx1 <= cx0:
            continue
        img[max(y0, 0) : max(y0 + bh // 5, 0), cx0 + (x1 - x0) // 4 : cx1 - (x1 - x0) // 4] = (
            200,
            170,
            140,
        )
        img[max(y0 + bh // 5, 0) : max(y0 + bh * 3 // 5, 0), cx0:cx1] = c
        img[max(y0 + bh * 3 // 5, 0) : max(y1, 0), cx0:cx1] = c // 3
    return img


def write_video(
    path: Path,
    walkers: list[Walker] | None = None,
    *,
    frames: int = 30,
    fps: int = 10,
    size=(256, 144),
    codec: str = "mpeg4",
    creation_time: str | None = None,
) -> Path:
    """A video of ``frames`` frames (the container from the suffix)."""
    import av

    walkers = default_walkers() if walkers is None else walkers
    with av.open(str(path), "w") as out:
        if creation_time:
            out.metadata["creation_time"] = creation_time
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "mpeg4":
            stream.options = {"qscale": "2"}
            stream.codec_context.qmax = 4
        for n in range(1, frames + 1):
            frame = av.VideoFrame.from_ndarray(render(n, walkers, size), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_gt(path: Path, walkers: list[Walker], frames: int, *, ids: bool = True) -> Path:
    """The walkers' boxes as MOTChallenge rows (ids -1 when ``ids`` is false; 1-based pixels)."""
    rows = []
    for n in range(1, frames + 1):
        for walker in walkers:
            box = walker.box(n)
            if box is not None:
                x0, y0, x1, y1 = box
                ident = walker.ident if ids else -1
                left, top = x0 + 1, y0 + 1  # MOTChallenge pixels are 1-based
                w, h = x1 - x0, y1 - y0
                rows.append(f"{n},{ident},{left:.1f},{top:.1f},{w:.1f},{h:.1f},1,-1,-1,-1")
    path.write_text("\n".join(rows) + "\n")
    return path


def write_mot_folder(folder: Path, walkers: list[Walker], frames: int = 12, fps: int = 10):
    from PIL import Image

    (folder / "img1").mkdir(parents=True)
    for n in range(1, frames + 1):
        Image.fromarray(render(n, walkers)).save(folder / "img1" / f"{n:06d}.jpg", quality=95)
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname=test\nimDir=img1\nframeRate={fps}\nseqLength={frames}\n"
        "imWidth=256\nimHeight=144\nimExt=.jpg\n"
    )
    return folder


class ColourEmbedder:
    """A stand-in model: a crop's vector is its mean colour of the top and bottom halves
    (five parts of d = 4), so crops of one figure are alike; 3 attributes, all 0."""

    num_attributes = 3
    dim = 20

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    def embed(self, crops) -> Embedded:
        import time

        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        rows = []
        for c in crops:
            h = len(c)
            top, bottom = c[: h // 2].reshape(-1, 3).mean(0), c[h // 2 :].reshape(-1, 3).mean(0)
            parts = [np.r_[top, 1.0], np.r_[bottom, 1.0], np.r_[top, 2.0], np.r_[bottom, 2.0]]
            parts.append(np.r_[(top + bottom) / 2, 1.0])
            p = np.stack(parts).astype(np.float32)
            p /= np.linalg.norm(p, axis=1, keepdims=True)
            rows.append(p.reshape(-1) / np.sqrt(5))
        n = len(crops)
        return Embedded(
            np.asarray(rows, np.float32), np.zeros((n, 3), np.int16), np.ones((n, 5), np.float32)
        )


class BoxDetector:
    """A detector that answers the walkers' true boxes (no ids) for each frame number."""

    gives_ids = False

    def __init__(self, walkers: list[Walker]) -> None:
        self.walkers = walkers

    def detect(self, frame):
        from cerberus.footage.detect import Detections

        boxes = [w.box(frame.number) for w in self.walkers]
        return Detections.of([b for b in boxes if b is not None])
