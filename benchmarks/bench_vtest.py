"""People in real footage (issue 29 item 6): a gallery ingested from vtest.avi scored against the
people annotated by eye in ``benchmarks/data/vtest_people.csv`` (30 frames, 101-391 every 10th).

At each annotated frame, the boxes of the tracks alive on it (each track's path, read with
``store.paths()``: detected or predicted boxes alike) are matched one-to-one to the annotated
people by the Hungarian method on IoU (a pair needs IoU >= 0.5; the most pairs, then the
highest IoU sum). First to the people not ignored; a box left over that has IoU >= 0.5 with an
ignored person (under 60 px tall, cut by the frame edge, mostly hidden), or lies at least half
inside one, counts neither way. Then:

- recall: matched people / people not ignored;
- precision: matched boxes / boxes not excused;
- tracks per person: distinct tracks matched to one annotated identity, mean over the
  identities matched at least once (1.0: each person is one track);
- crop <= 2 s: people-frames (not ignored) whose matched track has a stored crop (an item)
  within 2 s of the frame, over all the people-frames not ignored;
- the ingest's wall time (the whole command), its start-up (the same command on a one-frame
  clip of the video) and real time / wall time.

    python benchmarks/bench_vtest.py                     # ingest runs/vtest/vtest.avi, score it
    python benchmarks/bench_vtest.py --detector hog --ingest-args "--upscale 1.5"
    python benchmarks/bench_vtest.py --gallery runs/vtest/gallery   # score an existing gallery
    python benchmarks/bench_vtest.py --raw hog --upscale 1.5         # a detector's own boxes

``--raw SPEC`` scores a detector's boxes on the annotated frames (each frame searched whole,
no tracker: every box its own one-frame track, so tracks per person and crops do not apply).
The ingest runs ``cerberus ingest VIDEO --camera plaza --gallery G --checkpoint C --replace``
(plus ``--detector SPEC`` when given, and ``--ingest-args``) in a subprocess.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, print_machine, run_script  # noqa: E402

from cerberus.errors import CerberusError  # noqa: E402

ANNOTATIONS = ROOT / "benchmarks" / "data" / "vtest_people.csv"
VIDEO = ROOT / "runs" / "vtest" / "vtest.avi"
CHECKPOINT = ROOT / "runs" / "demo" / "last.pt"
COLUMNS = ("frame", "person", "left", "top", "right", "bottom", "ignore")
IOU_MIN = 0.5
INSIDE_MIN = 0.5
WINDOW_S = 2.0


# --------------------------------------------------------------------------- annotations


@dataclass
class Truth:
    """The annotated people, one row per (frame, person).

    Attributes:
        frames: ``(n,)`` int64 frame numbers (1-based, the gallery's numbering).
        person: ``(n,)`` int64 identity kept across frames.
        boxes: ``(n, 4)`` float64 ``left, top, right, bottom`` pixels.
        ignore: ``(n,)`` bool: neither a miss nor a false box.
    """

    frames: np.ndarray
    person: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray

    def at(self, frame: int) -> np.ndarray:
        """Row indices of ``frame``."""
        return np.flatnonzero(self.frames == frame)

    @property
    def frame_numbers(self) -> list[int]:
        return sorted({int(f) for f in self.frames})


def read_truth(path: Path) -> Truth:
    """The annotation CSV (columns :data:`COLUMNS`); a missing or malformed file is one line."""
    if not path.is_file():
        raise CerberusError(f"{path}: no annotation file (benchmarks/data/vtest_people.csv)")
    rows = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not set(COLUMNS) <= set(reader.fieldnames):
            raise CerberusError(f"{path}: needs the columns {', '.join(COLUMNS)}")
        for n, row in enumerate(reader, start=2):
            try:
                rows.append([int(row[c]) for c in COLUMNS])
            except (TypeError, ValueError):
                raise CerberusError(f"{path}:{n}: not whole numbers: {row}") from None
    a = np.asarray(rows, np.int64).reshape(-1, len(COLUMNS))
    truth = Truth(a[:, 0], a[:, 1], a[:, 2:6].astype(np.float64), a[:, 6] != 0)
    bad = (truth.boxes[:, 2] <= truth.boxes[:, 0]) | (truth.boxes[:, 3] <= truth.boxes[:, 1])
    if bad.any():
        raise CerberusError(f"{path}: row {int(np.flatnonzero(bad)[0]) + 2}: an empty box")
    return truth


def read_truths(paths: list[Path]) -> Truth:
    """Several annotation files as one (disjoint frames; the identities of the ``k``-th file
    offset by ``1000 k``, so that no two files share one)."""
    parts = [read_truth(p) for p in paths]
    for k, t in enumerate(parts):
        for j in range(k):
            both = set(t.frame_numbers) & set(parts[j].frame_numbers)
            if both:
                raise CerberusError(
                    f"{paths[k]} and {paths[j]}: both annotate frame {min(both)}; give one"
                )
    return Truth(
        np.concatenate([t.frames for t in parts]),
        np.concatenate([t.person + 1000 * k for k, t in enumerate(parts)]),
        np.concatenate([t.boxes for t in parts]),
        np.concatenate([t.ignore for t in parts]),
    )


# --------------------------------------------------------------------------- matching


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, m)`` intersection over union of boxes ``a`` ``(n, 4)`` and ``b`` ``(m, 4)``
    (``left, top, right, bottom``)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def match(iou: np.ndarray, threshold: float = IOU_MIN) -> list[tuple[int, int]]:
    """One-to-one pairs ``(row, column)`` of an ``(n, m)`` IoU matrix, each with IoU >=
    ``threshold``: the most pairs, and among those the highest IoU sum (Hungarian method on the
    cost ``1 - IoU``, a pair below the threshold costing more than any set of valid ones)."""
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return []
    valid = iou >= threshold
    big = 2.0 * (min(iou.shape) + 1)  # above the cost of every valid pair together
    cost = np.where(valid, 1.0 - iou, big)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if valid[r, c]]


def excused(pred: np.ndarray, ignored: np.ndarray) -> np.ndarray:
    """``(m,)`` bool: predicted boxes that have IoU >= 0.5 with an ignored person or lie at
    least half inside one (their area's share inside >= :data:`INSIDE_MIN`)."""
    pred = np.asarray(pred, np.float64).reshape(-1, 4)
    ignored = np.asarray(ignored, np.float64).reshape(-1, 4)
    if len(pred) == 0 or len(ignored) == 0:
        return np.zeros(len(pred), bool)
    area = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    inside = _intersection(pred, ignored) / np.maximum(area, 1e-12)[:, None]
    return ((iou_matrix(pred, ignored) >= IOU_MIN) | (inside >= INSIDE_MIN)).any(axis=1)


# --------------------------------------------------------------------------- scoring


@dataclass
class FrameBoxes:
    """The boxes a gallery (or a detector) gives on one frame: ``tracks`` ``(m,)`` int64,
    ``boxes`` ``(m, 4)`` float64 pixels."""

    tracks: np.ndarray
    boxes: np.ndarray

    @staticmethod
    def empty() -> FrameBoxes:
        return FrameBoxes(np.zeros(0, np.int64), np.zeros((0, 4)))


@dataclass
class Scores:
    """What :func:`score` counts (see the module doc for the rules)."""

    people: int = 0
    """People-frames not ignored."""
    covered: int = 0
    """... of which matched by a box."""
    boxes: int = 0
    """Boxes on the annotated frames, the excused ones left out."""
    true_boxes: int = 0
    """... of which matched to a person."""
    excused: int = 0
    identities: int = 0
    """Annotated identities with at least one box not ignored."""
    tracks_per_identity: dict[int, int] = field(default_factory=dict)
    """Identity -> distinct tracks matched to it (identities never matched left out)."""
    with_crop: int = 0
    """People-frames whose matched track has a crop within the window."""
    per_frame: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    """Frame -> (people, covered, boxes, true boxes)."""

    @property
    def recall(self) -> float:
        return self.covered / self.people if self.people else float("nan")

    @property
    def precision(self) -> float:
        return self.true_boxes / self.boxes if self.boxes else float("nan")

    @property
    def tracks_per_person(self) -> float:
        v = list(self.tracks_per_identity.values())
        return float(np.mean(v)) if v else float("nan")

    @property
    def crop_rate(self) -> float:
        return self.with_crop / self.people if self.people else float("nan")


def path_boxes(paths: dict, frames: list[int]) -> dict[int, FrameBoxes]:
    """Per frame of ``frames``, the boxes of the replayed ``paths`` (track -> ``(frames, boxes,
    detected)``, frames sorted) alive on it, with their track ids."""
    found = {}
    for f in frames:
        tracks, boxes = [], []
        for t, (fr, b, _) in paths.items():
            i = np.searchsorted(fr, f)
            if i < len(fr) and fr[i] == f:
                tracks.append(t)
                boxes.append(b[i])
        found[f] = FrameBoxes(np.asarray(tracks, np.int64),
                              np.asarray(boxes, np.float64).reshape(-1, 4))  # fmt: skip
    return found


def score(
    truth: Truth,
    found: dict[int, FrameBoxes],
    crops: dict[int, np.ndarray] | None = None,
    window: float = 20.0,
) -> Scores:
    """Score the boxes ``found`` on the annotated frames (missing frame: no box) against
    ``truth``. ``crops``: track -> frame numbers of its stored crops (``None``: no crop
    counted); ``window``: frames either side within which a crop counts (2 s x fps)."""
    out = Scores()
    matched: dict[int, set[int]] = {}
    for frame in truth.frame_numbers:
        rows = truth.at(frame)
        keep, ign = rows[~truth.ignore[rows]], rows[truth.ignore[rows]]
        got = found.get(frame, FrameBoxes.empty())
        pairs = match(iou_matrix(truth.boxes[keep], got.boxes))
        hit = np.zeros(len(got.tracks), bool)
        for r, c in pairs:
            hit[c] = True
            person, track = int(truth.person[keep[r]]), int(got.tracks[c])
            matched.setdefault(person, set()).add(track)
            if crops is not None:
                near = np.abs(np.asarray(crops.get(track, ()), np.int64) - frame) <= window
                out.with_crop += int(near.any())
        free = excused(got.boxes[~hit], truth.boxes[ign])
        counted = len(got.tracks) - int(free.sum())
        out.excused += int(free.sum())
        out.people += len(keep)
        out.covered += len(pairs)
        out.boxes += counted
        out.true_boxes += len(pairs)
        out.per_frame[frame] = (len(keep), len(pairs), counted, len(pairs))
    identities = {int(p) for p in truth.person[~truth.ignore]}
    out.identities = len(identities)
    out.tracks_per_identity = {p: len(t) for p, t in sorted(matched.items()) if p in identities}
    return out


def boxes_of_paths(paths, frames: list[int]) -> dict[int, FrameBoxes]:
    """The path boxes of ``paths`` (:class:`~cerberus.store.base.TrackPath`) on ``frames``."""
    tracks: dict[int, list[int]] = {f: [] for f in frames}
    boxes: dict[int, list[np.ndarray]] = {f: [] for f in frames}
    for p in paths:
        for f in frames:
            i = np.searchsorted(p.frames, f)
            if i < len(p.frames) and p.frames[i] == f:
                tracks[f].append(int(p.track))
                boxes[f].append(np.asarray(p.boxes[i], np.float64))
    return {
        f: FrameBoxes(np.asarray(tracks[f], np.int64), np.asarray(boxes[f]).reshape(-1, 4))
        for f in frames
    }


# --------------------------------------------------------------------------- sources


def gallery_boxes(gallery: str, video: Path, frames: list[int]):
    """``(found, crops, source)`` from a gallery: the path boxes of the video's tracks on
    ``frames`` and each track's crop frames."""
    from cerberus.footage.video import source_name
    from cerberus.store.base import StoreError
    from cerberus.store.open import existing_store

    try:
        store = existing_store(gallery)
    except StoreError as exc:
        raise CerberusError(str(exc)) from None
    if store is None:
        raise CerberusError(f"{gallery}: no gallery there (leave --gallery out to ingest one)")
    try:
        names = [s.name for s in store.sources()]
        same = [n for n in names if n == source_name(video) or Path(n).name == video.name]
        source = same[0] if same else names[0] if len(names) == 1 else None
        if source is None:
            raise CerberusError(f"{gallery}: holds no source {video.name} (sources: {names})")
        try:
            paths = store.paths(source=source)
        except (AttributeError, NotImplementedError) as exc:
            raise CerberusError(
                f"{gallery}: this gallery backend keeps no track paths ({exc}); "
                "re-ingest with a cerberus that stores them"
            ) from None
        items = store.get(store.ids(), vectors=False)
    finally:
        store.close()
    crops: dict[int, list[int]] = {}
    for s, t, f in zip(items.source, items.track, items.frame):
        if s == source:
            crops.setdefault(int(t), []).append(int(f))
    return boxes_of_paths(paths, frames), {t: np.asarray(v) for t, v in crops.items()}, source


def raw_boxes(
    video: Path, frames: list[int], spec: str, upscale: float, min_score: float | None = None
) -> dict[int, FrameBoxes]:
    """A detector's boxes on ``frames`` (each frame searched whole; every box its own
    one-frame track with a negative id), those scored below ``min_score`` left out."""
    from cerberus.footage.detectors import make_detector
    from cerberus.footage.video import open_source

    options = {"upscale": upscale, "motion": False} if spec == "hog" else {}
    detector = make_detector(spec, **options)
    out: dict[int, FrameBoxes] = {}
    next_id = -1
    wanted = set(frames)
    for frame in open_source(video).frames():
        if frame.number in wanted:
            det = detector.detect(frame)
            keep = np.ones(len(det), bool) if min_score is None else det.scores >= min_score
            n = int(keep.sum())
            out[frame.number] = FrameBoxes(
                np.arange(next_id, next_id - n, -1, dtype=np.int64),
                np.asarray(det.boxes, np.float64).reshape(-1, 4)[keep],
            )
            next_id -= n
        if frame.number >= max(frames):
            break
    return out


def one_frame_clip(video: Path, out: Path) -> Path:
    """The first frame of ``video`` as a one-frame MPEG-4 AVI (the start-up measure)."""
    import av

    from cerberus.footage.video import open_source

    source = open_source(video)
    first = next(iter(source.frames()))
    with av.open(str(out), "w") as container:
        stream = container.add_stream("mpeg4", rate=int(round(source.fps or 10)))
        stream.width, stream.height = first.image.shape[1], first.image.shape[0]
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(first.image, format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def run_ingest(video: Path, gallery: Path, args) -> tuple[float, str]:
    """Run ``cerberus ingest`` on ``video`` into ``gallery``; ``(wall seconds, its output)``."""
    cmd = [sys.executable, "-m", "cerberus.cli", "ingest", str(video), "--camera", "plaza",
           "--gallery", str(gallery), "--checkpoint", str(args.checkpoint),
           "--replace"]  # fmt: skip
    if args.detector:
        cmd += ["--detector", args.detector]
    cmd += shlex.split(args.ingest_args)
    print("$", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(  # this checkout's cerberus
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)}  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise CerberusError(f"cerberus ingest failed (exit {proc.returncode}): {text[-500:]}")
    print(text, flush=True)
    return wall, text


def write_boxes(path: Path, found: dict[int, FrameBoxes]) -> None:
    """``found`` as a CSV in the annotation's columns (person: the track id, ignore 0)."""
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(COLUMNS)
        for frame, got in sorted(found.items()):
            for track, box in zip(got.tracks, got.boxes):
                out.writerow([frame, int(track), *(int(round(v)) for v in box), 0])


# --------------------------------------------------------------------------- main


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if x != x else f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", type=Path, nargs="?", default=VIDEO)
    parser.add_argument("--annotations", type=Path, default=ANNOTATIONS)
    parser.add_argument("--gallery", default=None, help="score this gallery (no ingest)")
    parser.add_argument("--detector", default=None, help="ingest with --detector SPEC")
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--ingest-args", default="", help='more ingest options, e.g. "--stride 2"')
    parser.add_argument("--keep", type=Path, default=None, help="ingest into this folder")
    parser.add_argument("--no-startup", action="store_true", help="skip the one-frame ingest")
    parser.add_argument("--raw", default=None, help="score a detector's own boxes (no tracker)")
    parser.add_argument("--upscale", type=float, default=1.5, help="--raw hog: upscale")
    parser.add_argument("--min-score", type=float, default=None, help="--raw: drop boxes below")
    parser.add_argument("--label", default=None, help="the table row's name")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument(
        "--boxes-out", type=Path, default=None,
        help="write the scored boxes as a CSV in the annotation's columns (person = track), "
        "for benchmarks/data/render_vtest.py --also",
    )  # fmt: skip
    args = parser.parse_args()
    truth = read_truth(args.annotations)
    frames = truth.frame_numbers
    if not args.video.is_file():
        raise CerberusError(
            f"{args.video}: no such video (make footage-example fetches vtest.avi to "
            "runs/vtest/vtest.avi)"
        )
    from cerberus.footage.video import open_source

    source = open_source(args.video)
    fps = source.fps or 10.0
    seconds = (source.num_frames or 0) / fps
    print_machine()
    wall = startup = float("nan")
    crops = None
    if args.raw:
        label = args.label or f"raw {args.raw}" + (f" x{args.upscale}" if args.raw == "hog" else "")
        if args.min_score is not None:
            label += f", score >= {args.min_score}"
        t0 = time.perf_counter()
        found = raw_boxes(args.video, frames, args.raw, args.upscale, args.min_score)
        print(f"{args.raw}: {len(frames)} frames in {time.perf_counter() - t0:.1f} s", flush=True)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            gallery = args.gallery
            if gallery is None:
                if not args.checkpoint.is_file():
                    raise CerberusError(f"{args.checkpoint}: no checkpoint (make demo trains one)")
                target = args.keep or Path(tmp) / "gallery"
                wall, text = run_ingest(args.video, target, args)
                own = re.search(r"stored in ([0-9.]+) s", text)
                if not args.no_startup:
                    clip = one_frame_clip(args.video, Path(tmp) / "one_frame.avi")
                    startup, _ = run_ingest(clip, Path(tmp) / "startup", args)
                print(
                    f"ingest: {wall:.1f} s wall, {own.group(1) if own else '?'} s by its own "
                    f"report (its stages), one-frame ingest {startup:.1f} s wall",
                    flush=True,
                )
                gallery = str(target)
            found, crops, _ = gallery_boxes(gallery, args.video, frames)
        label = args.label or (args.gallery or f"ingest, detector {args.detector or 'default'}")
    s = score(truth, found, crops, window=WINDOW_S * fps)
    if args.boxes_out:
        write_boxes(args.boxes_out, found)
    for f, (people, covered, boxes, true) in s.per_frame.items():
        print(f"frame {f}: {covered}/{people} people covered, {true}/{boxes} boxes true")
    never = s.identities - len(s.tracks_per_identity)
    row = [
        label, len(frames), s.people, _fmt(s.recall), _fmt(s.precision),
        "-" if args.raw else _fmt(s.tracks_per_person, 2) + (f" ({never} never)" if never else ""),
        "-" if args.raw else _fmt(s.crop_rate), _fmt(wall, 1), _fmt(startup, 1),
        _fmt(seconds / wall, 2) if wall == wall else "-",
    ]  # fmt: skip
    print()
    print(markdown_table(
        ["what", "frames", "people", "recall", "precision", "tracks / person",
         "crop <= 2 s", "ingest s", "start-up s", "x real time"], [row]))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({
            "label": label, "recall": s.recall, "precision": s.precision,
            "tracks_per_person": None if args.raw else s.tracks_per_person,
            "crop_rate": None if args.raw else s.crop_rate, "people": s.people,
            "boxes": s.boxes, "excused": s.excused, "ingest_s": wall, "startup_s": startup,
            "per_frame": {str(k): v for k, v in s.per_frame.items()},
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    run_script(main)
