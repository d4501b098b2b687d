"""End to end on the real pieces: ``cerberus synth footage`` -> ``cerberus ingest`` (ground-truth
boxes without their ids, the real tracker, a real model) -> a folder gallery (LocalStore) ->
tracks, metadata, thumbnails and a filtered search checked against the ground truth."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cerberus.footage.detect import MotDetections, iou_matrix
from cerberus.store import make_filter
from cerberus.store.base import to_utc_seconds
from cerberus.store.open import open_store

TINY = ["--cameras", "2", "--seconds", "8", "--people", "5", "--size", "320x180"]
MIN_FRAMES = 15
"""A person seen in at least this many frames of a camera must come out as a track there."""


def without_ids(gt: Path, out: Path) -> Path:
    """The ground truth's rows with every id replaced by -1 (untracked detections)."""
    rows = []
    for line in gt.read_text().splitlines():
        fields = line.split(",")
        rows.append(",".join([fields[0], "-1", *fields[2:]]))
    out.write_text("\n".join(rows) + "\n")
    return out


def identities(items, gt: MotDetections) -> tuple[np.ndarray, np.ndarray]:
    """Per item, the ground-truth person whose box in the item's frame overlaps it most, and
    that overlap (IoU)."""
    who, overlap = np.full(len(items), -1), np.zeros(len(items))
    for i in range(len(items)):
        truth = gt.rows.get(int(items.frame[i]))
        if truth is None or not len(truth):
            continue
        iou = iou_matrix(items.box[i : i + 1], truth.boxes)[0]
        who[i], overlap[i] = int(truth.ids[iou.argmax()]), float(iou.max())
    return who, overlap


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from typer.testing import CliRunner

    from cerberus.cli import app

    out = tmp_path_factory.mktemp("footage") / "tiny"
    result = CliRunner().invoke(app, ["synth", "footage", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "footage.json").read_text())


def test_synthetic_footage_ingested_end_to_end(cli, tiny_index, synthetic, tmp_path):
    root, manifest = synthetic
    gallery = tmp_path / "gallery"
    fps = manifest["fps"]
    size = (manifest["width"], manifest["height"])
    runs = {}
    for cam in manifest["cameras"]:
        name = cam["name"]
        dets = without_ids(root / cam["gt"], tmp_path / f"{name}.det.txt")
        args = ["ingest", root / cam["video"], "--camera", name, "--gallery", gallery,
                "--start", cam["start"], "--detections", dets, "--device", "cpu"]  # fmt: skip
        code, out, err = cli(*args, "--checkpoint", tiny_index["ckpt"])
        assert code == 0, err
        assert f"{cam['video']}: {cam['frames']} frames ({cam['frames']} searched)" in out
        assert "clipped" not in err  # the ground truth is inside the frame (1-based pixels)
        runs[name] = args
    store = open_store(gallery)
    try:
        items = store.get(store.ids())
        assert sorted(store.cameras()) == sorted(runs)
        states = {Path(s.name).name: s for s in store.sources()}
        assert sorted(states) == sorted(c["video"] for c in manifest["cameras"])
        assert all(s.complete for s in states.values())
        assert sum(s.count for s in states.values()) == len(items)
        seen = {}
        with (root / "sightings.csv").open() as fh:
            for row in csv.DictReader(fh):
                seen[(row["camera"], int(row["person_id"]))] = int(row["frames"])
        all_overlap, pure, total = [], 0, 0
        for cam in manifest["cameras"]:
            name, start = cam["name"], to_utc_seconds(cam["start"])
            gt = MotDetections.load(root / cam["gt"], size=size)
            mine = items.take(np.flatnonzero(np.array(items.camera) == name))
            assert len(mine) > 0
            # metadata: frames of the video, times = start + (frame - 1) / fps, boxes in frame
            assert ((mine.frame >= 1) & (mine.frame <= cam["frames"])).all()
            assert np.allclose(mine.timestamp, start + (mine.frame - 1) / fps, atol=1e-3)
            assert (mine.timestamp >= start).all()
            assert (mine.timestamp <= start + cam["frames"] / fps).all()
            box = mine.box
            assert (box[:, :2] >= 0).all() and (box[:, 2] <= size[0]).all()
            assert (box[:, 3] <= size[1]).all() and (box[:, 2:] > box[:, :2]).all()
            for path in mine.path:  # thumbnails
                assert Path(path).is_file() and Path(path).is_relative_to(gallery / "thumbs")
            who, overlap = identities(mine, gt)
            all_overlap.append(overlap)
            majority = {}
            for track in sorted(set(mine.track.tolist())):
                owners = Counter(who[mine.track == track].tolist())
                majority[track], count = owners.most_common(1)[0]
                pure += count
                total += int((mine.track == track).sum())
            for (camera, pid), frames in seen.items():
                if camera == name and frames >= MIN_FRAMES:
                    assert pid in majority.values(), f"{name}: person {pid} ({frames} frames)"
        # the stored boxes are the ground-truth boxes (exactly: the 1-based pixels converted)
        assert np.concatenate(all_overlap).min() > 0.99
        assert pure / total >= 0.8  # crops of one track mostly show one person
        # a filtered search: one camera and a time window, nothing else comes back
        cam2 = manifest["cameras"][1]["name"]
        times = np.sort(items.timestamp[np.array(items.camera) == cam2])
        t0, t1 = times[len(times) // 4], times[3 * len(times) // 4]
        where = make_filter(cameras=[cam2], after=t0, before=t1)
        expect = {
            int(items.ids[i])
            for i in range(len(items))
            if items.camera[i] == cam2 and t0 <= items.timestamp[i] < t1  # before: exclusive
        }
        assert 0 < len(expect) < len(times)
        hits = store.search(items.vectors[:3], len(items), where)
        for h in hits:
            assert set(h.ids.tolist()) == expect
        assert store.count(where) == len(expect)
    finally:
        store.close()
    # the source is complete: a rerun skips it with one line, --replace redoes it without
    # duplicates
    code, out, err = cli(*runs["cam1"])
    assert code == 0 and "already in the gallery" in out and "skipped (--replace" in out
    assert len(out.strip().splitlines()) == 1
    code, _, err = cli(*runs["cam1"], "--replace")
    assert code == 0, err
    store = open_store(gallery)
    try:
        again = store.get(store.ids())
        assert len(again) == len(items)
        key = lambda x: sorted(zip(x.camera, x.frame.tolist(), x.track.tolist()))  # noqa: E731
        assert key(again) == key(items)
        assert all(s.complete for s in store.sources())
    finally:
        store.close()


def test_hog_runs_through_synthetic_footage(synthetic, tmp_path):
    """The built-in detector (motion gate, stride, tracker) on the tiny footage: it finishes
    the video. (Counts: benchmarks/bench_footage.py; HOG needs people taller than these.)"""
    from cerberus.footage.detect import HogDetector
    from cerberus.footage.ingest import ingest_source
    from cerberus.store import GalleryInfo
    from cerberus.store.local import LocalStore
    from tests.footage_helpers import ColourEmbedder

    root, manifest = synthetic
    cam = manifest["cameras"][0]
    info = GalleryInfo(dim=20, fingerprint="colour", schema={"name": "test"}, prototypes={})
    store = LocalStore.create(tmp_path / "g", info)
    try:
        report = ingest_source(root / cam["video"], store, ColourEmbedder(), camera=cam["name"],
                               start=cam["start"], detector=HogDetector(upscale=2.0),
                               thumbs=tmp_path / "thumbs")  # fmt: skip
        assert report.frames == cam["frames"] and report.processed == cam["frames"] // 2
        assert store.count() == report.items
        assert [s.complete for s in store.sources()] == ([True] if report.items else [])
    finally:
        store.close()
