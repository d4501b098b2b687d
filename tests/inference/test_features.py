"""Features files: the image paths they store resolve from any working directory."""

from __future__ import annotations

from pathlib import Path

from cerberus.config import load_config
from cerberus.inference.features import FeatureSet
from cerberus.store.npz_index import GalleryIndex


def test_files_store_paths_that_resolve_from_anywhere(written):
    a = written / "a"
    feats = FeatureSet.load(a / "g.npz")
    index = GalleryIndex.load(a / "g.index.npz")
    for paths in (feats.paths, index.paths):
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert Path(index.meta["checkpoint"]) == (a / "run" / "last.pt").resolve()
    cfg = load_config(a / "run" / "config.yaml", [])
    assert Path(cfg.data.root) == (a / "data").resolve()
