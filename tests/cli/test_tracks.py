"""``cerberus tracks``: a footage gallery's tracks as a table or JSON with their paths; a source
the gallery does not have is one line, exit 2."""

from __future__ import annotations

import json

from cerberus.store.local import LocalStore
from tests.conftest import assert_one_line
from tests.search.test_tracks import footage
from tests.store.test_contract import info, track_path


def test_tracks_table_and_json(tmp_path, cli):
    folder = tmp_path / "g"
    with LocalStore.create(folder, info()) as store:
        footage(store)
    code, out, err = cli("tracks", "--gallery", folder)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "a.mp4:" and lines[1].split()[:4] == ["track", "camera", "first", "last"]
    row = lines[2].split()
    assert row[:4] == ["1", "north", "10", "60"] and row[6:8] == ["51", "34"]
    assert len(row[8].split(",")) == 3
    assert "b.mp4:" in lines and len(lines) == 2 + 3 + 2 + 1

    code, out, err = cli("tracks", "--gallery", folder, "--source", "b.mp4", "--json")
    assert code == 0, err
    (b1,) = json.loads(out)
    assert (b1["source"], b1["track"], b1["first_frame"], b1["last_frame"]) == ("b.mp4", 1, 3, 300)
    assert len(b1["path"]) == len(b1["path_detected"]) == 298
    want = track_path("b.mp4", 1, range(3, 8), camera="south")
    assert b1["path"][:5] == [
        [f, *(round(float(x), 2) for x in box)] for f, box in zip(range(3, 8), want.boxes)
    ]
    assert len(b1["crops"]) == 3 and b1["start"].startswith("2026-")


def test_tracks_of_a_source_not_in_the_gallery_is_one_line(tmp_path, cli):
    folder = tmp_path / "g"
    with LocalStore.create(folder, info()) as store:
        footage(store)
    code, out, err = cli("tracks", "--gallery", folder, "--source", "nowhere.mp4")
    assert_one_line(code, err, "nowhere.mp4", "not in this gallery")
    code, out, err = cli("tracks", "--gallery", tmp_path / "none")
    assert_one_line(code, err, "none")
