"""The choice of crops per track (method §9.3): tall, sharp, uncut crops spread over time, kept in
bounded memory."""

from __future__ import annotations

import numpy as np

from cerberus.footage.select import Candidate, CropSelector, choose, crops_for
from cerberus.footage.video import Frame
from tests.footage_helpers import render


def _cand(number, height=60, sharp=100.0, cut=False, score=1.0):
    box = np.array([10, 10, 30, 10 + height], np.float32)
    return Candidate(number, number / 10, float(number), box, score,
                     np.zeros((height, 20, 3), np.uint8), sharp, cut)  # fmt: skip


def test_choose_prefers_tall_sharp_uncut_crops_spread_over_time():
    cands = [_cand(n) for n in range(1, 41)]
    cands[4] = _cand(5, height=90)  # tallest in the first quarter
    cands[14] = _cand(15, sharp=1000.0)  # sharpest in the second
    cands[24] = _cand(25, height=90, cut=True)  # tall but cut by the border: avoided
    cands[34] = _cand(35, height=80, score=2.0)
    picked = choose(cands, 4)
    assert [c.number for c in picked][:2] == [5, 15]
    assert 25 not in [c.number for c in picked] and 35 in [c.number for c in picked]
    spans = [(c.number - 1) // 10 for c in picked]
    assert spans == [0, 1, 2, 3]  # one per quarter of the track
    assert choose(cands[:3], 4) == cands[:3]
    assert choose([], 4) == []
    only_cut = [_cand(n, cut=True) for n in range(1, 4)]
    assert [c.number for c in choose(only_cut, 2)] == [1, 3]  # cut crops when there is no other


def test_selector_keeps_a_bounded_spread_of_candidates():
    selector = CropSelector(max_crops=3, keep=8, min_height=20)
    image = render(1, [])
    for n in range(1, 101):
        frame = Frame(n, n / 10, float(n), image)
        selector.offer(5, frame, np.array([50, 20, 80, 90], np.float32), 1.0)
        selector.offer(6, frame, np.array([50, 20, 80, 35], np.float32), 1.0)  # too small
    kept = selector.tracks[5]
    assert len(kept) <= 8 and kept[0].number <= 16 and kept[-1].number >= 85
    assert 6 not in selector.tracks
    picked = selector.finish(5)
    assert len(picked) == 3 and 5 not in selector.tracks
    assert picked[0].crop.shape == (70, 30, 3)
    # a box at the frame's edge is marked cut
    selector.offer(7, Frame(1, 0, 0, image), np.array([0, 20, 30, 90], np.float32), 1.0)
    assert selector.tracks[7][0].cut


def test_crops_per_minute_give_a_crop_within_2_s_of_every_moment():
    """A 60 s track at 30 crops per minute: 30 crops, every frame within 2 s (20 frames at 10
    fps) of one; the count follows the time (and the floor / cap)."""
    selector = CropSelector(crops_per_minute=30, fps=10, keep=64, min_height=20)
    image = render(1, [])
    for n in range(1, 601):
        selector.offer(1, Frame(n, n / 10, float(n), image),
                       np.array([50, 20, 80, 90], np.float32), 1.0)  # fmt: skip
    picked = selector.finish(1, (1, 600))
    numbers = np.array([c.number for c in picked])
    assert len(picked) == 30
    assert np.abs(np.arange(1, 601)[:, None] - numbers[None]).min(1).max() <= 20
    assert crops_for(60, per_minute=30) == 30 and crops_for(1, per_minute=30, least=3) == 3
    assert crops_for(60, per_minute=30, most=4) == 4 and crops_for(61, per_minute=30) == 31
    assert CropSelector(fps=10).count(1, 30) == 3  # 3 s: the floor of 3
    assert CropSelector(fps=10).count(1, 30, first_part=False) == 2  # a later part: 1 per 2 s
    assert CropSelector(fps=10, max_crops=2).count(1, 300) == 2


def test_sliver_and_hidden_crops_are_refused():
    selector = CropSelector(min_height=24)
    frame = Frame(1, 0, 0, render(1, []))  # 256 x 144
    assert not selector.offer(1, frame, np.array([253, 40, 262, 99], np.float32), 1.0)  # 3x59
    assert not selector.offer(1, frame, np.array([10, 10, 60, 40], np.float32), 1.0)  # wide
    assert not selector.offer(1, frame, np.array([10, 10, 16, 90], np.float32), 1.0)  # thin
    assert not selector.offer(1, frame, np.array([10, 10, 40, 90], np.float32), 1.0, 0.04)
    assert selector.refused == 4 and 1 not in selector.tracks
    assert selector.offer(1, frame, np.array([10, 10, 40, 90], np.float32), 1.0, 0.8)
    assert selector.offer(1, frame, np.array([10, 10, 40, 90], np.float32), 1.0)  # unknown
    assert len(selector.tracks[1]) == 2
