"""Tracking (method §9.3): SORT follows walkers through blips and short gaps; given ids end after
max_age."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detections
from cerberus.footage.track import GivenIds, SortTracker
from tests.footage_helpers import Walker, default_walkers


def _boxes_of(walkers, k):
    boxes = [w.box(k) for w in walkers]
    return Detections.of([b for b in boxes if b is not None])


def test_sort_follows_two_walkers_and_ends_their_tracks():
    walkers = default_walkers()
    tracker = SortTracker(min_hits=3, max_age=3)
    ids_of: dict[int, set[int]] = {1: set(), 2: set()}
    ended = []
    for k in range(1, 31):
        present = [w for w in walkers if w.box(k) is not None]
        update = tracker.update(_boxes_of(walkers, k))
        for w, t in zip(present, update.tracks):
            ids_of[w.ident].add(int(t))
        ended += update.ended
    assert all(len(v) == 1 for v in ids_of.values()) and ids_of[1] != ids_of[2]
    assert ended == []
    for _ in range(3):  # nobody any more: both end after max_age updates
        ended += tracker.update(Detections.empty()).ended
    assert sorted(ended) == sorted(ids_of[1] | ids_of[2])
    assert tracker.close().ended == []


def test_sort_drops_a_blip_and_keeps_a_track_through_a_short_gap():
    tracker = SortTracker(min_hits=3, max_age=3)
    walker = Walker(1, (0, 0, 0), 1, 20, (10.0, 10.0), (5.0, 0.0))
    ids = set()
    dropped = []
    for k in range(1, 21):
        dets = Detections.empty() if k in (8, 9) else _boxes_of([walker], k)
        if k == 4:  # a false detection far away, once
            dets = Detections.of(np.r_[dets.boxes, [[200, 100, 220, 140]]])
        update = tracker.update(dets)
        ids.update(int(t) for t in update.tracks[:1])
        dropped += update.dropped
    assert len(ids) == 1  # the gap of two frames did not break the track
    assert len(dropped) == 1  # the blip never reached min_hits
    assert tracker.close().ended == list(ids)


def test_given_ids_end_after_max_age():
    tracker = GivenIds(max_age=2)
    box = [[0, 0, 10, 20]]
    assert tracker.update(Detections.of(box, ids=[7])).tracks.tolist() == [7]
    assert tracker.update(Detections.of(box, ids=[8])).ended == []
    assert tracker.update(Detections.of(box, ids=[8])).ended == [7]
    assert tracker.close().ended == [8]
    with pytest.raises(CerberusError, match="without ids"):
        tracker.update(Detections.of(box))
