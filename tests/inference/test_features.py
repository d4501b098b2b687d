"""Features and index files (``.npz``): the image paths they store resolve from any working
directory; a file that is not arrays is refused as untrusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from cerberus.config import load_config
from cerberus.inference.features import FeatureSet
from cerberus.store.npz import NpzIndex
from tests.conftest import assert_one_line


def test_files_store_paths_that_resolve_from_anywhere(written):
    a = written / "a"
    feats = FeatureSet.load(a / "g.npz")
    index = NpzIndex.load(a / "g.index.npz")
    for paths in (feats.paths, index.paths):
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert Path(index.meta["checkpoint"]) == (a / "run" / "last.pt").resolve()
    cfg = load_config(a / "run" / "config.yaml", [])
    assert Path(cfg.data.root) == (a / "data").resolve()


@pytest.mark.parametrize("command", ["search", "index"])
def test_text_file_given_as_npz_is_refused_as_untrusted(tmp_path, cli, command):
    text = tmp_path / "notes.npz"
    text.write_text("just some text, not arrays\n")
    if command == "search":
        code, _, err = cli("search", "--index", text, "--attrs", "gender=female")
    else:
        code, _, err = cli("index", "--features", text, "--out", tmp_path / "i.npz")
    assert_one_line(code, err, text, "refusing to load objects other than arrays")
    assert "allow_pickle" not in err
