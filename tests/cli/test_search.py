"""The search commands (search, extract, index) through the command line: options and what they
print."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_one_line
from tests.conftest import features_file as _features


@pytest.mark.parametrize("k", ["0", "-5"])
def test_search_and_rank_figures_refuse_k_below_one(tmp_path, cli, k):
    feats = _features(tmp_path)
    index = tmp_path / "i.npz"
    assert cli("index", "--features", feats, "--out", index)[0] == 0
    code, _, err = cli("search", "--index", index, "--attrs", "gender=female", "-k", k)
    assert_one_line(code, err, "-k", k)
    code, _, err = cli("visualize", "ranks", "--index", index, "q.jpg", "--out", tmp_path, "-k", k)
    assert_one_line(code, err, "-k", k)


@pytest.mark.parametrize("option", ["-k", "--top-k"])
def test_top_k_has_a_long_form(index_file, cli, option):
    code, out, err = cli(
        "search", "--index", index_file, "--attrs", "gender=female", option, 3, "--json"
    )
    assert code == 0, err
    assert len(json.loads(out)["results"]) == 3


def test_extract_does_not_count_junk_and_distractors_as_identities(tmp_path, tree, ckpt, cli):
    gallery = tree / "bounding_box_test"
    names = [p.name for p in gallery.glob("*.jpg")]
    others = sum(n.startswith(("0000_", "-1_")) for n in names)
    code, out, err = cli(
        "extract", "--checkpoint", ckpt, "--images", gallery, "--out", tmp_path / "g.npz",
        "--workers", 0, "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert f"{len(names) - others} with identities from their names" in out
    assert f"{others} distractor / junk crops" in out


def test_extract_takes_every_format_pillow_reads_and_says_what_it_skipped(
    tmp_path, tree, ckpt, cli
):
    """GIF, TIFF, WebP, BMP, PNG and JPEG crops are all extracted; files that are no image
    Pillow reads are named in one summary line (issue 32, item 7). Added to a gallery, the
    crops' folder is recorded as its image root (what the server may send)."""
    from PIL import Image

    from cerberus.store.open import open_store

    crops = tmp_path / "crops"
    (crops / "sub").mkdir(parents=True)
    sources = sorted((tree / "bounding_box_test").glob("*.jpg"))[:7]
    endings = [".jpg", ".gif", ".tif", ".tiff", ".webp", ".bmp", ".png"]
    for src, ending in zip(sources, endings):
        Image.open(src).save((crops / "sub" if ending == ".gif" else crops) / (src.stem + ending))
    (crops / "notes.txt").write_text("not a crop")
    (crops / "clip.mp4").write_bytes(b"\x00" * 64)
    code, out, err = cli(
        "extract", "--checkpoint", ckpt, "--images", crops, "--out", tmp_path / "f.npz",
        "--gallery", tmp_path / "g", "--workers", 0, "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert f"{len(endings)} images ->" in out and f"{len(endings)} crops added" in out
    said = [line for line in err.splitlines() if "skipped" in line]
    assert len(said) == 1, err
    assert "skipped 2 files" in said[0] and "1 .txt" in said[0] and "1 .mp4" in said[0]
    store = open_store(tmp_path / "g")
    assert store.info.meta["roots"] == [str(crops.resolve())]
    store.close()
