"""The synthetic benchmark: layout, determinism, attributes visible in the pixels, unseen SIDs;
``synth`` replaces only a benchmark it wrote itself."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from cerberus.attributes.mat import load_attribute_mat
from cerberus.attributes.schema import GROUPS
from cerberus.data.datasets import read_dataset
from cerberus.data.synthetic import benchmark as synthetic
from cerberus.data.synthetic.attributes import (
    COL,
    RESERVED_FOR_TEST,
    SCHEMA,
    balanced_attributes,
    identity_rows,
    unavoidable_reserved_sids,
)
from cerberus.data.synthetic.benchmark import (
    MAX_TEST_IDS,
    MAX_TRAIN_IDS,
    generate_synthetic,
    make_contact_sheet,
    make_value_sheet,
)
from cerberus.data.synthetic.render import make_cameras, render_person, sample_details
from cerberus.errors import CerberusError
from tests.conftest import assert_one_line

MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s\d+_\d{6}_\d{2}\.jpg$")


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():  # the images and market_attribute.mat
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "a"
    summary = generate_synthetic(
        root, num_train_ids=6, num_test_ids=6, num_distractors=3, num_junk=2, num_workers=1
    )
    return root, summary


def test_layout_names_and_readers(small):
    root, summary = small
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        names = [p.name for p in (root / folder).iterdir()]
        assert names and all(MARKET_NAME.match(n) for n in names), folder
    gallery = [p.name for p in (root / "bounding_box_test").iterdir()]
    assert any(n.startswith("0000_") for n in gallery)  # distractors
    assert any(n.startswith("-1_") for n in gallery)  # junk
    ds = read_dataset(root)
    assert ds.num_train_ids == 6 and len(np.unique(ds.query.pids)) == 6
    assert set(ds.train.pids).isdisjoint(ds.query.pids)
    tables = load_attribute_mat(root / "market_attribute.mat")
    assert set(tables["train"].ids) == set(ds.train.pids)
    assert set(tables["test"].ids) == set(ds.query.pids)
    for pid in np.unique(ds.query.pids):  # each test identity is seen by >= 2 cameras
        cams = set(ds.query.camids[ds.query.pids == pid]) | set(
            ds.gallery.camids[ds.gallery.pids == pid]
        )
        assert len(cams) >= 2
    assert summary.images["query"] == len(ds.query)


def test_deterministic_for_a_seed_and_worker_count(small, tmp_path):
    root, _ = small
    again = generate_synthetic(
        tmp_path / "b",
        num_train_ids=6,
        num_test_ids=6,
        num_distractors=3,
        num_junk=2,
        num_workers=2,
    )
    assert _digest(root) == _digest(again.root)
    other = generate_synthetic(
        tmp_path / "c",
        num_train_ids=6,
        num_test_ids=6,
        num_distractors=3,
        num_junk=2,
        num_workers=1,
        seed=1,
    )
    assert _digest(root) != _digest(other.root)


def _render(values, seed=0):
    rng = np.random.default_rng(seed)
    details = sample_details(np.random.default_rng(1), values)
    cam = make_cameras(6, 0)[0]
    return np.asarray(render_person(values, details, cam, rng), dtype=np.float32)


def _base():
    v = np.zeros(SCHEMA.num_attributes, dtype=np.int64)
    v[COL["upper.color"]] = SCHEMA.attributes[COL["upper.color"]].value_index("red")
    v[COL["lower.color"]] = SCHEMA.attributes[COL["lower.color"]].value_index("black")
    v[COL["lower.clothes"]] = 1  # pants
    v[COL["age"]] = 2
    return v


def test_top_colour_shows_in_the_top_region():
    red = _base()
    blue = _base()
    blue[COL["upper.color"]] = SCHEMA.attributes[COL["upper.color"]].value_index("blue")
    a, b = _render(red), _render(blue)
    top = (slice(35, 60), slice(24, 40))  # chest of a 128x64 crop
    ra, rb = a[top].mean((0, 1)), b[top].mean((0, 1))
    assert ra[0] - ra[2] > 40 and rb[2] - rb[0] > 40  # red vs blue dominates


@pytest.mark.parametrize(
    "name, value, region",
    [
        ("backpack", 1, (slice(20, 60), slice(10, 54))),
        ("lower.length", 1, (slice(85, 120), slice(20, 44))),
        ("upper.sleeve", 1, (slice(35, 65), slice(0, 64))),
        ("lower.clothes", 0, (slice(65, 110), slice(10, 54))),
        ("hat", 1, (slice(0, 25), slice(16, 48))),
        ("handbag", 1, (slice(62, 88), slice(44, 64))),  # hangs from the hand on the right here
        ("bag", 1, (slice(30, 80), slice(0, 64))),
        ("age", 0, (slice(0, 128), slice(0, 64))),  # child: big head, small body
        ("age", 3, (slice(0, 30), slice(10, 54))),  # old: stoop, white hair
    ],
)
def test_each_attribute_changes_its_region(name, value, region):
    base = _base()
    changed = base.copy()
    changed[COL[name]] = value
    diff = np.abs(_render(base) - _render(changed))[region].mean()
    assert diff > 5, (name, diff)


def test_some_test_sids_are_unseen_in_training():
    train, test = identity_rows(200, 200, 0)
    train_sids, test_sids = SCHEMA.to_sids(train), SCHEMA.to_sids(test)
    unseen = sum(len(set(test_sids[:, k]) - set(train_sids[:, k])) for k in range(len(GROUPS)))
    assert unseen >= 2
    # skewed like real data: black/blue lower bodies common, green rare
    lower = train[:, COL["lower.color"]]
    black, green = (
        SCHEMA.attributes[COL["lower.color"]].value_index(c) for c in ("black", "green")
    )
    assert (lower == black).mean() > 3 * (lower == green).mean()


@pytest.mark.parametrize("seed", [0, 1])
def test_every_value_is_common_among_training_identities(seed):
    train, _ = identity_rows(200, 200, seed)
    for attr in SCHEMA.attributes:
        share = np.bincount(train[:, COL[attr.name]], minlength=len(attr.values)) / len(train)
        if len(attr.values) == 2:
            assert share.min() >= 0.15, (attr.name, share)
        elif attr.name == "age":
            assert share.min() >= 0.10, share
        else:  # colours, "none" included
            assert share.min() * len(train) >= 5, (attr.name, share)


def test_reserved_sids_only_among_test_identities():
    train, test = identity_rows(200, 200, 0)
    for reserved in RESERVED_FOR_TEST:

        def hit(rows, reserved=reserved):
            return np.all([rows[:, COL[k]] == x for k, x in reserved.items()], axis=0)

        assert not hit(train).any() and hit(test).any(), reserved


def test_value_sheet(small, tmp_path):
    root, _ = small
    out = make_value_sheet(root, tmp_path / "values.png", per_value=3)
    from PIL import Image

    rows = sum(len(a.values) for a in SCHEMA.attributes)
    assert Image.open(out).size == (150 + 3 * 50, rows * 98)


def test_contact_sheet(small, tmp_path):
    root, _ = small
    out = make_contact_sheet(root, tmp_path / "sheet.png", num_ids=3, per_id=4)
    from PIL import Image

    assert Image.open(out).size[1] >= 3 * 128


def test_bad_arguments(tmp_path, small):
    with pytest.raises(CerberusError, match="at least 2 train"):
        generate_synthetic(tmp_path / "x", num_train_ids=0)
    with pytest.raises(CerberusError, match="num_cameras must be 2..6"):
        generate_synthetic(tmp_path / "x", num_cameras=1)
    root, _ = small
    with pytest.raises(CerberusError, match="exists and is not empty"):
        generate_synthetic(root, num_train_ids=2, num_test_ids=2)


def test_caption_names_a_patterned_top():
    from cerberus.data.synthetic.attributes import SCHEMA
    from cerberus.data.synthetic.benchmark import describe_values

    values = np.zeros(SCHEMA.num_attributes, dtype=np.int64)
    text = describe_values(values)  # colour code 0 ("none") is drawn as a pattern
    assert "patterned long-sleeve top" in text and "patterned long" in text
    assert "none" not in text
    values[SCHEMA.index("upper.color")] = SCHEMA.attributes[
        SCHEMA.index("upper.color")
    ].value_index("red")
    assert "red long-sleeve top" in describe_values(values)


def _shows(rows, reserved):
    return np.all([rows[:, COL[k]] == x for k, x in reserved.items()], axis=0)


@pytest.mark.parametrize("num_train, num_test", [(200, 200), (20, 20), (3, 2), (97, 37)])
def test_identity_rows_for_many_seeds(num_train, num_test):
    """Every seed gives rows (no rendering here): reserved SIDs only in the test split, every
    value count the seed-free quota, the same rows again for the same seed. A row showing both
    reserved SIDs at once (seeds 3, 6, 7 at 200, seed 42 at 20) made the seeds fail."""
    quota = balanced_attributes(num_train, np.random.default_rng(0), allow_reserved=True)
    for seed in range(60):
        train, test = identity_rows(num_train, num_test, seed)
        assert train.shape == (num_train, SCHEMA.num_attributes), seed
        for reserved in RESERVED_FOR_TEST:
            assert not _shows(train, reserved).any(), (seed, reserved)
            assert _shows(test, reserved).any(), (seed, reserved)
        for attr in SCHEMA.attributes:
            c, k = COL[attr.name], len(attr.values)
            expected = np.bincount(quota[:, c], minlength=k)
            assert np.array_equal(np.bincount(train[:, c], minlength=k), expected), (seed, attr)
        again = identity_rows(num_train, num_test, seed)
        assert np.array_equal(again[0], train) and np.array_equal(again[1], test), seed


def test_every_accepted_size_leaves_room_for_the_reserved_sids():
    """The value counts depend on the size alone; at every size the options accept, the
    reserved SIDs can be kept out of training (so no seed fails)."""
    sizes = [*range(2, 300), *range(300, MAX_TRAIN_IDS, 211), MAX_TRAIN_IDS]
    for n in sizes:
        rows = balanced_attributes(n, np.random.default_rng(n), allow_reserved=True)
        assert unavoidable_reserved_sids(rows) == [], n
    crowded = np.zeros((10, SCHEMA.num_attributes), dtype=np.int64)
    crowded[:, COL["hat"]] = 1
    crowded[:, COL["gender"]] = 1
    crowded[:3, COL["hair"]] = 1
    assert unavoidable_reserved_sids(crowded) == ["hat=yes+hair=long"]


def _small(root, **kw):
    kw = {"num_train_ids": 20, "num_test_ids": 20, "num_distractors": 2, "num_junk": 1, **kw}
    return generate_synthetic(root, num_workers=1, **kw)


@pytest.mark.parametrize("seed, data_format", [(42, "market"), (24, "table")])
def test_seeds_that_failed_now_write_a_benchmark(tmp_path, seed, data_format):
    out = tmp_path / "syn"
    _small(out, seed=seed, data_format=data_format)
    if data_format == "table":
        from cerberus.data.table import read_table_dataset

        ds = read_table_dataset(out)
        assert not (out / "market_attribute.mat").exists()
    else:
        ds = read_dataset(out)
    assert ds.num_train_ids == 20 and len(np.unique(ds.query.pids)) == 20
    train = ds.train_attributes.values
    assert not any(_shows(train, r).any() for r in RESERVED_FOR_TEST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no temporary folder left


def test_cli_seed_that_failed(tmp_path, cli):
    out = tmp_path / "syn"
    args = ["--train-ids", 20, "--test-ids", 20, "--seed", 42, "--workers", 1]
    code, _, err = cli("synth", "--out", out, *args)
    assert code == 0, err
    assert (out / "market_attribute.mat").is_file()


def test_a_failure_while_writing_leaves_no_output(tmp_path, monkeypatch):
    def broken(path, tables):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(synthetic, "save_attribute_mat", broken)
    out = tmp_path / "new" / "parents" / "syn"
    with pytest.raises(OSError):
        _small(out, num_train_ids=2, num_test_ids=2)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the parents made for it


def test_a_failed_overwrite_keeps_the_old_benchmark(tmp_path, monkeypatch):
    out = tmp_path / "syn"
    _small(out, num_train_ids=2, num_test_ids=2)
    before = _digest(out)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_render_job", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _small(out, seed=1, overwrite=True)
    assert _digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_a_refusal_writes_nothing(tmp_path, monkeypatch):
    def refuse(num_train, num_test, seed):
        raise CerberusError("synthetic: cannot keep {'hat': 1, 'hair': 1} out of 20 rows")

    monkeypatch.setattr(synthetic, "identity_rows", refuse)
    with pytest.raises(CerberusError, match="cannot keep"):
        _small(tmp_path / "syn")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"seed": -1}, "seed -1: must be at least 0"),
        ({"num_train_ids": MAX_TRAIN_IDS + 1}, f"at most {MAX_TRAIN_IDS} train"),
        ({"num_test_ids": MAX_TEST_IDS + 1}, f"and {MAX_TEST_IDS} test"),
        ({"num_distractors": 1000}, "distractors and junk images must be 0..999"),
        ({"num_junk": -1}, "distractors and junk images must be 0..999"),
        ({"data_format": "csv"}, "format 'csv'"),
    ],
)
def test_arguments_refused_before_writing(tmp_path, kw, message):
    with pytest.raises(CerberusError, match=message):
        _small(tmp_path / "syn", **kw)
    assert list(tmp_path.iterdir()) == []


def test_into_the_working_directory_and_over_it(tmp_path, monkeypatch):
    """``--out .`` in an empty folder, then ``--overwrite``: the folder itself stays."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    _small(".", num_train_ids=2, num_test_ids=2)
    first = _digest(here)
    assert (here / "market_attribute.mat").is_file()
    _small(".", num_train_ids=2, num_test_ids=2, seed=1, overwrite=True)
    assert Path.cwd() == here and (here / "market_attribute.mat").is_file()
    assert _digest(here) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_synth_never_deletes_a_folder_it_did_not_write(tmp_path, cli, overwrite):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_bytes(b"years of work")
    args = ["synth", "--out", home, "--train-ids", 2, "--test-ids", 2, "--workers", 1]
    code, _, err = cli(*args, *(["--overwrite"] if overwrite else []))
    assert_one_line(code, err, home, ".cerberus-synthetic")
    assert (home / "thesis.tex").read_bytes() == b"years of work"


def test_synth_overwrite_replaces_its_own_benchmark(tmp_path, cli):
    out = tmp_path / "syn"
    args = ["synth", "--out", out, "--train-ids", 2, "--test-ids", 2, "--workers", 1]
    assert cli(*args)[0] == 0
    assert (out / ".cerberus-synthetic").is_file()
    (out / "stale.txt").write_text("old")
    code, _, err = cli(*args)
    assert_one_line(code, err, out, "--overwrite")
    assert cli(*args, "--overwrite")[0] == 0
    assert not (out / "stale.txt").exists()


def test_synth_workers_below_one_is_one_line(tmp_path, cli):
    code, _, err = cli("synth", "--out", tmp_path / "s", "--workers", "-1")
    assert_one_line(code, err, "--workers")


def _children(pid: int) -> set[int]:
    """The pids whose parent is ``pid`` (read from /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (or is a zombie, dead but not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads child processes from /proc")
def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """``cerberus synth`` sent SIGTERM mid-run: exit 130, no hidden folder, no worker left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    src = Path(__file__).resolve().parents[3] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "cerberus.cli", "synth", "--out", str(tmp_path / "b")]
    proc = subprocess.Popen([*cmd, "--workers", "2"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120  # a bound on waiting, not a timing
    workers: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        started = [p for p in tmp_path.glob(".b.*.partial") if any(p.rglob("*.jpg"))]
        workers = _children(proc.pid)
        if started and len(workers) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "synth finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode()  # exits as Ctrl-C does (typer: 130)
    assert list(tmp_path.iterdir()) == []  # neither the hidden folder nor the output
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(map(_gone, workers)):
        time.sleep(0.05)
    assert workers and all(map(_gone, workers)), f"workers still running: {workers}"


def test_a_rerun_removes_the_hidden_folder_of_a_killed_run(tmp_path):
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".b.{dead.pid}.x1y2.partial"
    (stale / "bounding_box_train").mkdir(parents=True)
    live = tmp_path / f".b.{os.getppid()}.z3.partial"  # a writer still running: kept
    live.mkdir()
    generate_synthetic(tmp_path / "b", num_train_ids=4, num_test_ids=4, num_workers=1)
    assert not stale.exists() and live.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b", live.name])
