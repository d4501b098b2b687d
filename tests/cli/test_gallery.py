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
    assert code == 0 and f"{left} crops, no index needed (searched exactly up to" in out, err
    assert "indexed" not in out  # a tiny gallery: nothing was indexed
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


def test_search_and_timeline_take_exact_and_nprobe(tiny_index, cli, tmp_path, monkeypatch):
    """--exact and --nprobe reach the store's search (issue 31); a bad --nprobe is one line;
    gallery info says whether an approximate index answers."""
    from cerberus.store.local import LocalStore

    g = tmp_path / "g"
    code, out, err = cli("index", "--features", tiny_index["features"], "--gallery", g)
    assert code == 0, err
    code, plain, err = cli("search", "--gallery", g, "--attrs", "gender=male", "--json")
    assert code == 0, err
    seen = []
    search = LocalStore.search

    def spy(self, queries, k, where=None, **how):
        seen.append(how)
        return search(self, queries, k, where, **how)

    monkeypatch.setattr(LocalStore, "search", spy)
    args = ("search", "--gallery", g, "--attrs", "gender=male", "--json")
    code, out, err = cli(*args, "--exact")
    assert code == 0 and _json(out)["results"] == _json(plain)["results"], err
    assert seen[-1] == {"exact": True, "nprobe": None, "kind": "description"}
    code, out, err = cli(*args, "--nprobe", "7")
    assert code == 0 and seen[-1] == {"exact": False, "nprobe": 7, "kind": "description"}, err
    item = _json(plain)["results"][0]["id"]
    code, out, err = cli(
        "timeline", "--gallery", g, "--item", item, "--min-score", 0, "--exact",
        "--nprobe", 3, "--json",
    )  # fmt: skip
    assert code == 0 and seen[-1] == {"exact": True, "nprobe": 3}, err
    for bad in ("0", "-2", "1.5", "many"):
        for cmd in (args, ("timeline", "--gallery", g, "--item", item)):
            code, out, err = cli(*cmd, "--nprobe", bad)
            assert code == 2 and len(err.strip().splitlines()) == 1, err
            assert "--nprobe" in err and "at least 1" in err, err
    code, out, err = cli("gallery", "info", g)
    assert code == 0 and "index: none (every search is exact)" in out, err


def _section_block(page: Path, heading: str) -> str:
    """The first ```bash block under ``heading`` (a ``## `` line) of a Markdown page."""
    text = page.read_text()
    after = text[text.index(f"\n## {heading}\n") :]
    start = after.index("```bash\n") + len("```bash\n")
    return after[start : after.index("```\n", start)]


def test_the_galleries_that_grow_section_runs_as_written(tiny_index, tmp_path):
    """docs/galleries.md "Galleries that grow": its bash block, unchanged, in a folder laid out
    as after `make demo` (the tests' tiny model, data and index in place of the demo's), with
    ``cerberus`` this checkout's CLI; every command must succeed (``set -e``)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    block = _section_block(root / "docs" / "galleries.md", "Galleries that grow")
    assert "hall_feats.npz --gallery" in block and "--out hall_feats.npz" in block
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "runs" / "demo" / "last.pt").symlink_to(tiny_index["ckpt"])
    (tmp_path / "runs" / "demo" / "gallery_index.npz").symlink_to(tiny_index["index"])
    (tmp_path / "data" / "synthetic").symlink_to(tiny_index["data"])
    script = f'set -euo pipefail\ncerberus() {{ "{sys.executable}" -m cerberus.cli "$@"; }}\n'
    done = subprocess.run(
        ["bash", "-c", script + block],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "crops added to galleries/shop" in out and "galleries/shop: sound" in out
    assert "cameras: door (" in out and "hall (" in out  # --camera taken: names carry none
    assert '"id": 3' in out  # the timeline of item 3
    assert "WARNING" not in done.stderr
    assert (tmp_path / "galleries" / "demo" / "items.sqlite").is_file()


def test_the_table_shows_the_item_id_that_timeline_takes(tiny_index, cli, tmp_path):
    g = tmp_path / "shop"
    code, out, err = cli("index", "--features", tiny_index["features"], "--gallery", g)
    assert code == 0, err
    cli("gallery", "remove", g, "--camera", "c1")  # ids with gaps: item ids are not ranks
    args = ("search", "--gallery", g, "--attrs", "gender=male", "-k", 5)
    code, out, err = cli(*args)
    assert code == 0, err
    head, *rows = out.strip().splitlines()
    assert head.split()[:4] == ["rank", "score", "item", "person"]
    code, js, err = cli(*args, "--json")
    results = _json(js)["results"]
    shown = [int(r.split()[2]) for r in rows[: len(results)]]
    assert shown == [r["id"] for r in results]
    assert [r.split()[3] for r in rows[: len(results)]] == [
        "-" if r["pid"] is None else str(r["pid"]) for r in results
    ]
    code, out, err = cli("timeline", "--gallery", g, "--item", shown[0], "--min-score", -1)
    assert code == 0 and out.startswith(f"item {shown[0]} ("), err


def test_a_missing_item_says_removed_or_the_id_range(tiny_index, cli, tmp_path):
    g = tmp_path / "shop"
    cli("index", "--features", tiny_index["features"], "--gallery", g)
    store = Gallery.open(g, model=False).store
    gone = int(store.ids(where=None)[0]) + 1
    camera = store.get([gone], vectors=False).camera[0]
    store.close()
    cli("gallery", "remove", g, "--camera", camera)
    ids = Gallery.open(g, model=False).store.ids()
    assert gone not in ids and ids[0] < gone < ids[-1]
    code, out, err = cli("timeline", "--gallery", g, "--item", gone, "--min-score", 0)
    assert code == 2 and f"no gallery item {gone}: it was removed" in err, err
    assert f"ids {ids[0]} .. {ids[-1]}" in err and "holds" not in err, err
    code, out, err = cli("timeline", "--gallery", g, "--item", 10**6, "--min-score", 0)
    assert code == 2 and f"no gallery item 1000000 (the gallery's {len(ids)} items have ids" in err


def test_camera_with_crops_named_by_camera_warns_in_one_line(tiny_index, cli, tmp_path):
    """Benchmark-style names give each crop its camera; --camera then applies to none: said."""
    g = tmp_path / "shop"
    code, out, err = cli(
        "index", "--features", tiny_index["features"], "--gallery", g, "--camera", "door"
    )
    assert code == 0, err
    n = len(Gallery.open(g, model=False))
    warned = [line for line in err.splitlines() if "--camera door" in line]
    assert warned == [
        f"WARNING --camera door: {n} of {n} crops take their camera from their file names "
        "(c1, c2, c3); --camera applies to the 0 others"
    ], err
    assert "door" not in Gallery.open(g, model=False).store.cameras()


def test_a_camera_name_that_is_not_utf8_is_one_line_and_creates_nothing(tiny_index, cli, tmp_path):
    g = tmp_path / "shop"
    bad = b"door\xff".decode("utf-8", "surrogateescape")  # how Python reads such an argv
    code, out, err = cli("index", "--features", tiny_index["features"], "--gallery", g,
                         "--camera", bad)  # fmt: skip
    assert code == 2 and "--camera" in err and "not valid UTF-8" in err, err
    assert len(err.strip().splitlines()) == 1 and "unexpected" not in err, err
    assert not g.exists()
    code, out, err = cli("search", "--gallery", tiny_index["index"], "--attrs", "gender=male",
                         "--camera", bad)  # fmt: skip
    assert code == 2 and "not valid UTF-8" in err and "unexpected" not in err, err


def test_gallery_check_names_each_damaged_file(tmp_path, cli, tiny_index):
    from cerberus.store.local import LocalStore
    from tests.store.test_contract import batch, info

    g = tmp_path / "g"
    store = LocalStore.create(g, info())
    for s, seed in (("a", 1), ("b", 2), ("c", 3)):
        store.add(batch(20, source=s, seed=seed))
    store.close()
    code, out, err = cli("gallery", "check", g)
    assert code == 0 and out.strip() == f"{g}: sound; 60 crops in 3 vector segments", (out, err)
    segs = sorted((g / "vectors").iterdir())
    data = bytearray(segs[0].read_bytes())
    data[-5] ^= 0xFF
    segs[0].write_bytes(bytes(data))
    segs[1].unlink()
    code, out, err = cli("gallery", "check", g)
    assert code == 2, (out, err)
    lines = out.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert any(str(segs[0]) in x and "damaged" in x for x in lines), lines
    assert any(str(segs[1]) in x and "missing" in x for x in lines), lines
    assert "2 damaged or missing files" in err
    code, out, err = cli("search", "--gallery", g, "--attrs", "gender=male")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    code, out, err = cli("gallery", "check", tiny_index["index"])  # an .npz: said, one line
    assert code == 2 and "verifies a local gallery folder" in err and len(err.splitlines()) == 1


def test_compact_on_a_full_disk_is_one_line(tmp_path, cli, monkeypatch):
    from cerberus.store import ann as ann_module
    from cerberus.store.local import EXACT_LIMIT, LocalStore
    from tests.store.test_contract import batch, info

    g = tmp_path / "g"
    store = LocalStore.create(g, info())
    store.add(batch(EXACT_LIMIT + 100, source="a", seed=1))
    store.close()
    faiss = ann_module.faiss_module()

    def full(index, path):
        Path(path).write_bytes(b"\0" * 64)
        raise RuntimeError(f"write error in {path}: 0 != 4096 (No space left on device)")

    monkeypatch.setattr(faiss, "write_index", full)
    code, out, err = cli("gallery", "compact", g)
    assert code == 2 and "unexpected" not in err, err
    assert len(err.strip().splitlines()) == 1 and "ann.faiss: index not saved (disk full)" in err
    assert not list((g / "ann").glob("*.tmp"))
    monkeypatch.undo()
    code, out, err = cli("gallery", "compact", g)
    assert code == 0 and f"{EXACT_LIMIT + 100} crops indexed" in out, err
