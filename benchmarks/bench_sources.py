"""Footage sources (issue 30): memory of a long MOT detections file, and crops embedded in one
call against one call per track.

``detections``: writes a MOTChallenge detections file of ``--hours`` at ``--fps`` with
``--people`` boxes a frame (1 h, 30 fps, 20 people: 2.16 M rows, about 80 MB) under the
temporary folder, then, in a fresh process each, reads it the way an ingest does
(``MotDetections.load``, then ``detect`` on every frame in order) and reports the peak resident
memory above the process's baseline (its high-water mark after the imports), the seconds to
load and to read every frame. ``--by-id`` also reads the same rows sorted by id (as
MOTChallenge ground truth is), which are first sorted out of core. The files are removed.

``embedding``: ``--crops`` crops (48) of a person's size through the model's embedder in one
call against calls of ``--per-call`` crops (4, as when each track's crops went alone).

    python benchmarks/bench_sources.py detections --threads 1
    python benchmarks/bench_sources.py embedding --checkpoint runs/demo/last.pt --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, median, print_machine, run_script  # noqa: E402

READER = """
import json, resource, sys, time
sys.path[:0] = {paths!r}
import numpy as np
from cerberus.footage.detect import MotDetections
from cerberus.footage.video import Frame

def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

image = np.zeros((1080, 1920, 3), np.uint8)
base = rss()
t0 = time.perf_counter()
dets = MotDetections.load({path!r}, size=(1920, 1080), num_frames={frames})
t1 = time.perf_counter()
boxes = 0
for n in range(1, {frames} + 1):
    boxes += len(dets.detect(Frame(n, 0.0, 0.0, image)))
t2 = time.perf_counter()
dets.close()
print(json.dumps({{"base": base, "peak": rss(), "load": t1 - t0, "read": t2 - t1,
                  "boxes": boxes}}))
"""


def write_detections(path: Path, frames: int, people: int, *, by_id: bool) -> int:
    """``people`` boxes walking across a 1920x1080 frame on each of ``frames`` frames, rows in
    frame order (or by id, then frame); returns the rows written."""
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0, 1800, people)
    y0 = rng.uniform(0, 900, people)
    speed = rng.uniform(-2, 2, people)
    chunk = 3000
    with open(path, "w") as fh:
        if not by_id:
            for first in range(1, frames + 1, chunk):
                n = np.arange(first, min(first + chunk, frames + 1))
                x = (x0[None, :] + speed[None, :] * n[:, None]) % 1800 + 1
                y = np.broadcast_to(y0[None, :] + 1, x.shape)
                ident = np.broadcast_to(np.arange(1, people + 1)[None, :], x.shape)
                frame = np.broadcast_to(n[:, None], x.shape)
                table = np.stack([frame, ident, x, y], -1).reshape(-1, 4)
                fh.writelines(f"{int(f)},{int(i)},{a:.2f},{b:.2f},60.00,150.00,0.900,-1,-1,-1\n"
                              for f, i, a, b in table)  # fmt: skip
        else:
            for p in range(people):
                for first in range(1, frames + 1, chunk):
                    n = np.arange(first, min(first + chunk, frames + 1))
                    x = (x0[p] + speed[p] * n) % 1800 + 1
                    y = y0[p] + 1
                    fh.writelines(f"{f},{p + 1},{a:.2f},{y:.2f},60.00,150.00,0.900,-1,-1,-1\n"
                                  for f, a in zip(n.tolist(), x.tolist()))  # fmt: skip
    return frames * people


def read_in_fresh_process(path: Path, frames: int) -> dict:
    here = Path(__file__).resolve().parents[1]
    script = READER.format(paths=[str(here / "src"), *sys.path], path=str(path), frames=frames)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=False)  # fmt: skip
    if out.returncode:
        raise SystemExit(f"reader failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_detections(args: argparse.Namespace) -> None:
    frames = round(args.hours * 3600 * args.fps)
    rows = []
    for by_id in [False, True] if args.by_id else [False]:
        fd, name = tempfile.mkstemp(prefix="bench-det-", suffix=".txt")
        os.close(fd)
        path = Path(name)
        try:
            t0 = time.perf_counter()
            count = write_detections(path, frames, args.people, by_id=by_id)
            made = time.perf_counter() - t0
            size = path.stat().st_size / 2**20
            got = read_in_fresh_process(path, frames)
        finally:
            path.unlink(missing_ok=True)
        assert got["boxes"] == count, (got["boxes"], count)
        rows.append([
            "by id (sorted out of core)" if by_id else "frame order", f"{count:,}",
            f"{size:.0f}", f"{made:.1f}", f"{got['load']:.1f}", f"{got['read']:.1f}",
            f"{got['base']:.0f}", f"{got['peak'] - got['base']:.1f}",
        ])  # fmt: skip
    print(f"# {args.hours} h at {args.fps} fps, {args.people} boxes a frame ({frames:,} frames)")
    print(markdown_table(["rows", "count", "MB", "write s", "load s", "read all s",
                          "baseline MiB", "peak above baseline MiB"], rows))  # fmt: skip


def bench_embedding(args: argparse.Namespace) -> None:
    from cerberus.footage.ingest import ModelEmbedder
    from cerberus.inference.embed import InferenceModel

    net = InferenceModel.from_checkpoint(args.checkpoint, device="cpu")
    embedder = ModelEmbedder(net)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (int(rng.integers(120, 200)), int(rng.integers(50, 80)), 3),
                          dtype=np.uint8) for _ in range(args.crops)]  # fmt: skip
    embedder.embed(crops[: args.per_call])  # warm-up

    def one_call():
        return embedder.embed(crops).vectors

    def per_track():
        return np.concatenate([embedder.embed(crops[i : i + args.per_call]).vectors
                               for i in range(0, len(crops), args.per_call)])  # fmt: skip

    assert np.allclose(one_call(), per_track(), atol=1e-4)  # the same vectors either way
    rows = []
    for label, fn in ((f"1 call of {args.crops}", one_call),
                      (f"{-(-args.crops // args.per_call)} calls of {args.per_call}",
                       per_track)):  # fmt: skip
        times = []
        for _ in range(args.trials):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        rows.append([label, f"{median(times):.2f}", f"{min(times):.2f}", f"{max(times):.2f}"])
    print(f"# {args.checkpoint}: {args.crops} crops, {args.trials} trials")
    print(markdown_table(["embedding", "median s", "min s", "max s"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("detections", help="peak memory while reading a long detections file")
    d.add_argument("--hours", type=float, default=1.0)
    d.add_argument("--fps", type=float, default=30.0)
    d.add_argument("--people", type=int, default=20)
    d.add_argument("--by-id", action="store_true", help="also rows sorted by id")
    e = sub.add_parser("embedding", help="crops in one call against one call per track")
    e.add_argument("--checkpoint", default="runs/demo/last.pt")
    e.add_argument("--crops", type=int, default=48)
    e.add_argument("--per-call", type=int, default=4)
    e.add_argument("--trials", type=int, default=5)
    for p in (d, e):
        p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print_machine()
    print(f"# load: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}")
    bench_detections(args) if args.what == "detections" else bench_embedding(args)


if __name__ == "__main__":
    run_script(main)
