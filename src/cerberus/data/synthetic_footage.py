"""Synthetic camera footage with ground truth: ``cerberus synth footage`` (README: Synthetic
footage).

The synthetic benchmark's test identities (the same attribute rows and the same drawing
details as ``cerberus synth`` with the same seed and identity counts, drawn by the same
renderer) walk through the views of several static cameras, as planned by
:mod:`cerberus.data.synthetic_scene`. Each person's body is drawn once per visit and walk phase
on a black and on a white background, which gives its exact colours and alpha matte; every
frame pastes the mattes, far people first (a nearer person occludes a farther one), onto the
camera's background. The ground truth comes from the same mattes: a box per person and frame,
and the fraction of the person that is visible.

Layout of ``DIR`` (paths relative to it)::

    footage.json            manifest: format version, seed, fps, size, cameras (name, video,
                            start time, frames, codec, ground truth), files
    cam1.mp4 ...            one video per camera (H.264, yuv420p, pts = frame index / fps)
    cam1/seqinfo.ini        MOTChallenge sequence info (name, frameRate, seqLength, size)
    cam1/gt/gt.txt          MOTChallenge ground truth (below)
    cam1/img1/000001.jpg    the frames as JPEG files (only with ``frames=True``)
    attributes.csv          person_id + one column per attribute, as a table dataset has it
    schema.yaml             the attribute schema (market1501)
    sightings.csv           person_id, camera, first_frame, last_frame, first_time, last_time,
                            frames: where and when each person is seen
    .cerberus-synthetic     marker: ``overwrite`` only replaces folders holding it

Ground-truth rows: ``frame,id,left,top,width,height,1,1,visibility``; frames are 1-based; the
id is the person_id of attributes.csv (the same in every camera); the box is the tight box of
the whole person (bags and cane included, occluded parts too) clipped to the frame, in
MOTChallenge's 1-based pixel coordinates (the top-left pixel is (1, 1)); visibility is the
fraction of the person's matte that is inside the frame and not covered by nearer people (0
when fully hidden). A row is written for every frame in which some of the box is in the frame.
"""

from __future__ import annotations

import configparser
import io
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cerberus.attribute_table import AttributeTable
from cerberus.data.synthetic import MARKER, _check_output, _publish, _start_folder
from cerberus.data.synthetic_attributes import SCHEMA, identity_rows
from cerberus.data.synthetic_render import (
    Camera,
    IdentityDetails,
    make_cameras,
    render_person,
    sample_details,
)
from cerberus.data.synthetic_scene import PHASES, FootageSpec, Plan, Visit, plan_footage
from cerberus.data.tablefiles import write_attribute_table
from cerberus.errors import CerberusError

logger = logging.getLogger(__name__)

FORMAT, VERSION = "cerberus-synthetic-footage", 1
WHAT = "synthetic footage"
MIN_SIZE, MAX_SIZE = (160, 120), (3840, 2160)
MAX_CAMERAS, MAX_SECONDS, MAX_FPS = 16, 3600.0, 60
STRIDES = (0.0, 0.06, 0.12, 0.06)
"""Legs apart (fraction of the height) in each walk phase (the crop benchmark draws 0..0.08)."""
SPRITE_FILL = 0.85
"""Height of an adult in its sprite canvas (the rest is margin that the matte crops away)."""
BOX_ALPHA = 64
"""Matte value (of 255) from which a pixel counts for the ground-truth box."""
NOISE_FIELDS = 8
"""Noise fields per camera, cycled over the frames (the sensor noise of a static camera)."""


def camera_name(camera: int) -> str:
    """``cam1``, ``cam2``, ... for camera index 0, 1, ..."""
    return f"cam{camera + 1}"


def parse_size(text: str) -> tuple[int, int]:
    """``"640x360"`` -> ``(640, 360)`` (width, height)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise CerberusError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 640x360")
    return int(parts[0]), int(parts[1])


def parse_start(text: str) -> datetime:
    """An ISO-8601 time with a time zone (``Z`` allowed), as UTC."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CerberusError(
            f"--start {text!r}: not an ISO-8601 time (e.g. 2025-06-02T08:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise CerberusError(f"--start {text!r}: give a time zone (e.g. Z or +02:00)")
    return when.astimezone(timezone.utc)


def check_spec(spec: FootageSpec) -> None:
    """Refuse, before anything is written, settings the footage cannot be made with."""
    if spec.seed < 0:
        raise CerberusError(f"--seed {spec.seed}: must be at least 0")
    if not 1 <= spec.cameras <= MAX_CAMERAS:
        raise CerberusError(f"--cameras {spec.cameras}: must be 1..{MAX_CAMERAS}")
    if not (math.isfinite(spec.seconds) and 0 < spec.seconds <= MAX_SECONDS):
        raise CerberusError(f"--seconds {spec.seconds}: must be above 0 and at most {MAX_SECONDS}")
    if not 1 <= spec.fps <= MAX_FPS:
        raise CerberusError(f"--fps {spec.fps}: must be 1..{MAX_FPS}")
    if spec.frames < 2:
        raise CerberusError(f"--seconds {spec.seconds} at --fps {spec.fps}: fewer than 2 frames")
    (w0, h0), (w1, h1) = MIN_SIZE, MAX_SIZE
    size = f"--size {spec.width}x{spec.height}"
    if not (w0 <= spec.width <= w1 and h0 <= spec.height <= h1):
        raise CerberusError(f"{size}: must be {w0}x{h0} to {w1}x{h1}")
    if spec.width % 2 or spec.height % 4:
        raise CerberusError(f"{size}: width must be even and height a multiple of 4 (yuv420p)")
    if spec.train_ids < 2 or spec.test_ids < 2 or spec.train_ids + spec.test_ids > 9000:
        raise CerberusError(
            f"--train-ids {spec.train_ids} --test-ids {spec.test_ids}: need at least 2 each "
            "and at most 9000 in all (as cerberus synth)"
        )
    if not 1 <= spec.people <= spec.test_ids:
        raise CerberusError(
            f"--people {spec.people}: must be 1..{spec.test_ids} (the benchmark's test "
            "identities; raise --test-ids for more)"
        )


# ----------------------------------------------------------------------------- drawing


@dataclass
class _Sprite:
    """One walk phase of one visit: colours and matte (uint8 RGBA) cropped to the union box of
    the visit's phases; ``foot``: (x, y) of the foot point in it; ``height``: the adult height
    in pixels it was drawn for."""

    image: Image.Image
    foot: tuple[float, float]
    height: float


def _matte_camera(background: tuple[int, int, int]) -> Camera:
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


def _plain_background(level: int, height: int, width: int) -> np.ndarray:
    """What :func:`render_person` draws behind a person on a plain ``level`` background with no
    clutter (the ground band, 0.7 of the level, over the lowest 15%), at its output size."""
    H, W = height * 2, width * 2
    img = Image.new("RGB", (W, H), (level,) * 3)
    ImageDraw.Draw(img).rectangle([0, int(H * 0.85), W, H], fill=(int(level * 0.7),) * 3)
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32)


def _look(rgb: np.ndarray, look: Camera) -> np.ndarray:
    """A camera's contrast, brightness and colour cast (as the crop benchmark applies them)."""
    out = (rgb - 128.0) * look.contrast + 128.0
    return out * look.brightness * np.asarray(look.cast, dtype=np.float32)


def _visit_sprites(
    visit: Visit, values: np.ndarray, details: IdentityDetails, look: Camera
) -> list[_Sprite]:
    """The visit's person in every walk phase, drawn once at its largest size on its path."""
    height = float(visit.heights.max())
    ch = max(32, math.ceil(height / SPRITE_FILL))
    cw = max(16, ch // 2)
    dark, light = _matte_camera((0, 0, 0)), _matte_camera((255, 255, 255))
    light_bg = _plain_background(255, ch, cw)
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
        alpha = np.clip(1.0 - behind.mean(axis=2), 0.0, 1.0)
        colour = draw["dark"] / np.maximum(alpha, 1e-3)[..., None]
        colour = np.clip(_look(colour, look), 0, 255)
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
        sprites.append(_Sprite(image=image, foot=foot, height=height))
    return sprites


def _background(look: Camera, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
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
    return np.clip(_look(np.asarray(img, dtype=np.float32), look), 0, 255)


@dataclass
class _Placed:
    """A person's sprite as pasted in one frame: matte (h, w) in 0..1, colours (h, w, 3),
    frame position of its top-left pixel, and the tight box (x0, y0, x1, y1) of the person,
    exclusive ends, in frame pixels (not clipped)."""

    pid: int
    alpha: np.ndarray
    colour: np.ndarray
    x: int
    y: int
    box: tuple[int, int, int, int]


def _place(sprite: _Sprite, feet: np.ndarray, height: float) -> _Placed | None:
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
    return _Placed(pid=0, alpha=alpha, colour=a[..., :3], x=x, y=y, box=box)


def _compose(
    frame: np.ndarray, placed: list[_Placed]
) -> list[tuple[int, tuple[int, int, int, int], float]]:
    """Paste ``placed`` (far to near) into ``frame`` (H, W, 3 float, in place); returns each
    person's ``(pid, clipped box, visibility)`` for those whose box touches the frame."""
    H, W = frame.shape[:2]
    clear = np.ones((H, W), dtype=np.float32)  # what nearer people leave uncovered
    seen: dict[int, float] = {}
    for p in reversed(placed):  # near to far: visibility
        h, w = p.alpha.shape
        x0, y0, x1, y1 = max(0, p.x), max(0, p.y), min(W, p.x + w), min(H, p.y + h)
        total = float(p.alpha.sum())
        if x0 >= x1 or y0 >= y1 or total <= 0:
            seen[id(p)] = 0.0
            continue
        a = p.alpha[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
        seen[id(p)] = float((a * clear[y0:y1, x0:x1]).sum()) / total
        clear[y0:y1, x0:x1] *= 1.0 - a
    rows = []
    for p in placed:  # far to near: paint
        h, w = p.alpha.shape
        x0, y0, x1, y1 = max(0, p.x), max(0, p.y), min(W, p.x + w), min(H, p.y + h)
        if x0 < x1 and y0 < y1:
            a = p.alpha[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x, None]
            c = p.colour[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
            frame[y0:y1, x0:x1] = c * a + frame[y0:y1, x0:x1] * (1.0 - a)
        bx0, by0 = max(0, p.box[0]), max(0, p.box[1])
        bx1, by1 = min(W, p.box[2]), min(H, p.box[3])
        if bx0 < bx1 and by0 < by1:
            rows.append((p.pid, (bx0, by0, bx1, by1), min(1.0, seen[id(p)])))
    return rows


# ----------------------------------------------------------------------------- writing


def video_codec() -> str:
    """The encoder used: libx264 (H.264) when PyAV's FFmpeg has it, else mpeg4 (MPEG-4 part 2)."""
    try:
        import av
    except ImportError:
        raise CerberusError(
            "synth footage: videos need PyAV (pip install 'cerberus-reid[footage]'); "
            "--frames --no-video writes JPEG frames without it"
        ) from None

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001  (PyAV raises its own error types, version-dependent)
        return "mpeg4"


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3H/2, W) uint8 planar YUV 4:2:0, BT.601 limited range (what
    decoders assume for untagged SD video). Done here rather than by FFmpeg's swscale, whose
    output varied between runs: the videos are then the same bytes for the same seed."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    h, w = y.shape

    def half(c: np.ndarray) -> np.ndarray:  # 2x2 means: the chroma of four pixels
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).reshape(h // 4, w)

    planes = np.concatenate([y, half(u), half(v)], axis=0)
    return np.clip(planes + 0.5, 0, 255).astype(np.uint8)


class _Video:
    """An MP4 file written frame by frame: yuv420p, pts = frame index, time base 1 / fps."""

    def __init__(self, path: Path, spec: FootageSpec, codec: str):
        import av

        self.container = av.open(str(path), mode="w", format="mp4")
        self.stream = self.container.add_stream(codec, rate=Fraction(spec.fps))
        self.stream.width, self.stream.height = spec.width, spec.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = Fraction(1, spec.fps)
        self.stream.codec_context.time_base = Fraction(1, spec.fps)
        if codec == "libx264":
            # one thread: x264's output is then the same bytes on every machine and run
            self.stream.options = {"crf": "20", "preset": "veryfast", "threads": "1"}
            self.stream.codec_context.gop_size = 2 * spec.fps
        else:
            self.stream.codec_context.bit_rate = spec.width * spec.height * spec.fps // 4
            self.stream.codec_context.gop_size = 2 * spec.fps
            self.stream.codec_context.thread_count = 1
        self.av = av

    def write(self, rgb: np.ndarray, index: int) -> None:
        frame = self.av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
        frame.pts = index
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def _seqinfo(name: str, spec: FootageSpec) -> str:
    ini = configparser.ConfigParser()
    ini.optionxform = str  # type: ignore[assignment,method-assign]  (keep the key case)
    ini["Sequence"] = {
        "name": name,
        "imDir": "img1",
        "frameRate": str(spec.fps),
        "seqLength": str(spec.frames),
        "imWidth": str(spec.width),
        "imHeight": str(spec.height),
        "imExt": ".jpg",
    }
    buffer = io.StringIO()
    ini.write(buffer, space_around_delimiters=False)
    return buffer.getvalue()


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class _Camera:
    """What rendering one camera gave: its MOT rows and, per person, (first, last) frame."""

    name: str
    start: datetime
    rows: list[str]
    seen: dict[int, tuple[int, int, int]]  # pid -> (first frame, last frame, frames)


def _render_camera(
    camera: int,
    plan: Plan,
    people: dict[int, tuple[np.ndarray, IdentityDetails]],
    look: Camera,
    out: Path,
    *,
    video: str | None,
    frames: bool,
) -> _Camera:
    """Draw every frame of ``camera``; write its video and / or JPEG frames and its seqinfo."""
    spec = plan.spec
    name = camera_name(camera)
    rng = np.random.default_rng([spec.seed, camera, 0xBAC])
    scene = _background(look, rng, spec.width, spec.height)
    sigma = look.noise * 0.5
    noisy = [
        np.clip(scene + rng.normal(0.0, sigma, scene.shape), 0, 255).astype(np.float32)
        for _ in range(NOISE_FIELDS)
    ]
    lo, hi = plan.window(camera)
    visits = [v for v in plan.visits if v.camera == camera and v.end > lo and v.start < hi]
    sprites: dict[int, list[_Sprite]] = {}
    writer = _Video(out / f"{name}.mp4", spec, video) if video else None
    if frames:
        (out / name / "img1").mkdir(parents=True)
    rows: list[str] = []
    seen: dict[int, tuple[int, int, int]] = {}
    try:
        for n in range(1, spec.frames + 1):
            tick = lo + n - 1
            here = [v for v in visits if v.start <= tick < v.end]
            placed = []
            for v in here:
                i = tick - v.start
                if id(v) not in sprites:
                    sprites[id(v)] = _visit_sprites(v, *people[v.pid], look)
                p = _place(sprites[id(v)][int(v.phases[i])], v.feet[i], float(v.heights[i]))
                if p is not None:
                    p.pid = v.pid
                    placed.append((float(v.feet[i][1]), v.pid, p))
            placed.sort(key=lambda e: (e[0], e[1]))  # far (higher up) first, then by id
            frame = noisy[n % NOISE_FIELDS].copy()
            for pid, (x0, y0, x1, y1), vis in _compose(frame, [e[2] for e in placed]):
                rows.append(f"{n},{pid},{x0 + 1},{y0 + 1},{x1 - x0},{y1 - y0},1,1,{vis:.3f}")
                first, _, count = seen.get(pid, (n, n, 0))
                seen[pid] = (first, n, count + 1)
            rgb = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
            if writer is not None:
                writer.write(rgb, n - 1)
            if frames:
                Image.fromarray(rgb).save(out / name / "img1" / f"{n:06d}.jpg", quality=92)
    finally:
        if writer is not None:
            writer.close()
    rows.sort(key=lambda r: tuple(int(x) for x in r.split(",")[:2]))
    (out / name / "gt").mkdir(parents=True, exist_ok=True)
    (out / name / "gt" / "gt.txt").write_text("".join(r + "\n" for r in rows))
    (out / name / "seqinfo.ini").write_text(_seqinfo(name, spec))
    start = spec.start + timedelta(seconds=lo / spec.fps)
    return _Camera(name=name, start=start, rows=rows, seen=seen)


def footage_people(spec: FootageSpec) -> tuple[np.ndarray, np.ndarray, list[IdentityDetails]]:
    """The people who walk: benchmark test identities ``1, 3, ..., 2 * people - 1``.

    Returns ``(ids (P,), attribute values (P, A), drawing details)``, exactly as
    ``cerberus synth --seed S --train-ids T --test-ids U`` draws its test identities.
    """
    _, test_rows = identity_rows(spec.train_ids, spec.test_ids, spec.seed)
    ids = np.arange(spec.people, dtype=np.int64) * 2 + 1
    values = test_rows[: spec.people]
    details = [
        sample_details(np.random.default_rng([spec.seed, int(pid), 2, 0]), row)
        for pid, row in zip(ids, values)
    ]
    return ids, values, details


def _write_sightings(out: Path, cameras: list[_Camera], fps: int) -> int:
    lines = ["person_id,camera,first_frame,last_frame,first_time,last_time,frames"]
    entries = []
    for cam in cameras:
        for pid, (first, last, count) in cam.seen.items():
            t0 = cam.start + timedelta(seconds=(first - 1) / fps)
            t1 = cam.start + timedelta(seconds=(last - 1) / fps)
            entries.append((pid, t0, cam.name, first, last, _iso(t0), _iso(t1), count))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    for pid, _, name, first, last, t0, t1, count in entries:
        lines.append(f"{pid},{name},{first},{last},{t0},{t1},{count}")
    (out / "sightings.csv").write_text("\n".join(lines) + "\n")
    return len(entries)


def _manifest(spec: FootageSpec, cameras: list[_Camera], codec: str | None, frames: bool) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "generator": "cerberus synth footage",
        "seed": spec.seed,
        "fps": spec.fps,
        "width": spec.width,
        "height": spec.height,
        "frames": spec.frames,
        "seconds": spec.frames / spec.fps,
        "people": spec.people,
        "identities": {
            "benchmark": f"cerberus synth --seed {spec.seed} --train-ids {spec.train_ids} "
            f"--test-ids {spec.test_ids} (its test identities 1, 3, ..., {2 * spec.people - 1})",
            "attributes": "attributes.csv",
            "schema": "schema.yaml",
        },
        "sightings": "sightings.csv",
        "ground_truth": {
            "format": "MOTChallenge",
            "columns": "frame,id,left,top,width,height,conf,class,visibility",
            "frames": "1-based",
            "pixels": "1-based (the top-left pixel is (1, 1)), boxes clipped to the frame",
            "id": "person_id of attributes.csv, the same in every camera",
            "visibility": "fraction of the person inside the frame and not covered by others",
        },
        "cameras": [
            {
                "name": cam.name,
                "start": _iso(cam.start),
                "frames": spec.frames,
                "video": f"{cam.name}.mp4" if codec else None,
                "codec": {"libx264": "h264"}.get(codec, codec) if codec else None,
                "pix_fmt": "yuv420p" if codec else None,
                "images": f"{cam.name}/img1" if frames else None,
                "seqinfo": f"{cam.name}/seqinfo.ini",
                "gt": f"{cam.name}/gt/gt.txt",
                "gt_rows": len(cam.rows),
            }
            for cam in cameras
        ],
    }


@dataclass
class FootageSummary:
    """What :func:`generate_footage` wrote."""

    root: Path
    cameras: int
    frames: int
    people: int
    boxes: int
    sightings: int
    reappearing: int
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.cameras} cameras x {self.frames} frames, {self.people} people, "
            f"{self.boxes} ground-truth boxes, {self.sightings} sightings "
            f"({self.reappearing} people seen in 2+ cameras); {self.seconds:.1f}s"
        )


def generate_footage(
    out_dir: str | Path,
    spec: FootageSpec | None = None,
    *,
    overwrite: bool = False,
    video: bool = True,
    frames: bool = False,
) -> FootageSummary:
    """Write a synthetic footage set with ground truth into ``out_dir`` (layout: module doc).

    ``video``: one MP4 per camera; ``frames``: the frames as MOTChallenge ``img1`` JPEG folders
    (at least one of the two). Bad settings are refused before anything is written; the files
    are written into a hidden folder beside ``out_dir`` and moved into place when complete
    (``overwrite`` replaces only a folder written by ``cerberus synth``).
    """
    spec = spec or FootageSpec()
    check_spec(spec)
    if not (video or frames):
        raise CerberusError("synth footage: --no-video needs --frames (nothing would be written)")
    out = Path(out_dir)
    _check_output(out, overwrite, WHAT)
    codec = video_codec() if video else None
    t0 = time.perf_counter()
    ids, values, details = footage_people(spec)
    people = {int(p): (v, d) for p, v, d in zip(ids, values, details)}
    plan = plan_footage(spec)
    looks = make_cameras(spec.cameras, spec.seed)
    tmp, made = _start_folder(out)
    try:
        (tmp / MARKER).write_text("synthetic footage written by cerberus synth footage\n")
        cameras = [
            _render_camera(c, plan, people, looks[c], tmp, video=codec, frames=frames)
            for c in range(spec.cameras)
        ]
        write_attribute_table(tmp, SCHEMA, [AttributeTable(SCHEMA, ids, values)])
        sightings = _write_sightings(tmp, cameras, spec.fps)
        text = json.dumps(_manifest(spec, cameras, codec, frames), indent=2) + "\n"
        (tmp / "footage.json").write_text(text)
        _publish(tmp, out, overwrite, WHAT)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise CerberusError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)  # only empty folders made for the output
        raise
    counts: dict[int, int] = {}
    for cam in cameras:
        for pid in cam.seen:
            counts[pid] = counts.get(pid, 0) + 1
    return FootageSummary(
        root=out,
        cameras=spec.cameras,
        frames=spec.frames,
        people=len(counts),
        boxes=sum(len(c.rows) for c in cameras),
        sightings=sightings,
        reappearing=sum(1 for n in counts.values() if n > 1),
        seconds=time.perf_counter() - t0,
    )
