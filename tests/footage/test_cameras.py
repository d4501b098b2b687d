"""The camera list of ``cerberus watch`` (cerberus.footage.cameras): typed cameras, times read in
each camera's zone, durations, and a bad list refused in one line naming the file and the key."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from cerberus.errors import CerberusError
from cerberus.footage.cameras import load_cameras, parse_duration

LIST = """
defaults:
  stride: 4
  retention: 7d
cameras:
  - name: entrance
    source: videos/entrance.mp4
    start: 2026-07-01T09:00:00
    timezone: Europe/Paris
    detections: det/entrance.txt
  - name: gate
    source: rtsp://user:pw@10.0.0.5/stream1
    timezone: America/New_York
    detector: hog
    retention: 36h
    stride: 2
  - name: yard
    source: /abs/yard.mp4
    start: 2026-12-01T09:00:00+01:00
    timezone: Asia/Tokyo
    crops_per_minute: 15
    max_crops: 4
"""


def test_a_camera_list_gives_typed_cameras(tmp_path):
    path = tmp_path / "cameras.yaml"
    path.write_text(LIST)
    entrance, gate, yard = load_cameras(path)
    assert entrance.name == "entrance" and entrance.source == str(tmp_path / "videos/entrance.mp4")
    assert entrance.detections == str(tmp_path / "det/entrance.txt")
    # a start without an offset is read in the camera's zone: Paris is UTC+2 in July
    assert entrance.start == datetime(2026, 7, 1, 7, 0, tzinfo=timezone.utc).timestamp()
    assert entrance.local_time(entrance.start) == "2026-07-01T09:00:00+02:00"
    assert (entrance.stride, entrance.retention) == (4, 7 * 86400.0)  # from the defaults
    assert gate.live and gate.source.startswith("rtsp://") and gate.start is None
    assert (gate.detector, gate.stride, gate.retention) == ("hog", 2, 36 * 3600.0)
    # an offset given wins over the zone; the zone still shows the camera's local time
    assert yard.start == datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc).timestamp()
    assert yard.local_time(yard.start) == "2026-12-01T17:00:00+09:00"
    assert (yard.crops_per_minute, yard.max_crops, yard.source) == (15.0, 4, "/abs/yard.mp4")
    # winter in New York: UTC-5
    assert gate.local_time(datetime(2026, 1, 5, 12, tzinfo=timezone.utc).timestamp()).endswith(
        "07:00:00-05:00"
    )


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("cameras: []\n", ["cameras: the list is empty"]),
        ("cams: []\n", ["cameras: required"]),
        ("cameras:\n  - name: a\n", ["cameras[0].source: required"]),
        ("cameras:\n  - source: a.mp4\n", ["cameras[0].name: required"]),
        ("cameras:\n  - {name: a, source: a.mp4, timezone: Mars/Olympus}\n",
         ["cameras[0].timezone", "'Mars/Olympus' is not a time zone"]),
        ("cameras:\n  - {name: a, source: a.mp4, start: yesterday}\n",
         ["cameras[0].start", "not an ISO-8601 time"]),
        ("cameras:\n  - {name: a, source: a.mp4, retention: 3 weeks}\n",
         ["cameras[0].retention", "not a duration"]),
        ("cameras:\n  - {name: a, source: a.mp4, retention: 0}\n",
         ["cameras[0].retention", "positive"]),
        ("cameras:\n  - {name: a, source: a.mp4, stride: 0}\n",
         ["cameras[0].stride", "at least 1"]),
        ("cameras:\n  - {name: a, source: a.mp4, stride: 1.5}\n",
         ["cameras[0].stride", "whole number"]),
        ("cameras:\n  - {name: a, source: a.mp4, fps: 10}\n",
         ["cameras[0].fps: unknown key"]),
        ("cameras:\n  - {name: a, source: a.mp4}\n  - {name: a, source: b.mp4}\n",
         ["cameras[1].name", "given twice"]),
        ("cameras:\n  - {name: a, source: a.mp4, detector: hog, detections: d.txt}\n",
         ["cameras[0].detections", "give one of them"]),
        ("defaults: {retention: forever}\ncameras:\n  - {name: a, source: a.mp4}\n",
         ["defaults.retention", "not a duration"]),
        ("cameras:\n  - [a, b]\n", ["cameras[0]", "a mapping"]),
        ("cameras: [\n", ["not valid YAML"]),
        ("gallery: g\ncameras:\n  - {name: a, source: a.mp4}\n", ["gallery: unknown key"]),
    ],
)  # fmt: skip
def test_a_bad_camera_list_is_one_line_naming_file_and_key(tmp_path, text, names):
    path = tmp_path / "cams.yaml"
    path.write_text(text)
    with pytest.raises(CerberusError) as info:
        load_cameras(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for name in names:
        assert name in message


def test_a_missing_list_is_one_line(tmp_path):
    with pytest.raises(CerberusError, match="no such camera list"):
        load_cameras(tmp_path / "none.yaml")


def test_durations():
    assert parse_duration(90, "x") == 90.0
    assert parse_duration("90s", "x") == 90.0
    assert parse_duration("45m", "x") == 2700.0
    assert parse_duration("1.5h", "x") == 5400.0
    assert parse_duration("2w", "x") == 2 * 7 * 86400.0
    for bad in ("-1d", "d", True, "1y"):
        with pytest.raises(CerberusError, match="x: "):
            parse_duration(bad, "x")


def test_relative_paths_are_read_from_the_list_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("cameras:\n  - {name: a, source: v.mp4}\n")
    monkeypatch.chdir(tmp_path)
    [cam] = load_cameras(Path("sub/c.yaml"))
    assert cam.source == str(tmp_path / "sub" / "v.mp4")
