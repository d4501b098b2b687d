"""Tracking (method §9.3): SORT follows walkers through blips and short gaps; the two-stage tracker
keeps a track through weak boxes and gaps; paths end at the last detection; given ids end after
max_age."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.errors import CerberusError
from cerberus.footage.detect import Detections, iou_matrix
from cerberus.footage.track import (
    BoxTracker,
    GivenIds,
    PathBook,
    SortTracker,
    TrackUpdate,
    widen,
)
from cerberus.footage.track import interpolate as interpolate_boxes
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


def _walk(walker, frames, score=None):
    """Per frame the walker's detection (``score`` of frame -> score; ``None``: missed)."""
    out = []
    for k in frames:
        s = 1.0 if score is None else score(k)
        box = walker.box(k)
        out.append(Detections.empty() if s is None or box is None else Detections.of([box], [s]))
    return out


def _ids(tracker, dets) -> list[int]:
    ids = []
    for d in dets:
        update = tracker.update(d)
        ids += [int(t) for t in update.tracks if t >= 0]
    return ids


def test_low_score_boxes_keep_a_track_alive_where_sort_loses_it():
    """ByteTrack's second stage: a person whose boxes score 0.2 for 2 s (an occlusion) keeps
    one track; SORT, fed what a 0.5 detection threshold leaves, loses them; a weak box alone
    never starts a track."""
    walker = Walker(1, (0, 0, 0), 1, 60, (10.0, 20.0), (3.0, 0.5))

    def score(k):
        return 0.2 if 20 <= k < 40 else 0.9

    byte = BoxTracker(max_age=5, lost_age=5)
    assert set(_ids(byte, _walk(walker, range(1, 61), score))) == {1}
    sort = SortTracker(max_age=5)
    strong = _walk(walker, range(1, 61), lambda k: None if score(k) < 0.5 else 0.9)
    assert len(set(_ids(sort, strong))) == 2
    lone = BoxTracker().update(Detections.of([[0, 0, 20, 50]], [0.3]))
    assert lone.tracks.tolist() == [-1] and len(lone.alive) == 0


def test_a_lost_track_is_matched_again_after_a_gap():
    """A confirmed track missed for 2 s is kept (lost, predicted forward) and takes the person
    back; SORT with the same 1 s age starts a new track."""
    walker = Walker(1, (0, 0, 0), 1, 60, (10.0, 20.0), (3.0, 0.0))
    dets = _walk(walker, range(1, 61), lambda k: None if 20 <= k < 40 else 0.9)
    assert set(_ids(BoxTracker(max_age=10, lost_age=30), dets)) == {1}
    assert len(set(_ids(SortTracker(max_age=10), dets))) == 2
    # ended after lost_age: the track is reported once, confirmed
    tracker = BoxTracker(max_age=3, lost_age=6)
    ended = []
    for d in _walk(walker, range(1, 11)) + [Detections.empty()] * 6:
        ended += tracker.update(d).ended
    assert ended == [1]


def test_the_looser_gate_of_a_lost_track_widens_its_box():
    boxes = widen(np.array([[10, 20, 30, 60]]), 0.5)
    assert boxes.tolist() == [[0, 0, 40, 80]]
    # a person who slowed down during a gap: too far from the prediction for IoU 0.3, inside
    # the widened box
    walker = Walker(1, (0, 0, 0), 1, 12, (10.0, 20.0), (4.0, 0.0))
    dets = _walk(walker, range(1, 13))
    late = Detections.of([[62, 20, 86, 80]])  # frame 20: 8 px on, not the 32 predicted
    gaps = [Detections.empty()] * 7
    loose = BoxTracker(max_age=10, lost_age=30, buffer=0.1, max_buffer=0.5)
    tight = BoxTracker(max_age=10, lost_age=30, buffer=0.0)
    assert set(_ids(loose, dets + gaps + [late])) == {1}
    assert len(set(_ids(tight, dets + gaps + [late]))) == 2


def test_paths_hold_detected_and_predicted_boxes_and_end_at_the_last_detection():
    walker = Walker(1, (0, 0, 0), 1, 40, (10.0, 20.0), (3.0, 0.5))
    tracker, book = BoxTracker(max_age=5, lost_age=10), PathBook()
    for k, d in enumerate(_walk(walker, range(1, 41), lambda k: None if k in (11, 12, 13) or
                                k > 20 else 0.9), 1):  # fmt: skip
        update = tracker.update(d)
        book.record(k, update)
        assert len(update.alive) == len(update.boxes) == len(update.detected)
        if 11 <= k <= 13:
            assert update.detected.tolist() == [False] and update.confirmed.tolist() == [True]
    assert tracker.close().ended == []  # ended at frame 30, after 10 misses
    frames, boxes, detected = book.take(1, end=True)
    assert frames.tolist() == list(range(1, 21))  # the predictions after frame 20: trimmed
    assert detected.tolist() == [k not in (11, 12, 13) for k in range(1, 21)]
    truth = np.array([walker.box(k) for k in (11, 12, 13)])
    assert (np.diag(iou_matrix(boxes[10:13], truth)) > 0.6).all()  # the prediction follows
    assert book.span(1) is None


def test_parts_of_a_path_are_taken_in_turn():
    book = PathBook()
    for k in range(1, 7):
        det = k != 4
        book.record(k, TrackUpdate(np.zeros(0, np.int64), alive=np.array([3]),
                                   boxes=np.array([[k, 0, k + 10, 30]], np.float32),
                                   detected=np.array([det]), confirmed=np.array([True])))
    assert book.span(3) == (1, 6)
    first = book.take(3)
    assert first[0].tolist() == [1, 2, 3, 4, 5, 6] and first[2].tolist()[3] is False
    book.record(7, TrackUpdate(np.zeros(0, np.int64), alive=np.array([3]),
                               boxes=np.array([[7, 0, 17, 30]], np.float32),
                               detected=np.array([False]), confirmed=np.array([True])))
    assert book.span(3) is None and book.take(3, end=True)[0].tolist() == []  # tail only


def test_height_gate_keeps_a_taller_passer_by_from_taking_a_track():
    near = BoxTracker(max_age=5, lost_age=5, max_scale=1.3)
    track = [Detections.of([[100, 50, 124, 110]])] * 4  # 60 px tall, standing
    passer = Detections.of([[96, 40, 130, 130]])  # 90 px, overlapping (IoU ~0.47)
    assert iou_matrix(passer.boxes, track[0].boxes)[0, 0] > 0.3
    ids = _ids(near, track)
    update = near.update(passer)
    assert update.tracks[0] != ids[0]
    assert SortTracker(max_age=5).update(passer).tracks[0] >= 0  # no gate: anything matches


def test_sort_setting_is_a_box_tracker():
    sort = SortTracker(max_age=7, min_score=0.4)
    assert isinstance(sort, BoxTracker)
    assert (sort.low_score, sort.lost_age, sort.buffer, sort.max_scale) == (None, 7, 0.0, None)
    with pytest.raises(CerberusError, match="lost_age 2 at least max_age"):
        BoxTracker(max_age=3, lost_age=2)
    with pytest.raises(CerberusError, match="motion 'x'"):
        BoxTracker(motion="x")


def test_given_ids_report_their_boxes_as_detected():
    update = GivenIds().update(Detections.of([[0, 0, 10, 20], [5, 5, 15, 25]], ids=[4, 9]))
    assert update.alive.tolist() == [4, 9] and update.detected.all() and update.confirmed.all()


def _book_update(box, det: bool) -> TrackUpdate:
    return TrackUpdate(np.zeros(0, np.int64), alive=np.array([4]),
                       boxes=np.array([box], np.float32), detected=np.array([det]),
                       confirmed=np.array([True]))  # fmt: skip


@pytest.mark.parametrize("interpolate", [True, False])
def test_a_gap_is_filled_on_the_line_between_its_detections(interpolate: bool) -> None:
    """The forecasts ran on past a person who stopped while missed; once the detection after
    the gap is known, the gap's boxes lie on the straight line between the two detections."""
    book = PathBook(interpolate=interpolate)
    book.record(1, _book_update([0, 0, 10, 30], True))
    for k in (3, 5, 7):  # the filter's forecasts, running on to the right
        book.record(k, _book_update([40 * k, 0, 40 * k + 10, 30], False))
    book.record(9, _book_update([40, 8, 50, 38], True))
    frames, boxes, detected = book.take(4, end=True)
    assert frames.tolist() == [1, 3, 5, 7, 9] and detected.tolist() == [1, 0, 0, 0, 1]
    line = np.array([[10 * j, 2 * j, 10 * j + 10, 2 * j + 30] for j in (1, 2, 3)], np.float32)
    assert np.allclose(boxes[1:4], line) == interpolate
    assert np.allclose(interpolate_boxes(1, boxes[0], 9, boxes[4], [5])[0], line[1])


def test_a_gap_across_a_written_part_is_still_on_the_line() -> None:
    """A part taken while the track is missed: the gap's boxes, written with the next part,
    start from the last detection of the part before."""
    book = PathBook()
    book.record(1, _book_update([0, 0, 10, 30], True))
    book.record(2, _book_update([90, 0, 100, 30], False))
    assert book.take(4)[0].tolist() == [1]
    book.record(3, _book_update([20, 0, 30, 30], True))
    frames, boxes, _ = book.take(4, end=True)
    assert frames.tolist() == [2, 3] and np.allclose(boxes[0], [10, 0, 20, 30])


def test_a_gap_longer_than_max_gap_is_left_empty_and_a_shorter_one_filled() -> None:
    """max_gap 4 frames: the gap 1 -> 5 (4 frames) is filled on the line, the gap 5 -> 11
    (6 frames) left empty; the path runs on after it."""
    book = PathBook(max_gap=4)
    book.record(1, _book_update([0, 0, 10, 30], True))
    book.record(3, _book_update([99, 0, 109, 30], False))
    book.record(5, _book_update([40, 0, 50, 30], True))
    for k in (7, 9):
        book.record(k, _book_update([99, 0, 109, 30], False))
    book.record(11, _book_update([100, 0, 110, 30], True))
    frames, boxes, detected = book.take(4, end=True)
    assert frames.tolist() == [1, 3, 5, 11] and detected.tolist() == [1, 0, 1, 1]
    assert np.allclose(boxes[1], [20, 0, 30, 30])
    with pytest.raises(CerberusError, match="max_gap"):
        PathBook(max_gap=0)


def _frame_update(ids, boxes, detected) -> TrackUpdate:
    return TrackUpdate(np.zeros(0, np.int64), alive=np.array(ids, np.int64),
                       boxes=np.array(boxes, np.float32).reshape(-1, 4),
                       detected=np.array(detected, bool),
                       confirmed=np.ones(len(ids), bool))  # fmt: skip


@pytest.mark.parametrize("cover_iou", [None, 0.6])
def test_a_gap_box_on_another_tracks_detection_is_left_out(cover_iou) -> None:
    """Track 4 is missed on frames 3, 5 and 7, its gap filled on the line from x 0 to x 40.
    Its gap box on frame 3 ([10, 0, 20, 30]) lies on track 7's detection (IoU 9 / 11 = 0.82):
    left out at cover_iou 0.6; on frame 5 ([20, 0, 30, 30]) track 7's detection is beside it
    (IoU 4 / 16 = 0.25) and track 9's box on it is a forecast, not a detection: kept; without
    cover_iou every gap box is kept. The detections of a frame are not kept once no held-back
    gap of a running track spans it."""
    book = PathBook(cover_iou=cover_iou)
    book.record(1, _frame_update([4, 7], [[0, 0, 10, 30], [60, 0, 70, 30]], [True, True]))
    book.record(3, _frame_update([4, 7], [[99, 0, 109, 30], [11, 0, 21, 30]], [False, True]))
    book.record(5, _frame_update([4, 7, 9], [[99, 0, 109, 30], [26, 0, 36, 30],
                                             [20, 0, 30, 30]], [False, True, False]))  # fmt: skip
    book.drop(9)  # a tentative track that died
    book.record(7, _frame_update([4], [[99, 0, 109, 30]], [False]))
    book.record(9, _frame_update([4], [[40, 0, 50, 30]], [True]))
    frames, boxes, detected = book.take(4, end=True)
    gap = [5, 7] if cover_iou else [3, 5, 7]
    assert frames.tolist() == [1, *gap, 9] and detected.tolist() == [1, *[0] * len(gap), 1]
    assert np.allclose(boxes[1], [10, 0, 20, 30] if cover_iou is None else [20, 0, 30, 30])
    assert book._seen == {}  # every gap closed: no frame's detections are held
    with pytest.raises(CerberusError, match="cover_iou"):
        PathBook(cover_iou=0.0)
