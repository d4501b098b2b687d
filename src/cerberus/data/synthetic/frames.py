"""Drawing the synthetic footage's frames: people's sprites with exact mattes, backgrounds,
and pasting them with the ground truth (boxes, visibility) they give.

A person is drawn by the crop benchmark's renderer (:func:`render_person`) twice with the same
random state, on black and on white, with neutral camera conditions: the two pictures give the
exact colour and alpha matte of every pixel. The matte then gives the ground-truth box (pixels of
at least :data:`BOX_ALPHA`) and the visibility (the matte's share left uncovered by nearer people
and inside the frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cerberus.data.synthetic.render import Camera, IdentityDetails, render_person
from cerberus.data.synthetic.scene import PHASES, Visit

STRIDES = (0.0, 0.06, 0.12, 0.06)
"""Legs apart (fraction of the height) in each walk phase (the crop benchmark draws 0..0.08)."""
SPRITE_FILL = 0.85
"""Height of an adult in its sprite canvas (the rest is margin that the matte crops away)."""
BOX_ALPHA = 64
"""Matte value (of 255) from which a pixel counts for the ground-truth box."""


@dataclass
class Sprite:
    """One walk phase of one visit: colours and matte (uint8 RGBA) cropped to the union box of
    the visit's phases; ``foot``: (x, y) of the foot point in it; ``height``: the adult height
    in pixels it was drawn for."""

    image: Image.Image
    foot: tuple[float, float]
    height: float


def matte_camera(background: tuple[int, int, int]) -> Camera:
    """Neutral conditions (no clutter, light or noise) on a plain background: for the matte."""
    return Camera(
        background=background,
        clutter=0,
        brightness=1.0,
        contrast=1.0,
        cast=(1.0, 1.0, 1.0),
        scale=SPRITE_FILL,
        placement="centre",
        blur=0.0,
        noise=0.0,
    )


def plaindraw_background(level: int, height: int, width: int) -> np.ndarray:
    """What :func:`render_person` draws behind a person on a plain ``level`` background with no
    clutter (the ground band, 0.7 of the level, over the lowest 15%), at its output size."""
    H, W = height * 2, width * 2
    img = Image.new("RGB", (W, H), (level,) * 3)
    ImageDraw.Draw(img).rectangle([0, int(H * 0.85), W, H], fill=(int(level * 0.7),) * 3)
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32)


def camera_look(rgb: np.ndarray, look: Camera) -> np.ndarray:
    """A camera's contrast, brightness and colour cast (as the crop benchmark applies them)."""
    out = (rgb - 128.0) * look.contrast + 128.0
    return out * look.brightness * np.asarray(look.cast, dtype=np.float32)


def visit_sprites(
    visit: Visit, values: np.ndarray, details: IdentityDetails, look: Camera
) -> list[Sprite]:
    """The visit's person in every walk phase, drawn once at its largest size on its path."""
    height = float(visit.heights.max())
    ch = max(32, math.ceil(height / SPRITE_FILL))
    cw = max(16, ch // 2)
    dark, light = matte_camera((0, 0, 0)), matte_camera((255, 255, 255))
    light_bg = plaindraw_background(255, ch, cw)
    mattes = []
    for stride in STRIDES[:PHASES]:
        draw = {}
        for key, cam in (("dark", dark), ("light", light)):
            rng = np.random.default_rng(list(visit.sprite_seed))
            img = render_person(
                values, details, cam, rng, height=ch, width=cw, stride=stride,
                flip=visit.facing < 0,
            )  # fmt: skip
            draw[key] = np.asarray(img, dtype=np.float32)
        behind = (draw["light"] - draw["dark"]) / light_bg  # 1 - alpha, per channel
        # element-wise (np.mean's rounding may depend on memory alignment: not reproducible)
        alpha = np.clip(1.0 - (behind[..., 0] + behind[..., 1] + behind[..., 2]) / 3.0, 0.0, 1.0)
        colour = draw["dark"] / np.maximum(alpha, 1e-3)[..., None]
        colour = np.clip(camera_look(colour, look), 0, 255)
        alpha[alpha < 0.02] = 0.0
        mattes.append((colour, alpha))
    union = np.zeros((ch, cw), dtype=bool)
    for _, alpha in mattes:
        union |= alpha * 255 >= BOX_ALPHA
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = max(0, int(cols[0]) - 1), min(cw, int(cols[-1]) + 2)
    sprites = []
    for colour, alpha in mattes:
        rgba = np.dstack([colour, alpha * 255.0])[max(0, top - 1) : bottom, left:right]
        image = Image.fromarray(np.round(rgba).astype(np.uint8), "RGBA")
        foot = (cw / 2 - left, bottom - max(0, top - 1))
        sprites.append(Sprite(image=image, foot=foot, height=height))
    return sprites


def draw_background(look: Camera, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A static street scene: walls and buildings above, ground below, poles; (H, W, 3) float."""
    img = Image.new("RGB", (width, height), look.background)
    d = ImageDraw.Draw(img)
    horizon = int(height * 0.45)
    for _ in range(look.clutter + 3):  # buildings with windows, standing on the horizon
        x0 = int(rng.integers(-width // 8, width))
        x1 = x0 + int(rng.integers(width // 12, width // 3))
        y0 = int(rng.integers(0, horizon * 2 // 3))
        colour = tuple(int(v) for v in rng.integers(40, 220, 3))
        d.rectangle([x0, y0, x1, horizon], fill=colour)
        window = tuple(max(0, c - 50) for c in colour)
        step = max(6, (x1 - x0) // 5)
        for wx in range(x0 + step // 3, x1 - step // 2, step):
            for wy in range(y0 + step // 3, horizon - step, step):
                d.rectangle([wx, wy, wx + step // 2, wy + step // 2], fill=window)
    ground = tuple(int(c * 0.6 + 40) for c in look.background)
    d.rectangle([0, horizon, width, height], fill=ground)
    for k in range(1, 6):  # paving lines, closer together far away
        y = horizon + int((height - horizon) * (k / 6) ** 1.6)
        d.line([(0, y), (width, y)], fill=tuple(max(0, c - 25) for c in ground), width=1)
    for _ in range(int(rng.integers(2, 5))):  # poles and posts
        x = int(rng.integers(0, width))
        foot = int(horizon + rng.uniform(0.05, 0.4) * (height - horizon))
        colour = tuple(int(v) for v in rng.integers(20, 120, 3))
        d.rectangle([x, foot - int(height * rng.uniform(0.25, 0.45)), x + 3, foot], fill=colour)
    if look.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(look.blur))
    return np.clip(camera_look(np.asarray(img, dtype=np.float32), look), 0, 255)


@dataclass
class Placed:
    """A person's sprite as pasted in one frame: matte (h, w) in 0..1, colours (h, w, 3),
    frame position of its top-left pixel, and the tight box (x0, y0, x1, y1) of the person,
    exclusive ends, in frame pixels (not clipped)."""

    pid: int
    alpha: np.ndarray
    colour: np.ndarray
    x: int
    y: int
    box: tuple[int, int, int, int]


def place(sprite: Sprite, feet: np.ndarray, height: float) -> Placed | None:
    scale = height / sprite.height
    w = max(1, round(sprite.image.width * scale))
    h = max(1, round(sprite.image.height * scale))
    img = sprite.image if scale == 1.0 else sprite.image.resize((w, h), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.float32)
    alpha = a[..., 3] / 255.0
    solid = a[..., 3] >= BOX_ALPHA
    if not solid.any():
        return None
    x = round(float(feet[0]) - sprite.foot[0] * scale)
    y = round(float(feet[1]) - sprite.foot[1] * scale)
    rows, cols = np.flatnonzero(solid.any(axis=1)), np.flatnonzero(solid.any(axis=0))
    box = (x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1)
    return Placed(pid=0, alpha=alpha, colour=a[..., :3], x=x, y=y, box=box)


def compose(
    frame: np.ndarray, placed: list[Placed], clear: np.ndarray | None = None
) -> list[tuple[int, tuple[int, int, int, int], float]]:
    """Paste ``placed`` (far to near) into ``frame`` (H, W, 3 uint8, in place); returns each
    person's ``(pid, clipped box, visibility)`` for those whose box touches the frame.

    ``clear``: an (H, W) float32 array of ones to work in (given back as ones), so that a
    large frame does not allocate one per frame.
    """
    H, W = frame.shape[:2]
    clear = np.ones((H, W), dtype=np.float32) if clear is None else clear
    seen: dict[int, float] = {}
    touched = []
    for p in reversed(placed):  # near to far: visibility, from what nearer people leave
        h, w = p.alpha.shape
        x0, y0, x1, y1 = max(0, p.x), max(0, p.y), min(W, p.x + w), min(H, p.y + h)
        total = float(p.alpha.sum(dtype=np.float64))
        if x0 >= x1 or y0 >= y1 or total <= 0:
            seen[id(p)] = 0.0
            continue
        a = p.alpha[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
        seen[id(p)] = float((a * clear[y0:y1, x0:x1]).sum(dtype=np.float64)) / total
        clear[y0:y1, x0:x1] *= 1.0 - a
        touched.append((y0, y1, x0, x1))
    for y0, y1, x0, x1 in touched:
        clear[y0:y1, x0:x1] = 1.0
    rows = []
    for p in placed:  # far to near: paint
        h, w = p.alpha.shape
        x0, y0, x1, y1 = max(0, p.x), max(0, p.y), min(W, p.x + w), min(H, p.y + h)
        if x0 < x1 and y0 < y1:
            a = p.alpha[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x, None]
            c = p.colour[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
            mixed = c * a + frame[y0:y1, x0:x1] * (1.0 - a) + 0.5
            frame[y0:y1, x0:x1] = np.clip(mixed, 0, 255).astype(np.uint8)
        bx0, by0 = max(0, p.box[0]), max(0, p.box[1])
        bx1, by1 = min(W, p.box[2]), min(H, p.box[3])
        if bx0 < bx1 and by0 < by1:
            rows.append((p.pid, (bx0, by0, bx1, by1), min(1.0, seen[id(p)])))
    return rows
