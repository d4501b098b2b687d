"""Figures: rank lists and alignment maps (sizes from the layout constants, marker pixels)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cerberus.errors import CerberusError
from cerberus.evaluation import figures as vis
from tests.conftest import tiny_model

TILE = (128, 64)


def make_images(folder, n: int, size=(40, 20)) -> list:
    """``n`` flat-colour crops (width, height = ``size``), none of them green, red or grey."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.new("RGB", size, (30 + 20 * i, 40, 200 - 10 * i)).save(p)
        paths.append(p)
    return paths


def expected_rank_list_size(n: int, *, title: bool, caption_lines: int, query_lines: int = 0):
    box_w, box_h = TILE[1] + 2 * vis.BORDER, TILE[0] + 2 * vis.BORDER
    width = 2 * vis.MARGIN + box_w + vis.SEPARATOR + n * box_w + (n - 1) * vis.GAP
    cap = max(caption_lines, query_lines)
    height = 2 * vis.MARGIN + box_h + vis.TEXT_PAD + cap * vis.LINE_HEIGHT
    return width, height + (vis.TITLE_HEIGHT if title else 0)


def gallery_frame_pixel(k: int, *, title: bool) -> tuple[int, int]:
    """A pixel in the middle of the left frame edge of gallery tile ``k`` (narrow captions)."""
    box_w = TILE[1] + 2 * vis.BORDER
    x = vis.MARGIN + box_w + vis.SEPARATOR + k * (box_w + vis.GAP) + 1
    y = vis.MARGIN + (vis.TITLE_HEIGHT if title else 0) + TILE[0] // 2
    return x, y


def test_rank_list_size_and_borders(tmp_path):
    paths = make_images(tmp_path / "img", 11)
    correct = [True, False, None] + [False] * 7
    out = vis.rank_list_figure(
        tmp_path / "figs" / "deep" / "q0.png",
        paths[1:],
        query_image=paths[0],
        correct=correct,
        scores=np.linspace(0.9, 0.1, 10),
        labels=[f"id {i} c2" for i in range(10)],
        title="query 0: rank-1 correct",
    )
    assert out.exists() and not list(out.parent.glob("*.tmp"))
    with Image.open(out) as img:
        assert img.size == expected_rank_list_size(10, title=True, caption_lines=2)
        fig = img.convert("RGB")
    assert fig.getpixel(gallery_frame_pixel(0, title=True)) == vis.CORRECT_COLOUR
    assert fig.getpixel(gallery_frame_pixel(1, title=True)) == vis.WRONG_COLOUR
    assert fig.getpixel(gallery_frame_pixel(2, title=True)) == vis.UNKNOWN_COLOUR
    x, y = gallery_frame_pixel(0, title=True)
    assert fig.getpixel((x + vis.BORDER, y)) not in (vis.CORRECT_COLOUR, vis.WRONG_COLOUR)


def test_rank_list_without_extras_is_one_caption_line(tmp_path):
    paths = make_images(tmp_path / "img", 4)
    out = vis.rank_list_figure(tmp_path / "q.png", paths[1:], query_image=paths[0])
    with Image.open(out) as img:
        assert img.size == expected_rank_list_size(3, title=False, caption_lines=1)
        assert img.convert("RGB").getpixel(gallery_frame_pixel(0, title=False)) == (
            vis.UNKNOWN_COLOUR
        )


def test_text_query_panel(tmp_path):
    paths = make_images(tmp_path / "img", 5)
    lines = ["gender: female", "upper.color: red", "lower.color: blue"]
    out = vis.rank_list_figure(
        tmp_path / "aps.png", paths, query_text=lines, correct=[True] * 5, scores=[0.5] * 5
    )
    with Image.open(out) as img:
        fig = img.convert("RGB")
    # The box is at least as wide as the tile and the longest line; the gallery shifts right.
    short = vis.rank_list_figure(tmp_path / "short.png", paths, query_text=["x"])
    with Image.open(short) as img:
        assert img.size == expected_rank_list_size(5, title=False, caption_lines=1)
        assert fig.size[0] > img.size[0] and fig.size[1] == img.size[1]
    assert fig.getpixel((vis.MARGIN, vis.MARGIN + 60)) == vis.QUERY_COLOUR  # box outline
    assert fig.getpixel((vis.MARGIN + 2, vis.MARGIN + 120)) == vis.TEXT_BOX_FILL
    empty = vis.rank_list_figure(tmp_path / "empty.png", paths[:1])
    assert empty.exists()


def test_long_rank_list_wraps_into_rows(tmp_path):
    """A rank-500 list is rows of ``PER_ROW`` tiles, not one very wide row."""
    paths = make_images(tmp_path / "img", 3)
    tile = (16, 8)
    ranked = [paths[i % 3] for i in range(500)]
    out = vis.rank_list_figure(tmp_path / "k500.png", ranked, query_image=paths[0], tile=tile)
    ten = vis.rank_list_figure(tmp_path / "k10.png", ranked[:10], query_image=paths[0], tile=tile)
    cell_w = max(tile[1] + 2 * vis.BORDER, vis._text_width("#500") + 2)
    row_h = tile[0] + 2 * vis.BORDER + vis.TEXT_PAD + vis.LINE_HEIGHT
    query_w = tile[1] + 2 * vis.BORDER
    gallery_x = vis.MARGIN + query_w + vis.SEPARATOR
    with Image.open(out) as img, Image.open(ten) as one_row:
        per = vis.PER_ROW
        assert img.width == gallery_x + per * cell_w + (per - 1) * vis.GAP + vis.MARGIN
        assert img.width < 1000 and one_row.width <= img.width
        rows = 500 // per
        assert img.height == 2 * vis.MARGIN + rows * row_h + (rows - 1) * vis.GAP
        fig = img.convert("RGB")
    # Rank 11 starts the second row, under rank 1: its frame is grey (no correctness given).
    x = gallery_x + (cell_w - (tile[1] + 2 * vis.BORDER)) // 2 + 1
    assert fig.getpixel((x, vis.MARGIN + row_h + vis.GAP + 1)) == vis.UNKNOWN_COLOUR
    with pytest.raises(CerberusError, match="per_row"):
        vis.rank_list_figure(tmp_path / "bad.png", paths, per_row=0)


def test_reid_query_attributes_are_headed_predicted(tmp_path, monkeypatch):
    paths = make_images(tmp_path / "img", 3)
    rows = [
        {"path": p, "pid": 1, "camid": 0, "correct": True, "score": 0.5, "rank": i + 1}
        for i, p in enumerate(paths[1:])
    ]
    seen = {}

    def spy(out, ranked, **kw):
        seen.update(kw)
        return out

    monkeypatch.setattr(vis, "rank_list_figure", spy)
    vis.rank_list_from_rows(tmp_path / "r.png", rows, query_image=paths[0], query_text=["hat"])
    assert seen["query_text"] == [vis.PREDICTED_HEADING, "hat"]
    assert vis.PREDICTED_HEADING.startswith("predicted")
    # An attribute query's lines are the query, not predictions: no heading.
    vis.rank_list_from_rows(tmp_path / "a.png", rows, query_text=["hat: yes"])
    assert seen["query_text"] == ["hat: yes"]


def test_rank_list_errors_name_the_file(tmp_path):
    paths = make_images(tmp_path / "img", 2)
    missing = tmp_path / "nope" / "0001_c1.jpg"
    with pytest.raises(CerberusError, match="0001_c1.jpg"):
        vis.rank_list_figure(tmp_path / "a.png", [paths[0], missing], query_image=paths[1])
    with pytest.raises(CerberusError, match="0001_c1.jpg"):
        vis.rank_list_figure(tmp_path / "b.png", paths, query_image=missing)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(CerberusError, match="bad.jpg"):
        vis.rank_list_figure(tmp_path / "c.png", [bad])
    with pytest.raises(CerberusError, match="scores"):
        vis.rank_list_figure(tmp_path / "d.png", paths, scores=[0.1])
    with pytest.raises(CerberusError, match="tile"):
        vis.rank_list_figure(tmp_path / "e.png", paths, tile=(0, 64))
    assert not list(tmp_path.glob("*.png"))


def test_heat_colours_endpoints():
    c = vis.heat_colours(np.array([0.0, 1 / 3, 2 / 3, 1.0, 2.0]))
    assert c.tolist() == [[0, 0, 0], [255, 0, 0], [255, 255, 0], [255, 255, 255], [255, 255, 255]]


def test_alignment_figure_size_and_kept_rows(tmp_path):
    paths = make_images(tmp_path / "img", 3)
    maps = np.random.default_rng(0).random((3, 4, 2)).astype(np.float32)
    tops, bottoms = np.array([1, 0, 0]), np.array([2, 3, 0])
    out = vis.alignment_figure(
        tmp_path / "align" / "a.png",
        [paths[0], paths[1], Image.open(paths[2])],
        maps,
        tops,
        bottoms,
    )
    pair_w = 2 * TILE[1] + vis.PAIR_GAP
    legend = vis.alignment_legend(None)
    header = vis.TITLE_HEIGHT + len(legend) * vis.LINE_HEIGHT + vis.TEXT_PAD
    top = vis.MARGIN + header  # the pairs start under the title and the legend
    with Image.open(out) as img:
        assert img.size == (
            max(
                2 * vis.MARGIN + 3 * pair_w + 2 * vis.ALIGN_GAP,
                2 * vis.MARGIN + max(vis._text_width(s) for s in legend),
                2 * vis.MARGIN + vis._text_width(vis.ALIGNMENT_TITLE, vis.TITLE_FONT_SIZE),
            ),
            top + TILE[0] + vis.TEXT_PAD + 3 * vis.LINE_HEIGHT + vis.MARGIN,
        )
        fig = img.convert("RGB")
    # Image 0 keeps heat-map rows 1..2 of 4: image rows 32..95 of 128.
    assert vis.kept_pixel_rows(1, 2, 4, 128) == (32, 95)
    x = vis.MARGIN + TILE[1] // 2
    assert fig.getpixel((x, top + 32)) == vis.KEPT_COLOUR
    assert fig.getpixel((x, top + 95)) == vis.KEPT_COLOUR
    assert fig.getpixel((x, top + 31)) != vis.KEPT_COLOUR
    assert fig.getpixel((x, top + 64)) != vis.KEPT_COLOUR
    # Image 2 keeps only row 0: image rows 0..31.
    x2 = vis.MARGIN + 2 * (pair_w + vis.ALIGN_GAP) + TILE[1] // 2
    assert fig.getpixel((x2, top + 31)) == vis.KEPT_COLOUR
    assert fig.getpixel((x2, top + 40)) != vis.KEPT_COLOUR


def test_alignment_figure_says_what_it_shows():
    """Legend: the heat map's definition, sigma and why rows are kept; captions: file names."""
    legend = " ".join(vis.alignment_legend(5.0))
    assert "L2 norm of the local-branch feature map" in legend
    assert "sigma = 5" in legend and "kept" in legend.lower()
    m = np.zeros((4, 2), dtype=np.float32)
    m[1, 0] = 7.0
    assert vis._alignment_captions("0001_c1.jpg", m, 1, 1, 5.0) == [
        "0001_c1.jpg",
        "rows 1-1 of 4 kept",
        "peak 7.00 > sigma",
    ]
    assert vis._alignment_captions("a.jpg", m / 7, 0, 3, 5.0)[2].endswith("<= sigma: all kept")


def test_alignment_figure_checks_inputs(tmp_path):
    paths = make_images(tmp_path / "img", 2)
    maps = np.ones((2, 4, 2), dtype=np.float32)
    with pytest.raises(CerberusError, match="heat_maps"):
        vis.alignment_figure(tmp_path / "a.png", paths, maps[0], [0, 0], [3, 3])
    with pytest.raises(CerberusError, match="tops"):
        vis.alignment_figure(tmp_path / "a.png", paths, maps, [0], [3, 3])
    with pytest.raises(CerberusError, match="image 1"):
        vis.alignment_figure(tmp_path / "a.png", paths, maps, [0, 2], [3, 4])
    with pytest.raises(CerberusError, match="gone.png"):
        vis.alignment_figure(
            tmp_path / "a.png", [paths[0], tmp_path / "gone.png"], maps, [0, 0], [3, 3]
        )


def test_model_alignment_maps(tmp_path):
    model = tiny_model()
    model.train()
    paths = make_images(tmp_path / "img", 3, size=(32, 64))
    maps, tops, bottoms = vis.model_alignment_maps(model, paths, height=64, width=32, batch_size=2)
    assert model.training
    assert maps.shape == (3, 4, 2) and maps.dtype == np.float32
    assert tops.shape == bottoms.shape == (3,)
    assert ((0 <= tops) & (tops <= bottoms) & (bottoms < 4)).all()
    out = vis.alignment_figure(tmp_path / "m.png", paths, maps, tops, bottoms)
    assert out.exists()
