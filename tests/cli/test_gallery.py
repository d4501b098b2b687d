"""Galleries from the command line (method §9): filters, per-track rows and timelines on an
``.npz`` index (read-only) and on a gallery folder that grows; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cerberus.errors import CerberusError
from cerberus.search import Gallery


def _json(out: str):
    return json.loads(out)


def test_search_filters_by_camera_on_an_npz_index(tiny_index, cli):
    index = tiny_index["index"]
    code, out, err = cli(
        "search",
        "--gallery",
        index,
        "--attrs",
        "gender=male",
        "-k",
        50,
        "--camera",
        "c1",
        "--camera",
        "c3",
        "--json",
    )
    assert code == 0, err
    rows = _json(out)["results"]
    assert rows and {r["camera"] for r in rows} <= {"c1", "c3"}
    gallery = Gallery.open(index, model=False)
    want = [
        r for r in gallery.by_attributes("gender=male", 10**4).rows if r["camera"] in ("c1", "c3")
    ]
    assert [r["id"] for r in rows] == [r["id"] for r in want][:50]
    assert all(set(r) >= {"id", "camera", "time", "source", "frame", "box", "track"} for r in rows)
    code, out, err = cli(
        "search",
        "--index",
        index,
        "--attrs",
        "gender=male",
        "--per-track",
        "--track-score",
        "top3",
        "--json",
    )
    assert code == 0, err
    rows = _json(out)["results"]
    assert all(r["count"] == 1 and r["track"] is None for r in rows)  # crops without tracks


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--camera", "c9"), ["camera c9: not in this gallery", "c1, c2"]),
        (
            ("--after", "2026-11-30T15:00:00Z", "--before", "2026-11-30T14:00:00Z"),
            ["--after must be earlier than --before"],
        ),
        (("--after", "2026-11-30T15:00:00"), ["--after", "no time zone"]),
        (("--before", "yesterday"), ["--before 'yesterday': not an ISO-8601 time"]),
        (("--per-track", "--track-score", "median"), ["--track-score 'median'"]),
    ],
)
def test_bad_filters_are_one_line_and_exit_2(tiny_index, cli, args, words):
    code, out, err = cli(
        "search", "--gallery", tiny_index["index"], "--attrs", "gender=male", *args
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err


def test_a_file_that_is_not_a_gallery_is_one_line(tmp_path, cli):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    for args in (
        ("search", "--gallery", notes, "--attrs", "gender=male"),
        ("gallery", "info", notes),
        ("timeline", "--gallery", notes, "--item", 0),
    ):
        code, _, err = cli(*args)
        assert code == 2 and "not a gallery" in err and len(err.strip().splitlines()) == 1, err


def test_timeline_and_info_of_an_npz_index(tiny_index, cli):
    index = tiny_index["index"]
    code, out, err = cli("timeline", "--gallery", index, "--item", 3, "--min-score", -1, "--json")
    assert code == 0, err
    found = _json(out)
    n = len(Gallery.open(index, model=False))
    assert sum(s["count"] for s in found["sightings"]) == n  # every crop is above -1
    assert found["query"]["id"] == 3 and found["query"]["vector"] == "the item's own vector"
    assert all(s["start"] is None for s in found["sightings"])  # an index file knows no times
    # the tiny model has no calibration: sightings above the default, then candidates apart
    args = ("timeline", "--gallery", index, "--item", 3, "-k", n, "--device", "cpu")
    code, out, err = cli(*args, "--json")
    found = _json(out)
    seen, maybe = found["sightings"], found["candidates"]
    assert code == 0 and seen and maybe and found["calibrated"] is False, err
    assert all(s["score"] > 0.9 or s["query"] for s in seen)
    assert all(s["score"] <= 0.9 for s in maybe) and len(seen) + len(maybe) == n
    code, out, err = cli(*args)
    head, _, rest = out.partition("\ncandidates: ")
    assert "no calibrated threshold" in head and "<- the query" in head
    assert len(head.strip().splitlines()) == 2 + len(seen)  # the rule, the header, sightings
    assert rest.startswith(f"{len(maybe)} more groups of the top {n} crops, at or below 0.9")
    assert len(rest.strip().splitlines()) == 2 + len(maybe)
    code, out, err = cli("timeline", "--gallery", index, "--item", 10**6, "--min-score", 0)
    assert code == 2 and "no gallery item 1000000" in err, err
    code, out, err = cli("gallery", "info", index)
    assert code == 0 and "read-only" in out and "cameras: c1 (" in out, err
    code, out, err = cli("gallery", "remove", index, "--camera", "c1")
    assert code == 2 and "read-only: convert it with `cerberus gallery convert`" in err, err


def test_a_gallery_folder_grows_without_a_rebuild(tiny_index, cli, tmp_path):
    """index --gallery adds (creating the folder), the same source twice is refused unless
    --replace; info, remove, search with filters, convert and timeline on the folder."""
    feats, g = tiny_index["features"], tmp_path / "shop"
    args = ("index", "--features", feats, "--gallery", g)
    code, out, err = cli(*args, "--start", "2026-11-30T14:00:00+01:00")
    assert code == 0 and "crops added" in out, err
    n = len(Gallery.open(tiny_index["index"], model=False))
    assert len(Gallery.open(g, model=False)) == n
    code, out, err = cli(*args)
    assert code == 2 and "already in the gallery" in err and len(err.splitlines()) == 1, err
    code, out, err = cli(*args, "--replace", "--start", "2026-11-30T14:00:00+01:00")
    assert code == 0, err
    code, out, err = cli("gallery", "info", g, "--json")
    facts = _json(out)
    assert facts["count"] == n and facts["span"][0] == "2026-11-30T13:00:00+00:00"
    code, out, err = cli(
        "search",
        "--gallery",
        g,
        "--attrs",
        "gender=male",
        "-k",
        50,
        "--camera",
        "c2",
        "--after",
        "2026-11-30T12:59:00Z",
        "--json",
    )
    assert code == 0 and {r["camera"] for r in _json(out)["results"]} == {"c2"}, err
    code, out, err = cli(
        "search",
        "--gallery",
        g,
        "--attrs",
        "gender=male",
        "--before",
        "2026-11-30T13:00:00Z",
        "--json",
    )
    assert code == 0 and _json(out)["results"] == [], err  # every crop is at 13:00
    first = int(Gallery.open(g, model=False).store.ids()[0])  # replaced: new ids
    code, out, err = cli("timeline", "--gallery", g, "--item", first, "--min-score", -1, "--json")
    assert code == 0 and sum(s["count"] for s in _json(out)["sightings"]) == n, err
    code, out, err = cli("gallery", "remove", g, "--source", "no/such/folder")
    assert code == 2 and "not in" in err and len(err.splitlines()) == 1, err
    code, out, err = cli("gallery", "remove", g, "--camera", "c1")
    assert code == 0 and "removed" in out, err
    assert "c1" not in Gallery.open(g, model=False).store.cameras()
    left = len(Gallery.open(g, model=False))
    code, out, err = cli("gallery", "compact", g)
    assert code == 0 and f"{left} crops indexed" in out, err
    assert (Path(g) / "ann").exists() or any("ann" in p.name for p in Path(g).iterdir())
    code, out, err = cli("search", "--gallery", g, "--attrs", "gender=male", "-k", 5, "--json")
    assert code == 0 and len(_json(out)["results"]) == 5, err
    code, out, err = cli("gallery", "compact", tiny_index["index"])
    assert code == 2 and "only a local gallery" in err, err
    code, out, err = cli(*args, "--start", "2026-11-30T14:00:00")
    assert code == 2 and "no time zone" in err, err

    converted = tmp_path / "converted"
    code, out, err = cli("gallery", "convert", tiny_index["index"], "--out", converted)
    assert code == 0, err
    old = Gallery.open(tiny_index["index"], model=False).by_attributes("gender=female", 8).rows
    new = Gallery.open(converted, model=False).by_attributes("gender=female", 8).rows
    assert [r["path"] for r in new] == [r["path"] for r in old]
    code, out, err = cli("gallery", "convert", tiny_index["index"], "--out", converted)
    assert code == 2 and "not empty" in err, err

    # extract straight into a gallery; the Python API adds and filters the same way
    crops = tiny_index["data"] / "query"
    code, out, err = cli("extract", "--checkpoint", tiny_index["ckpt"], "--images", crops,
                         "--gallery", g, "--device", "cpu", "--workers", 0)  # fmt: skip
    assert code == 0 and "crops added" in out, err
    import cerberus

    model = cerberus.load(tiny_index["ckpt"], device="cpu")
    with pytest.raises(CerberusError, match="already in the gallery"):
        model.index(crops, gallery=g)
    grown = model.index(crops, gallery=g, replace=True, start="2026-11-30T15:00:00Z")
    where = grown.where(after="2026-11-30T14:30:00Z")
    rows = grown.by_image(tiny_index["query"], k=50, where=where, per_track=True).rows
    assert rows and all(r["source"] == str(crops) for r in rows)


def test_remove_a_source_named_as_the_user_typed_it(tiny_index, cli, tmp_path, monkeypatch):
    """Sources are stored as absolute paths; ``--source`` as typed (relative) finds them."""
    g = tmp_path / "shop"
    code, out, err = cli("index", "--features", tiny_index["features"], "--gallery", g)
    assert code == 0, err
    (source,) = [s.name for s in Gallery.open(g, model=False).store.sources()]
    monkeypatch.chdir(Path(source).parent)
    code, out, err = cli("gallery", "remove", g, "--source", Path(source).name)
    assert code == 0 and "removed" in out, err
    assert Gallery.open(g, model=False).store.sources() == []
