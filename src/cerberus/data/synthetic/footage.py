"""Synthetic camera footage with ground truth: ``cerberus synth footage`` (docs/synthetic.md).

The synthetic benchmark's test identities (the same attribute rows and the same drawing
details as ``cerberus synth`` with the same seed and identity counts, drawn by the same
renderer) walk through the views of several static cameras, as planned by
:mod:`cerberus.data.synthetic.scene`. Each person's body is drawn once per visit and walk phase
on a black and on a white background, which gives its exact colours and alpha matte; every
frame pastes the mattes, far people first (a nearer person occludes a farther one), onto the
camera's background (:mod:`cerberus.data.synthetic.frames`). The ground truth comes from the
same mattes: a box per person and frame, and the fraction of the person that is visible.
:func:`read_footage_manifest` and :func:`read_sightings` read a set back.

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
import csv
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
from PIL import Image

from cerberus.attributes.table import AttributeTable
from cerberus.data.synthetic.attributes import SCHEMA, identity_rows
from cerberus.data.synthetic.benchmark import MARKER, _check_output, _publish, _start_folder
from cerberus.data.synthetic.frames import (
    Sprite,
    compose,
    draw_background,
    place,
    visit_sprites,
)
from cerberus.data.synthetic.render import Camera, IdentityDetails, make_cameras, sample_details
from cerberus.data.synthetic.scene import FootageSpec, Plan, plan_footage
from cerberus.data.table_reader import write_attribute_table
from cerberus.data.times import from_utc_seconds, to_utc_seconds
from cerberus.errors import CerberusError

logger = logging.getLogger(__name__)

FORMAT, VERSION = "cerberus-synthetic-footage", 1
WHAT = "synthetic footage"
MIN_SIZE, MAX_SIZE = (160, 120), (3840, 2160)
MAX_CAMERAS, MAX_SECONDS, MAX_FPS = 16, 3600.0, 60
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
    """An ISO-8601 time with a time zone (``Z`` allowed), as UTC
    (:func:`cerberus.data.times.to_utc_seconds`, the one parser)."""
    return from_utc_seconds(to_utc_seconds(text, "--start"))


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
    decoders assume for untagged SD video), chroma from the sum of each 2x2 block. Integer
    arithmetic: exact, fast, and the same bytes on every run (FFmpeg's swscale gave frames that
    varied between runs)."""
    x = rgb.astype(np.uint16)  # luma sums stay below 2**16
    h, w = x.shape[:2]
    y = ((66 * x[..., 0] + 129 * x[..., 1] + 25 * x[..., 2] + 128) >> 8) + 16
    q = (x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2]).astype(np.int32)
    r4, g4, b4 = q[..., 0], q[..., 1], q[..., 2]  # sums of 4 pixels
    u = ((-38 * r4 - 74 * g4 + 112 * b4 + 512) >> 10) + 128
    v = ((112 * r4 - 94 * g4 - 18 * b4 + 512) >> 10) + 128
    chroma = np.clip(np.concatenate([u.reshape(h // 4, w), v.reshape(h // 4, w)]), 0, 255)
    return np.concatenate([y.astype(np.uint8), chroma.astype(np.uint8)], axis=0)


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
            # the same bytes on every run: one thread, and no macroblock tree (with it, this
            # x264 build gave other bytes for the same frames after other memory use)
            self.stream.options = {
                "crf": "23",
                "preset": "veryfast",
                "threads": "1",
                "x264-params": "mbtree=0",
            }
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
    scene = draw_background(look, rng, spec.width, spec.height)
    sigma = look.noise * 0.5
    noisy = []  # uint8: a frame starts as a copy of one
    for _ in range(NOISE_FIELDS):
        noise = rng.standard_normal(scene.shape, np.float32) * sigma
        noisy.append(np.clip(scene + noise + 0.5, 0, 255).astype(np.uint8))
    clear = np.ones((spec.height, spec.width), dtype=np.float32)
    lo, hi = plan.window(camera)
    visits = [v for v in plan.visits if v.camera == camera and v.end > lo and v.start < hi]
    sprites: dict[int, list[Sprite]] = {}
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
                    sprites[id(v)] = visit_sprites(v, *people[v.pid], look)
                p = place(sprites[id(v)][int(v.phases[i])], v.feet[i], float(v.heights[i]))
                if p is not None:
                    p.pid = v.pid
                    placed.append((float(v.feet[i][1]), v.pid, p))
            placed.sort(key=lambda e: (e[0], e[1]))  # far (higher up) first, then by id
            frame = noisy[n % NOISE_FIELDS].copy()
            for pid, (x0, y0, x1, y1), vis in compose(frame, [e[2] for e in placed], clear):
                rows.append(f"{n},{pid},{x0 + 1},{y0 + 1},{x1 - x0},{y1 - y0},1,1,{vis:.3f}")
                first, _, count = seen.get(pid, (n, n, 0))
                seen[pid] = (first, n, count + 1)
            rgb = frame
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
        cameras = []
        for c in range(spec.cameras):
            cameras.append(
                _render_camera(c, plan, people, looks[c], tmp, video=codec, frames=frames)
            )
            logger.info(
                "%s: %d frames, %d ground-truth boxes (%.1fs)",
                cameras[-1].name, spec.frames, len(cameras[-1].rows), time.perf_counter() - t0,
            )  # fmt: skip
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


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Sighting:
    """One row of ``sightings.csv``: a person seen by one camera from one frame to another."""

    person_id: int
    camera: str
    first_frame: int
    last_frame: int
    first_time: datetime
    last_time: datetime
    frames: int


def read_footage_manifest(root: str | Path) -> dict:
    """``footage.json`` of a footage folder, checked to be this format and version."""
    path = Path(root) / "footage.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CerberusError(f"{path}: not found (not a cerberus synth footage folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CerberusError(f"{path}: cannot read the manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CerberusError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise CerberusError(
            f"{path}: format version {manifest.get('version')!r}, this code reads {VERSION}"
        )
    return manifest


def read_sightings(root: str | Path) -> list[Sighting]:
    """The rows of ``sightings.csv`` (by person, then time)."""
    path = Path(root) / "sightings.csv"
    out = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    out.append(
                        Sighting(
                            person_id=int(row["person_id"]),
                            camera=row["camera"],
                            first_frame=int(row["first_frame"]),
                            last_frame=int(row["last_frame"]),
                            first_time=datetime.fromisoformat(row["first_time"]),
                            last_time=datetime.fromisoformat(row["last_time"]),
                            frames=int(row["frames"]),
                        )
                    )
                except (KeyError, TypeError, ValueError):
                    raise CerberusError(f"{path}: line {line}: malformed sighting") from None
    except OSError as exc:
        raise CerberusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return out
