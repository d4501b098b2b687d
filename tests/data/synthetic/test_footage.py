"""Synthetic footage (``cerberus synth footage``): videos, MOTChallenge ground truth that lies on
the drawn people, reappearances where the sightings say, occlusions, the benchmark's identities,
determinism, and bad arguments refused before anything is written."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import av
import motmetrics as mm
import numpy as np
import pytest

from cerberus.data.synthetic.attributes import SCHEMA, identity_rows
from cerberus.data.synthetic.benchmark import generate_synthetic
from cerberus.data.synthetic.footage import (
    MARKER,
    footage_people,
    generate_footage,
    read_footage_manifest,
    read_sightings,
    rgb_to_yuv420p,
)
from cerberus.data.synthetic.frames import Placed, compose
from cerberus.data.synthetic.render import sample_details
from cerberus.data.synthetic.scene import FootageSpec, plan_footage
from cerberus.errors import CerberusError

TINY = ["--cameras", 2, "--seconds", 8, "--people", 5, "--size", "320x180"]
"""The tiny preset (docs/synthetic.md): well under a second of rendering."""
TINY_SPEC = FootageSpec(cameras=2, seconds=8, people=5, width=320, height=180)


def _gt(path: Path) -> np.ndarray:
    """(n, 9) ground-truth rows, read with numpy."""
    return np.loadtxt(path, delimiter=",", ndmin=2).reshape(-1, 9)


def _decode(path: Path) -> tuple[list[np.ndarray], dict, list[float]]:
    """The frames (RGB), the stream's rate, pixel format and codec (read while the file is
    open: PyAV 18.1.1 refuses a closed container's stream), and the frames' times."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
        facts = {
            "average_rate": stream.average_rate,
            "pix_fmt": stream.codec_context.pix_fmt,
            "codec": stream.codec_context.name,
        }
        return frames, facts, times


def _sightings(root: Path) -> list[dict[str, str]]:
    with open(root / "sightings.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("footage") / "tiny"
    generate_footage(root, TINY_SPEC, frames=True)
    return root


def test_layout_and_manifest(tiny):
    manifest = json.loads((tiny / "footage.json").read_text())
    assert manifest["format"] == "cerberus-synthetic-footage" and manifest["version"] == 1
    assert (manifest["fps"], manifest["width"], manifest["height"]) == (10, 320, 180)
    assert manifest["seed"] == 0 and manifest["frames"] == 80
    names = [c["name"] for c in manifest["cameras"]]
    assert names == ["cam1", "cam2"]
    starts = []
    for cam in manifest["cameras"]:
        for key in ("video", "seqinfo", "gt"):
            assert (tiny / cam[key]).is_file(), cam[key]
        assert len(list((tiny / cam["images"]).glob("*.jpg"))) == 80
        start = datetime.fromisoformat(cam["start"])
        assert start.utcoffset() == timedelta(0)  # timezone-aware UTC
        starts.append(start)
        seqinfo = (tiny / cam["seqinfo"]).read_text()
        for line in ("seqLength=80", "frameRate=10", "imWidth=320", "imHeight=180"):
            assert line in seqinfo
        assert cam["gt_rows"] == len(_gt(tiny / cam["gt"]))
    assert starts[0] == datetime.fromisoformat("2025-06-02T08:00:00+00:00")
    for name in ("attributes.csv", "schema.yaml", "sightings.csv", MARKER):
        assert (tiny / name).is_file()


def test_videos_decode_with_the_frame_count_size_and_rate(tiny):
    for cam in ("cam1", "cam2"):
        frames, stream, times = _decode(tiny / f"{cam}.mp4")
        assert len(frames) == 80
        assert frames[0].shape == (180, 320, 3)
        assert stream["average_rate"] == 10
        assert stream["pix_fmt"] == "yuv420p"
        assert times == pytest.approx([n / 10 for n in range(80)])


def test_video_frames_are_the_drawn_frames(tiny):
    """The MP4 and the JPEG frames show the same picture (up to compression)."""
    frames, _, _ = _decode(tiny / "cam1.mp4")
    from PIL import Image

    for n in (1, 40, 80):
        jpeg = np.asarray(Image.open(tiny / "cam1" / "img1" / f"{n:06d}.jpg"), dtype=np.float32)
        assert np.abs(frames[n - 1] - jpeg).mean() < 4.0


def _mask(boxes: np.ndarray, shape: tuple[int, int], grow: int = 0) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for left, top, w, h in boxes:
        x0, y0 = int(left) - 1 - grow, int(top) - 1 - grow
        out[max(0, y0) : y0 + int(h) + 2 * grow, max(0, x0) : x0 + int(w) + 2 * grow] = True
    return out


def test_ground_truth_boxes_lie_on_the_people(tiny):
    """Against a frame in which nobody stands there: the picture changes inside a visible
    person's box, not around it, and the person reaches every side of the box."""
    checked = 0
    for cam in ("cam1", "cam2"):
        frames, _, _ = _decode(tiny / f"{cam}.mp4")
        gt = _gt(tiny / cam / "gt" / "gt.txt")
        shape = frames[0].shape[:2]
        busy = [_mask(gt[gt[:, 0] == n][:, 2:6], shape, grow=3) for n in range(1, 81)]
        for row in gt[(gt[:, 8] == 1.0) & (gt[:, 5] >= 30)][::7]:
            n, box = int(row[0]), row[2:6]
            here = _mask(box[None], shape)
            ring = _mask(box[None], shape, grow=4) & ~_mask(box[None], shape, grow=1)
            empty = [m for m in range(80) if not (busy[m] & _mask(box[None], shape, 4)).any()]
            if not empty or (ring & (busy[n - 1] & ~_mask(box[None], shape, 3))).any():
                continue  # no frame without people there, or another person next to it
            diff = np.abs(frames[n - 1].astype(np.float32) - frames[empty[0]]).mean(axis=2)
            inside, around = diff[here].mean(), diff[ring].mean()
            assert inside > 10 and around < 6 and inside > 4 * around, (cam, row)
            x0, y0 = int(box[0]) - 1, int(box[1]) - 1
            x1, y1 = x0 + int(box[2]) - 1, y0 + int(box[3]) - 1
            inner = diff[y0 : y1 + 1, x0 : x1 + 1]
            for edge in (inner[:2], inner[-2:], inner[:, :2], inner[:, -2:]):
                assert edge.max() > 10, (cam, row)  # tight: the person touches each side
            checked += 1
    assert checked >= 5


def test_motmetrics_reads_the_ground_truth(tiny):
    for cam in ("cam1", "cam2"):
        path = tiny / cam / "gt" / "gt.txt"
        df = mm.io.loadtxt(str(path), fmt="mot15-2D")
        rows = _gt(path)
        assert len(df) == len(rows) > 0
        assert set(df.index.get_level_values("Id")) == set(rows[:, 1].astype(int))
        assert (df["Visibility"].to_numpy() == rows[:, 8]).all()
        # motmetrics 1.4's own iou_matrix calls np.asfarray (gone in NumPy 2): IoU here
        acc = mm.MOTAccumulator(auto_id=True)
        for _, rows_n in df.groupby(level="FrameId"):
            ids = rows_n.index.get_level_values("Id").to_numpy()
            boxes = rows_n[["X", "Y", "Width", "Height"]].to_numpy()
            acc.update(ids, ids, _iou_distance(boxes, boxes))
        summary = mm.metrics.create().compute(acc, metrics=["idf1", "mota", "num_switches"])
        assert summary["idf1"].iloc[0] == 1.0 and summary["mota"].iloc[0] == 1.0


def _iou_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - IoU of (n, 4) and (m, 4) left, top, width, height boxes; NaN below IoU 0.5."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    union = np.prod(a[:, None, 2:], axis=2) + np.prod(b[None, :, 2:], axis=2) - inter
    iou = inter / union
    return np.where(iou >= 0.5, 1 - iou, np.nan)


def test_rows_are_well_formed(tiny):
    for cam in ("cam1", "cam2"):
        gt = _gt(tiny / cam / "gt" / "gt.txt")
        frame, pid, left, top, w, h, conf, cls, vis = gt.T
        assert ((frame >= 1) & (frame <= 80)).all()
        assert (pid % 2 == 1).all()  # the benchmark's test identities are odd
        assert ((left >= 1) & (top >= 1) & (w >= 1) & (h >= 1)).all()
        assert ((left + w - 1 <= 320) & (top + h - 1 <= 180)).all()  # clipped to the frame
        assert (conf == 1).all() and (cls == 1).all()
        assert ((vis >= 0) & (vis <= 1)).all()
        keys = list(zip(frame, pid))
        assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_identities_reappear_where_the_sightings_say(tiny):
    sightings = _sightings(tiny)
    manifest = json.loads((tiny / "footage.json").read_text())
    starts = {c["name"]: datetime.fromisoformat(c["start"]) for c in manifest["cameras"]}
    by_person: dict[int, list[dict[str, str]]] = {}
    for s in sightings:
        pid, cam = int(s["person_id"]), s["camera"]
        gt = _gt(tiny / cam / "gt" / "gt.txt")
        mine = gt[gt[:, 1] == pid]
        first, last = int(s["first_frame"]), int(s["last_frame"])
        assert (mine[:, 0].min(), mine[:, 0].max(), len(mine)) == (first, last, int(s["frames"]))
        t0 = starts[cam] + timedelta(seconds=(first - 1) / 10)
        assert datetime.fromisoformat(s["first_time"]) == t0
        assert datetime.fromisoformat(s["last_time"]) == starts[cam] + timedelta(
            seconds=(last - 1) / 10
        )
        by_person.setdefault(pid, []).append(s)
    again = {p: v for p, v in by_person.items() if len({s["camera"] for s in v}) > 1}
    assert again  # someone walks through both cameras
    for visits in again.values():
        times = [(datetime.fromisoformat(s["first_time"]), s) for s in visits]
        times.sort(key=lambda e: e[0])
        for (_, a), (t_b, b) in zip(times, times[1:]):
            assert a["camera"] != b["camera"]
            assert t_b > datetime.fromisoformat(a["last_time"])  # later, after a transit


def test_people_occlude_each_other(tiny):
    """A person wholly inside the frame is partly hidden, by a nearer person whose box
    overlaps; the nearer one is fully visible there or hidden less."""
    hidden = 0
    for cam in ("cam1", "cam2"):
        gt = _gt(tiny / cam / "gt" / "gt.txt")
        inside = (gt[:, 2] > 1) & (gt[:, 3] > 1)
        inside &= (gt[:, 2] + gt[:, 4] - 1 < 320) & (gt[:, 3] + gt[:, 5] - 1 < 180)
        for row in gt[inside & (gt[:, 8] < 0.9)]:
            others = gt[(gt[:, 0] == row[0]) & (gt[:, 1] != row[1])]
            bottom = row[3] + row[5]
            nearer = others[others[:, 3] + others[:, 5] > bottom - 1]
            overlap = (
                np.minimum(row[2] + row[4], nearer[:, 2] + nearer[:, 4])
                > np.maximum(row[2], nearer[:, 2])
            ) & (np.minimum(bottom, nearer[:, 3] + nearer[:, 5]) > np.maximum(row[3], nearer[:, 3]))
            assert overlap.any(), (cam, row)
            hidden += 1
    assert hidden >= 3


def test_occlusions_with_the_default_settings():
    """The default plan has visits timed to meet head on in the same camera."""
    plan = plan_footage(FootageSpec())
    met = 0
    for a in plan.visits:
        for b in plan.visits:
            if a.pid < b.pid and a.camera == b.camera and a.sides == b.sides[::-1]:
                t = max(a.start, b.start)
                if t < min(a.end, b.end) and abs(a.middle - b.middle) <= 1:
                    met += 1
    assert met >= 5


def test_visits_enter_and_leave_from_outside_the_frame():
    spec = FootageSpec(seed=3)
    for visit in plan_footage(spec).visits:
        for k in (0, -1):
            x, y = visit.feet[k]
            h = visit.heights[k]
            assert x < 0 or x > spec.width or y - 0.5 * h > spec.height, visit.sides


def test_visibility_counts_what_nearer_people_and_the_border_hide():
    frame = np.zeros((20, 40, 3), dtype=np.uint8)
    square = np.ones((10, 10), dtype=np.float32)
    colour = np.full((10, 10, 3), 200.0, dtype=np.float32)

    def person(pid: int, x: int, y: int) -> Placed:
        return Placed(pid=pid, alpha=square, colour=colour, x=x, y=y, box=(x, y, x + 10, y + 10))

    rows = compose(frame, [person(1, 0, 0), person(2, 5, 0), person(3, 35, 15), person(4, 50, 0)])
    got = {pid: (box, vis) for pid, box, vis in rows}
    assert got[1] == ((0, 0, 10, 10), 0.5)  # half behind person 2, drawn later
    assert got[2] == ((5, 0, 15, 10), 1.0)
    assert got[3] == ((35, 15, 40, 20), 0.25)  # a quarter inside the frame: box clipped
    assert 4 not in got  # wholly outside: no row
    assert frame[5, 2, 0] == 200 and frame[19, 39, 0] == 200 and frame[15, 20, 0] == 0


def test_the_people_are_the_benchmarks_test_identities(tmp_path):
    """attributes.csv holds the same rows as the benchmark's table for the same identities,
    and the people are drawn with the benchmark's details."""
    spec = FootageSpec(cameras=1, seconds=2, people=4, width=160, height=120, train_ids=6,
                       test_ids=6, seed=5)  # fmt: skip
    generate_footage(tmp_path / "f", spec)
    generate_synthetic(tmp_path / "b", num_train_ids=6, num_test_ids=6, seed=5, num_workers=1,
                       data_format="table", num_distractors=0, num_junk=0)  # fmt: skip
    footage = (tmp_path / "f" / "attributes.csv").read_text().splitlines()
    bench = {
        line.split(",")[0]: line
        for line in (tmp_path / "b" / "attributes.csv").read_text().splitlines()
    }
    assert footage[0] == bench["person_id"]
    assert [line.split(",")[0] for line in footage[1:]] == ["1", "3", "5", "7"]
    for line in footage[1:]:
        assert line == bench[line.split(",")[0]]
    ids, values, details = footage_people(spec)
    _, test_rows = identity_rows(6, 6, 5)
    assert (values == test_rows[:4]).all() and list(ids) == [1, 3, 5, 7]
    for pid, row, d in zip(ids, values, details):
        assert d == sample_details(np.random.default_rng([5, int(pid), 2, 0]), row)
    header = footage[0].split(",")
    assert header == ["person_id"] + [a.name for a in SCHEMA.attributes]


def test_same_seed_same_bytes_other_seed_other_footage(tmp_path, tiny):
    generate_footage(tmp_path / "again", TINY_SPEC, frames=True)
    assert _digest(tmp_path / "again") == _digest(tiny)  # videos too
    other = FootageSpec(cameras=2, seconds=8, people=5, width=320, height=180, seed=1)
    generate_footage(tmp_path / "other", other)
    a, b = _gt(tiny / "cam1" / "gt" / "gt.txt"), _gt(tmp_path / "other" / "cam1" / "gt" / "gt.txt")
    assert a.shape != b.shape or (a != b).any()


def test_cli_tiny_preset_and_frames_only(tmp_path, cli):
    out = tmp_path / "f"
    code, stdout, err = cli("synth", "footage", "--out", out, *TINY, "--frames", "--no-video",
                            "--start", "2024-03-01T10:00:00+02:00", "--seed", 4)  # fmt: skip
    assert code == 0, err
    assert "2 cameras x 80 frames" in stdout
    assert not list(out.glob("*.mp4"))
    assert len(list((out / "cam2" / "img1").glob("*.jpg"))) == 80
    manifest = json.loads((out / "footage.json").read_text())
    assert manifest["cameras"][0]["start"] == "2024-03-01T08:00:00.000+00:00"
    assert manifest["cameras"][0]["video"] is None and manifest["seed"] == 4


def test_cli_synth_still_writes_the_benchmark(tmp_path, cli):
    code, stdout, err = cli("synth", "--out", tmp_path / "b", "--train-ids", 2, "--test-ids", 2,
                            "--workers", 1)  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "b" / "market_attribute.mat").is_file()
    code, _, err = cli("synth")
    assert code == 2 and "--out" in err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seed", -1], ["--seed", "-1"]),
        (["--cameras", 0], ["--cameras", "0"]),
        (["--size", "640"], ["--size", "640"]),
        (["--size", "wide"], ["--size", "wide"]),
        (["--size", "100x60"], ["--size", "100x60"]),
        (["--size", "322x182"], ["--size", "322x182"]),
        (["--people", 0], ["--people", "0"]),
        (["--people", 201], ["--people", "201", "200"]),
        (["--people", 7, "--test-ids", 6], ["--people", "7", "6"]),
        (["--seconds", 0], ["--seconds"]),
        (["--seconds", "nan"], ["--seconds"]),
        (["--fps", 0], ["--fps", "0"]),
        (["--start", "yesterday"], ["--start", "yesterday"]),
        (["--start", "2025-01-01T00:00:00"], ["--start", "time zone"]),
        (["--no-video"], ["--no-video", "--frames"]),
        (["--train-ids", 1], ["--train-ids", "1"]),
    ],
)
def test_bad_arguments_are_one_line_and_write_nothing(tmp_path, cli, args, words):
    out = tmp_path / "sub" / "f"
    code, _, err = cli("synth", "footage", "--out", out, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in lines[0], err
    assert list(tmp_path.iterdir()) == []  # not even the parent folder or a hidden sibling


def test_overwrite_only_replaces_own_output(tmp_path, cli):
    out = tmp_path / "f"
    args = ["synth", "footage", "--out", out, *TINY, "--people", 2]
    assert cli(*args)[0] == 0
    before = _digest(out)
    code, _, err = cli(*args, "--seed", 2)
    assert code == 2 and "--overwrite" in err and _digest(out) == before
    assert cli(*args, "--seed", 2, "--overwrite")[0] == 0
    assert _digest(out) != before and json.loads((out / "footage.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no partial folders left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    code, _, err = cli("synth", "footage", "--out", foreign, *TINY, "--overwrite")
    assert code == 2 and (foreign / "notes.txt").read_text() == "keep"


def test_a_failure_while_writing_leaves_no_output(tmp_path, monkeypatch):
    from cerberus.data.synthetic import footage as synthetic_footage

    def broken(*args, **kwargs):
        raise CerberusError("disk on fire")

    monkeypatch.setattr(synthetic_footage, "_write_sightings", broken)
    with pytest.raises(CerberusError, match="disk on fire"):
        generate_footage(tmp_path / "a" / "f", TINY_SPEC)
    assert list(tmp_path.iterdir()) == []


def test_yuv_conversion_matches_ffmpeg():
    """Our RGB -> yuv420p (BT.601, limited range) agrees with FFmpeg's and decodes back."""
    yy, xx = np.mgrid[0:16, 0:24].astype(np.float64)
    rgb = np.stack([xx * 10, yy * 15, 255 - xx * 5 - yy * 5], axis=2).astype(np.uint8)
    ours = rgb_to_yuv420p(rgb)
    theirs = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    assert ours.shape == (24, 24)
    assert np.abs(ours.astype(int) - theirs.to_ndarray()).max() <= 1
    back = av.VideoFrame.from_ndarray(ours, format="yuv420p").to_ndarray(format="rgb24")
    loss = np.abs(back.astype(int) - rgb).mean()
    assert loss <= np.abs(theirs.to_ndarray(format="rgb24").astype(int) - rgb).mean() + 0.5


def test_mpeg4_where_ffmpeg_has_no_libx264(tmp_path, monkeypatch):
    from cerberus.data.synthetic import footage as synthetic_footage

    monkeypatch.setattr(synthetic_footage, "video_codec", lambda: "mpeg4")
    spec = FootageSpec(cameras=1, seconds=3, people=2, width=160, height=120)
    generate_footage(tmp_path / "a", spec)
    generate_footage(tmp_path / "b", spec)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    frames, stream, times = _decode(tmp_path / "a" / "cam1.mp4")
    assert stream["codec"] == "mpeg4" and len(frames) == 30
    assert times == pytest.approx([n / 10 for n in range(30)])
    assert (
        json.loads((tmp_path / "a" / "footage.json").read_text())["cameras"][0]["codec"] == "mpeg4"
    )


def test_readers(tiny, tmp_path):
    manifest = read_footage_manifest(tiny)
    assert [c["name"] for c in manifest["cameras"]] == ["cam1", "cam2"]
    sightings = read_sightings(tiny)
    assert len(sightings) == len(_sightings(tiny)) and sightings[0].person_id == 1
    assert sightings[0].first_time.utcoffset() == timedelta(0)
    with pytest.raises(CerberusError, match="footage.json: not found"):
        read_footage_manifest(tmp_path)
    (tmp_path / "footage.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(CerberusError, match="version 99"):
        read_footage_manifest(tmp_path)
    (tmp_path / "sightings.csv").write_text("person_id,camera\nx,cam1\n")
    with pytest.raises(CerberusError, match="sightings.csv: line 2"):
        read_sightings(tmp_path)
