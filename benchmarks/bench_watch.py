"""Many cameras in one process (issue 30 item 4): ``cerberus watch`` of several cameras at once,
timed from the command's start (start-up counted: Python, the model, the detector) to its end.

- ``vtest``: vtest.avi (768x576, 10 fps, 79.5 s) under N camera names (N hard links, so each
  is its own source), the default detector (SSDLite) at ``--stride`` (5: a search every 0.5 s,
  2 per second per camera; frames 101, 111, ... of the annotations are all searched) and tile
  schedule ``--tiles`` / ``--tile-every``; each camera's tracks scored against
  ``benchmarks/data/vtest_people.csv`` as ``bench_vtest.py`` scores one (recall, precision,
  tracks per person), a track's box on an annotated frame the stride skipped put on the line
  between its path's boxes either side.
- ``synth``: ``cerberus synth footage`` (``--distinct`` cameras of 640x360, 10 fps, or those
  of ``--footage``), each video under N / distinct camera names, with MOTChallenge detection
  files (the ground-truth boxes, ids removed, as a detector would give them).

x real time = the video's seconds / the command's wall seconds (every camera runs the whole
time, so each camera's own factor is at least this). The load average before and after is
printed: the machine is shared. "CPU s" is the command's CPU time (user + system, start-up
included) and "2 cores / CPU" = 2 x the video's seconds / CPU s: the real-time factor two cores
would give if the command could keep both busy (a bound, not a measurement; wall time on a
busy machine is longer).

    python benchmarks/bench_watch.py vtest --cameras 4 --video vtest.avi
    python benchmarks/bench_watch.py synth --cameras 16 --seconds 40
    cerberus synth footage --out sf --cameras 4 --seconds 40 && \
        python benchmarks/bench_watch.py synth --cameras 16 --footage sf
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, print_machine, run_script  # noqa: E402
from bench_vtest import (  # noqa: E402
    ANNOTATIONS,
    CHECKPOINT,
    VIDEO,
    WINDOW_S,
    FrameBoxes,
    read_truth,
    score,
)

from cerberus.errors import CerberusError  # noqa: E402


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)}  # fmt: skip


CPU = {"s": 0.0}
"""CPU seconds (user + system) of the last command run by :func:`_cli`."""


def _cli(*args: str, quiet: bool = False) -> tuple[float, str]:
    """Run ``cerberus ARGS``; ``(wall seconds, output)``; its CPU seconds in :data:`CPU`."""
    cmd = [sys.executable, "-m", "cerberus.cli", *args]
    print("$", shlex.join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise CerberusError(f"cerberus {args[0]} failed (exit {proc.returncode}): {text[-800:]}")
    if not quiet:
        print(text, flush=True)
    return wall, text


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: a copy
        shutil.copyfile(src, dst)


def boxes_on_frames(paths, frames: list[int]) -> dict[int, FrameBoxes]:
    """Each track's box on ``frames``: its path's box there, or, between two path frames (a
    frame the detector skipped at a stride), the straight line between them."""
    tracks: dict[int, list[int]] = {f: [] for f in frames}
    boxes: dict[int, list[np.ndarray]] = {f: [] for f in frames}
    for p in paths:
        if not len(p.frames):
            continue
        for f in frames:
            if not p.frames[0] <= f <= p.frames[-1]:
                continue
            i = int(np.searchsorted(p.frames, f))
            if p.frames[i] == f:
                box = np.asarray(p.boxes[i], np.float64)
            else:
                a, b = p.frames[i - 1], p.frames[i]
                w = (f - a) / (b - a)
                box = (1 - w) * np.asarray(p.boxes[i - 1], np.float64) + w * p.boxes[i]
            tracks[f].append(int(p.track))
            boxes[f].append(box)
    return {f: FrameBoxes(np.asarray(tracks[f], np.int64), np.asarray(boxes[f]).reshape(-1, 4))
            for f in frames}  # fmt: skip


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _watch(listing: Path, gallery: Path, checkpoint: Path, progress: float) -> tuple[float, str]:
    return _cli("watch", str(listing), "--gallery", str(gallery), "--checkpoint",
                str(checkpoint), "--progress", str(progress))  # fmt: skip


def vtest(args, tmp: Path) -> None:
    from cerberus.footage.video import open_source, source_name
    from cerberus.store.open import open_store

    video = args.video
    if not video.is_file():
        raise CerberusError(f"{video}: no such video (make footage-example fetches vtest.avi to "
                            "runs/vtest/vtest.avi; or --video PATH)")
    meta = open_source(video)
    seconds = (meta.num_frames or 0) / (meta.fps or 10.0)
    spec = f"ssdlite,tiles={args.tiles},tile_every={args.tile_every}"
    if args.track_iou is not None:
        spec += f",track_iou={args.track_iou}"
    lines = ["cameras:"]
    names = []
    for k in range(args.cameras):
        path = tmp / f"plaza{k + 1}.avi"
        _link(video, path)
        names.append((f"plaza{k + 1}", source_name(path)))
        lines.append(f"  - {{name: plaza{k + 1}, source: {path}, start: '2026-11-30T12:00:00Z', "
                     f"detector: '{spec}', stride: {args.stride}}}")  # fmt: skip
    listing = tmp / "cameras.yaml"
    listing.write_text("\n".join(lines) + "\n")
    print(listing.read_text())
    before = _load()
    wall, _ = _watch(listing, tmp / "gallery", args.checkpoint, args.progress)
    cpu = CPU["s"]
    after = _load()
    truth = read_truth(args.annotations)
    frames = truth.frame_numbers
    store = open_store(str(tmp / "gallery"))
    items = store.get(store.ids(), vectors=False)
    rows = []
    fps = meta.fps or 10.0
    for name, source in names:
        crops: dict[int, list[int]] = {}
        for s, t, f in zip(items.source, items.track, items.frame):
            if s == source:
                crops.setdefault(int(t), []).append(int(f))
        found = boxes_on_frames(store.paths(source=source), frames)
        s = score(truth, found, {t: np.asarray(v) for t, v in crops.items()}, WINDOW_S * fps)
        rows.append([name, f"{s.recall:.3f}", f"{s.precision:.3f}", f"{s.tracks_per_person:.2f}",
                     sum(map(len, crops.values())), f"{wall:.1f}", f"{seconds / wall:.2f}",
                     f"{cpu:.1f}", f"{2 * seconds / cpu:.2f}"])  # fmt: skip
    store.close()
    rate = fps / args.stride
    print()
    print(f"# {args.cameras} cameras of {video.name} ({seconds:.1f} s each) at once; detector "
          f"{spec}, stride {args.stride}: {rate:g} searched frames per second per camera, "
          f"{rate * args.cameras:g} in all; load average before {before}, after {after}")
    print(markdown_table(["camera", "recall", "precision", "tracks / person", "crops", "wall s",
                          "x real time", "CPU s", "2 cores / CPU"], rows))  # fmt: skip


def synth(args, tmp: Path) -> None:
    from cerberus.footage.video import open_source

    out = args.footage
    if out is None:
        out = tmp / "footage"
        _cli("synth", "footage", "--out", str(out), "--cameras", str(args.distinct),
             "--seconds", str(args.seconds), "--size", "640x360", "--fps", "10",
             quiet=True)  # fmt: skip
    distinct = sorted(out.glob("cam*.mp4"), key=lambda v: int(v.stem[3:]))
    if not distinct:
        raise CerberusError(f"{out}: no camN.mp4 (`cerberus synth footage --out {out}`)")
    meta = open_source(distinct[0])
    seconds = (meta.num_frames or 0) / (meta.fps or 10.0)
    lines = ["cameras:"]
    for k in range(1, args.cameras + 1):
        video = distinct[(k - 1) % len(distinct)]
        gt = out / video.stem / "gt" / "gt.txt"
        det = tmp / f"det{k}.txt"
        rows = []
        for line in gt.read_text().splitlines():  # the ids removed: a detector's boxes
            parts = line.split(",")
            rows.append(",".join([parts[0], "-1", *parts[2:6], "1", "-1", "-1", "-1"]))
        det.write_text("\n".join(rows) + "\n")
        own = tmp / f"cam{k}.mp4"  # a camera of its own: its own path, so its own source
        _link(video, own)
        lines.append(f"  - {{name: cam{k}, source: {own}, detections: {det}, "
                     "start: '2025-06-02T08:00:00Z'}")  # fmt: skip
    listing = tmp / "cameras.yaml"
    listing.write_text("\n".join(lines) + "\n")
    before = _load()
    wall, text = _watch(listing, tmp / "gallery", args.checkpoint, args.progress)
    cpu = CPU["s"]
    after = _load()
    print()
    print(f"# {args.cameras} cameras of {meta.size[0]}x{meta.size[1]}, {meta.fps:g} fps, "
          f"{seconds:g} s each ({len(distinct)} distinct videos), with detection files; load "
          f"average before {before}, after {after}")
    crops = sum(int(x.split(" crops")[0].rsplit(" ", 1)[-1])
                for x in text.splitlines() if "[done]" in x)  # fmt: skip
    print(markdown_table(["cameras", "seconds each", "crops", "wall s", "x real time", "CPU s",
                          "2 cores / CPU"],
                         [[args.cameras, f"{seconds:g}", crops, f"{wall:.1f}",
                           f"{seconds / wall:.2f}", f"{cpu:.1f}",
                           f"{2 * seconds / cpu:.2f}"]]))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["vtest", "synth"])
    parser.add_argument("--cameras", type=int, default=None, help="default 4 (vtest), 16 (synth)")
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--annotations", type=Path, default=ANNOTATIONS)
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--stride", type=int, default=5, help="vtest: detect every n-th frame")
    parser.add_argument("--tiles", type=int, default=1, help="vtest: tiles per searched frame")
    parser.add_argument("--tile-every", type=int, default=2, help="vtest: tiles every n-th call")
    parser.add_argument("--track-iou", type=float, default=None, help="vtest: tracker IoU gate")
    parser.add_argument("--seconds", type=float, default=40.0, help="synth: seconds per camera")
    parser.add_argument("--distinct", type=int, default=4, help="synth: videos made (reused)")
    parser.add_argument("--footage", type=Path, default=None, help="synth: footage made before")
    parser.add_argument("--progress", type=float, default=20.0, help="watch --progress")
    args = parser.parse_args()
    args.cameras = args.cameras or (4 if args.what == "vtest" else 16)
    if not args.checkpoint.is_file():
        raise CerberusError(f"{args.checkpoint}: no checkpoint (make demo trains one)")
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        (vtest if args.what == "vtest" else synth)(args, Path(tmp))


if __name__ == "__main__":
    run_script(main)
