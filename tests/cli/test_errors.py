"""The command line's error contract: bad input exits 2 with one line on stderr naming the file
or option, an unexpected error is one line unless debugging, garbage never shows a traceback;
the CLI configures only the ``cerberus`` logger."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cerberus.attributes.schema_files import MARKET1501
from tests.conftest import assert_one_line, make_tree
from tests.conftest import features_file as _features


def test_unexpected_errors_are_one_line_unless_debugging(tmp_path, cli, monkeypatch):
    import cerberus.evaluation.evaluate as evaluation

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", broken)
    args = ["eval", "--checkpoint", tmp_path / "x.pt"]
    code, _, err = cli(*args)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "unexpected ZeroDivisionError: division by zero second line" in err
    assert "--debug" in err
    with pytest.raises(ZeroDivisionError):
        cli("--debug", *args)
    monkeypatch.setenv("CERBERUS_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli(*args)


@pytest.mark.parametrize("command", ["describe", "eval"])
def test_no_skip_bad_hint_where_the_command_has_no_such_option(tmp_path, ckpt, cli, command):
    bad = tmp_path / "0002_c1s1_000000_00.jpg"
    bad.write_bytes(b"not an image")
    if command == "describe":
        code, _, err = cli("describe", "--checkpoint", ckpt, bad)
        assert_one_line(code, err, bad)
    else:  # a test set with an unreadable gallery image
        data = make_tree(tmp_path / "m", MARKET1501, size=(64, 32))
        broken = sorted((data / "bounding_box_test").glob("*.jpg"))[0]
        broken.write_bytes(b"not an image")
        code, _, err = cli("eval", "--checkpoint", ckpt, "--data", data, "--workers", 0)
        assert code == 2 and broken.name in err.strip().splitlines()[-1]
    assert "--skip-bad" not in err


def test_cli_configures_only_the_cerberus_logger(tmp_path, cli):
    import logging

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    cli("search", "--index", tmp_path / "none.npz", "--attrs", "gender=female")
    assert (list(root.handlers), root.level) == before
    assert logging.getLogger("cerberus").level == logging.INFO


# --------------------------------------------------------------------------- garbage in


def _garbage_file(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


numbers = st.one_of(st.integers(-5, 40), st.sampled_from(["0", "-1", "1e3", "x", ""]))
words = st.text(max_size=30)
blobs = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"PK\x03\x04", b"\x80\x04K\x01.", b"data: {root: 1}\n", b"{]"]),
)


@st.composite
def commands(draw, index: Path, feats: Path, folder: Path) -> list:
    """A command line of a cheap command (nothing trains) with garbage or good arguments."""
    kind = draw(st.sampled_from(["search", "index", "describe", "eval", "train", "synth"]))
    garbage = _garbage_file(folder, draw(st.sampled_from(["g.npz", "g.pt", "g.yaml"])), draw(blobs))
    if kind == "search":
        args = ["search", "--index", draw(st.sampled_from([index, garbage]))]
        args += ["--attrs", draw(st.one_of(words, st.sampled_from(["gender=female", "hat=yes"])))]
        args += ["-k", draw(numbers)]
    elif kind == "index":
        args = ["index", "--features", draw(st.sampled_from([feats, garbage]))]
        args += ["--out", folder / "out.npz", "--kind", draw(st.sampled_from(["flat", "ivf",
                 "hnsw", "ivf-sq8", "kd-tree"]))]  # fmt: skip
        for option in ("--nlist", "--nprobe", "--hnsw-m", "--ef-search"):
            if draw(st.booleans()):
                args += [option, draw(numbers)]
    elif kind == "describe":
        args = ["describe", "--checkpoint", garbage, garbage, "--device", draw(words)]
    elif kind == "eval":
        args = ["eval", "--checkpoint", garbage, "--workers", draw(numbers)]
    elif kind == "train":
        args = ["train", "-c", garbage, draw(words)]
    else:  # a folder that is not a benchmark: refused whatever the numbers
        args = ["synth", "--out", folder, "--train-ids", draw(numbers), "--cameras", draw(numbers)]
        args += ["--overwrite"] if draw(st.booleans()) else []
    return args


@pytest.mark.slow
def test_garbage_arguments_and_files_exit_0_or_2_without_traceback(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a config without data.root looks for data/ here: not found
    feats = _features(tmp_path)
    index = tmp_path / "i.npz"
    assert cli("index", "--features", feats, "--out", index)[0] == 0
    folder = tmp_path / "garbage"
    folder.mkdir()

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(commands(index, feats, folder))
    def run(args):
        code, _, err = cli(*args)
        assert code in (0, 2), (args, err)
        assert "Traceback" not in err, (args, err)

    run()
