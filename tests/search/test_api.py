"""The Python API: the README's example runs as written, and the API's answers are
the search layer's (same as the commands)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cerberus
from cerberus.errors import CerberusError

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first ``python`` code block of the README's "Python API" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "no python block in the README's Python API section"
    return found.group(1)


@pytest.fixture(scope="module")
def workdir(tiny_index, tmp_path_factory):
    """The files the README's example names: runs/demo/last.pt, query.jpg, crops/."""
    root = tmp_path_factory.mktemp("api")
    (root / "runs" / "demo").mkdir(parents=True)
    shutil.copy(tiny_index["ckpt"], root / "runs" / "demo" / "last.pt")
    shutil.copy(tiny_index["query"], root / "query.jpg")
    (root / "crops").mkdir()
    for p in sorted((tiny_index["data"] / "bounding_box_test").glob("*.jpg"))[:12]:
        shutil.copy(p, root / "crops" / p.name)
    yield root
    shutil.rmtree(root, ignore_errors=True)  # a model is ~250 MB: free it with the module


def test_readme_python_example_runs(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    exec(compile(readme_example(), "README.md (Python API)", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out.strip().splitlines()
    assert "| weak groups:" in out[0]
    assert out[1] == "None"  # the tiny model is not calibrated
    assert [line.split()[0] for line in out[2:8]] == ["1", "2", "3"] * 2
    assert out[-1] == "3"
    assert (workdir / "gallery.npz").is_file()


def test_api_answers_are_the_search_layers(workdir, tiny_index):
    from cerberus.search import Gallery

    model = cerberus.load(workdir / "runs" / "demo" / "last.pt", device="cpu")
    assert isinstance(model, cerberus.Cerberus) and "market1501" in repr(model)
    query = workdir / "query.jpg"
    rgb = np.asarray(Image.open(query).convert("RGB"))
    v = model.embed([query, rgb.astype(np.float32) / 255, Image.fromarray(rgb).convert("L")])
    assert v.shape == (3, 5 * 16)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(v[0], v[1], atol=1e-4)
    assert model.similarity(query, rgb) == pytest.approx(1.0, abs=1e-4)
    said = model.describe([query])[0]
    assert set(said["certainty"]) == set("HULIC")
    assert said["weak"] == [g for g, p in said["certainty"].items() if p < 0.5]

    served = Gallery.open(tiny_index["index"], tiny_index["ckpt"], device="cpu")
    mine = model.open_gallery(tiny_index["index"])
    a, b = mine.by_image(query, k=5), served.by_image(query, k=5)
    assert [r["path"] for r in a.rows] == [r["path"] for r in b.rows]
    assert a.text == b.text
    q = "gender=female, backpack=yes"
    assert (
        mine.by_attributes(q, 4).rows
        == served.by_attributes({"gender": "female", "backpack": "yes"}, 4).rows
    )


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((4, 4, 2), np.uint8), "shape (4, 4, 2)"),
        (np.full((8, 8, 3), 2.0), "[0, 1]"),
        (np.zeros((8, 8, 3), np.int64), "int64"),
        ("folder", "is a folder, not an image"),
        ("missing.jpg", "image not found"),
        (3, "a int is not an image"),
    ],
)
def test_api_refuses_what_is_not_an_image(workdir, bad, words):
    model = cerberus.load(workdir / "runs" / "demo" / "last.pt", device="cpu")
    if isinstance(bad, str):
        bad = workdir / ("crops" if bad == "folder" else bad)
    with pytest.raises(CerberusError) as info:
        model.embed([workdir / "query.jpg", bad] if isinstance(bad, Path) else [bad])
    assert words in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CerberusError, match="a list of images"):
        model.embed(workdir / "query.jpg")
