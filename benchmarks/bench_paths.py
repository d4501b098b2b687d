"""Bytes per path frame of track paths (method §9.3) in a local gallery folder.

A track's path is its box on every processed frame it is alive. The local store keeps one row
per part as added, its frames, boxes and detected flags in one compressed blob
(:mod:`cerberus.store.pathcodec`). This script writes paths of people walking (a random walk of
the box, 10 fps, 80% of the boxes detected) into new galleries and reports the growth of the
SQLite database (after a WAL checkpoint) per path frame, beside the same paths stored a row per
frame (source, camera, track, frame, left, top, right, bottom, detected; with its (source,
track, frame) index), and the time to read them back with ``paths()``.

    python benchmarks/bench_paths.py
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, print_machine, run_script  # noqa: E402

from cerberus.store import GalleryInfo, Items, TrackPath  # noqa: E402
from cerberus.store.local import DATABASE, LocalStore  # noqa: E402

SOURCE = "/footage/cam-north/2026-11-30T14-00-00.mp4"  # a typical absolute source name


def walk(track: int, n: int, first: int, rng: np.random.Generator) -> TrackPath:
    """A person walking for ``n`` consecutive frames from ``first``: box centre a random walk
    (pixels per frame ~ N(0, 1.5) across, N(0, 1) down), height 120-200 px drifting, width 0.4
    of it; 80% of the boxes detected."""
    x = 384 + np.cumsum(rng.normal(0, 1.5, n))
    y = 300 + np.cumsum(rng.normal(0, 1.0, n))
    h = np.clip(160 + np.cumsum(rng.normal(0, 0.3, n)), 120, 200)
    w = 0.4 * h
    boxes = np.stack([x - w / 2, y - h, x + w / 2, y], axis=1)
    frames = np.arange(first, first + n)
    return TrackPath(SOURCE, "north", track, frames, boxes, rng.random(n) < 0.8)


def database_bytes(folder: Path) -> int:
    conn = sqlite3.connect(folder / DATABASE)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return pages * size


def row_per_frame_bytes(folder: Path, paths: list[TrackPath]) -> int:
    """The same paths in a table with one row per frame and its index (the other design)."""
    path = folder / "rows.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE path_frames (source TEXT, camera TEXT, track INTEGER, frame INTEGER, "
        "l REAL, t REAL, r REAL, b REAL, detected INTEGER)"
    )
    conn.execute("CREATE INDEX path_frames_key ON path_frames (source, track, frame)")
    empty = conn.execute("PRAGMA page_count").fetchone()[0]
    for p in paths:
        conn.executemany(
            "INSERT INTO path_frames VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (p.source, p.camera, p.track, int(f), *map(float, b), int(d))
                for f, b, d in zip(p.frames, p.boxes, p.detected)
            ],
        )
    conn.commit()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return (pages - empty) * size


def scenario(name: str, parts: list[list[TrackPath]], tmp: Path) -> list:
    """Write ``parts`` (one add per inner list) into a new gallery; its row of the table."""
    folder = tmp / name.replace(" ", "-")
    info = GalleryInfo(dim=8, fingerprint="f" * 64, schema={"name": "bench"}, prototypes={})
    LocalStore.create(folder, info).close()
    before = database_bytes(folder)
    none = Items.make(np.zeros((0, 8), np.float32), source=SOURCE, num_attributes=3)
    with LocalStore.open(folder) as store:
        for batch in parts:
            store.add(none, complete=False, paths=batch)
    after = database_bytes(folder)
    frames = sum(len(p) for batch in parts for p in batch)
    tracks = len({p.track for batch in parts for p in batch})
    with LocalStore.open(folder) as store:
        t = time.perf_counter()
        back = store.paths()
        read_s = time.perf_counter() - t
    assert sum(len(p) for p in back) == frames
    flat = [p for batch in parts for p in batch]
    rows = row_per_frame_bytes(folder, flat)
    return [
        name,
        tracks,
        sum(len(b) for b in parts),
        frames,
        f"{(after - before) / frames:.1f}",
        f"{rows / frames:.1f}",
        f"{read_s * 1000:.0f}",
    ]


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print_machine()
    rng = np.random.default_rng(0)
    hour = walk(1, 36_000, 1, rng)
    minutes = [
        [TrackPath(SOURCE, "north", 1, hour.frames[s : s + 600], hour.boxes[s : s + 600],
                   hour.detected[s : s + 600])]
        for s in range(0, len(hour), 600)
    ]  # fmt: skip
    short = [[walk(t, 200, 1 + 50 * t, rng)] for t in range(1000)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(scenario("one track of 1 h, one add", [[hour]], Path(tmp)))
        rows.append(scenario("one track of 1 h, 60 parts of 1 min", minutes, Path(tmp)))
        rows.append(scenario("1,000 tracks of 20 s", short, Path(tmp)))
    headers = ["paths", "tracks", "parts", "frames", "bytes / frame",
               "row per frame: bytes / frame", "paths() ms"]  # fmt: skip
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    run_script(main)
