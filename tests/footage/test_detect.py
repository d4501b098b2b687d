"""Detections (method §9.3): MOTChallenge files, boxes (IoU, NMS) and the HOG detector's motion
gate."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cerberus.errors import CerberusError
from cerberus.footage.detect import HogDetector, MotDetections, iou_matrix, nms
from cerberus.footage.video import Frame
from tests.footage_helpers import Walker, render


def test_mot_file_rows_become_detections(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text(
        "# a comment\n1,-1,10,20,30,60,0.9,-1,-1,-1\n\n1,-1,100,20,30,60,0.5\n3 -1 5 5 20 40\n"
    )
    dets = MotDetections.load(path, size=(256, 144), num_frames=5)
    assert dets.frames == [1, 3] and not dets.gives_ids
    d1 = dets.detect(Frame(1, 0.0, 0.0, np.zeros((144, 256, 3), np.uint8)))
    assert d1.boxes.tolist() == [[9, 19, 39, 79], [99, 19, 129, 79]]  # 1-based pixels
    assert d1.scores.tolist() == pytest.approx([0.9, 0.5])
    assert d1.ids.tolist() == [-1, -1]
    assert len(dets.detect(Frame(2, 0.1, 0.1, np.zeros((144, 256, 3), np.uint8)))) == 0
    assert dets.rows[3].scores.tolist() == [1.0]  # conf absent: 1


@pytest.mark.parametrize(
    "row, message",
    [
        ("1,-1,10,20,30", "5 field"),
        ("1,-1,10,abc,30,60,1", "not a number"),
        ("0,-1,10,20,30,60,1", "frame '0'"),
        ("2.5,-1,10,20,30,60,1", "frame '2.5'"),
        ("1,-7,10,20,30,60,1", "id '-7'"),
        ("1,-1,10,20,-30,60,1", "negative width"),
        ("1,-1,10,nan,30,60,1", "NaN"),
    ],
)
def test_malformed_mot_row_names_file_and_line(tmp_path, row, message):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,20,30,60,1\n2,-1,10,20,30,60,1\n" + row + "\n")
    with pytest.raises(CerberusError, match=rf"det.txt line 3: .*{message}"):
        MotDetections.load(path)


def test_boxes_outside_the_frame_are_clipped_and_empty_ones_dropped(tmp_path, caplog):
    caplog.set_level(logging.INFO, "cerberus")
    path = tmp_path / "det.txt"
    path.write_text(
        "1,-1,-10,-5,30,60,1\n"  # reaches past the top-left corner: clipped
        "1,-1,240,100,40,80,1\n"  # past the bottom-right corner: clipped
        "1,-1,300,20,30,60,1\n"  # wholly right of the frame: nothing left
        "1,-1,50,20,0,60,1\n"  # zero width
        "1,-1,50,20,30,60,1\n"  # inside: kept as it is
    )
    dets = MotDetections.load(path, size=(256, 144))
    assert dets.rows[1].boxes.tolist() == [[0, 0, 19, 54], [239, 99, 256, 144], [49, 19, 79, 79]]
    assert "3 box(es) clipped to the 256x144 frame" in caplog.text
    assert "2 box(es) of less than one pixel dropped" in caplog.text


def test_mot_pixels_are_one_based(tmp_path, caplog):
    """MOTChallenge's top-left pixel is (1, 1): a box over the whole frame is not clipped."""
    caplog.set_level(logging.INFO, "cerberus")
    path = tmp_path / "det.txt"
    path.write_text("1,-1,1,1,256,144,1\n1,-1,247,125,10,20,1\n")
    dets = MotDetections.load(path, size=(256, 144))
    assert dets.rows[1].boxes.tolist() == [[0, 0, 256, 144], [246, 124, 256, 144]]
    assert "clipped" not in caplog.text


def test_detections_for_frames_the_video_lacks(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,20,30,60,1\n12,-1,10,20,30,60,1\n15,-1,10,20,30,60,1\n")
    with pytest.raises(CerberusError, match=r"det.txt: detections for frame\(s\) 12..15 but the "
                       "video has 10 frames"):  # fmt: skip
        MotDetections.load(path, num_frames=10)
    dets = MotDetections.load(path)  # frame count unknown: found out at the end
    assert dets.unused(10) == [12, 15] and dets.unused(15) == []


def test_ids_are_used_only_when_every_row_has_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, "cerberus")
    path = tmp_path / "det.txt"
    path.write_text("1,4,10,20,30,60,1\n2,4,12,20,30,60,1\n")
    assert MotDetections.load(path).gives_ids
    path.write_text("1,4,10,20,30,60,1\n2,-1,12,20,30,60,1\n")
    mixed = MotDetections.load(path)
    assert not mixed.gives_ids and "ids are ignored" in caplog.text
    frame = Frame(1, 0.0, 0.0, np.zeros((144, 256, 3), np.uint8))
    assert mixed.detect(frame).ids.tolist() == [-1]


def test_missing_or_binary_detections_file(tmp_path):
    with pytest.raises(CerberusError, match="nothere.txt: detections file not found"):
        MotDetections.load(tmp_path / "nothere.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(CerberusError, match="bin.txt: detections file unreadable"):
        MotDetections.load(tmp_path / "bin.txt")


def test_iou_and_nms():
    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    iou = iou_matrix(a, a)
    assert iou[0, 1] == pytest.approx(50 / 150) and iou[0, 2] == 0 and iou[1, 1] == 1
    assert nms(a, np.array([0.5, 0.9, 0.1]), 0.4).tolist() == [1, 0, 2]
    assert nms(a, np.array([0.5, 0.9, 0.1]), 0.3).tolist() == [1, 2]
    assert nms(a[:0], np.zeros(0), 0.4).tolist() == [] and iou_matrix(a, a[:0]).shape == (3, 0)


def _slow_iou(a, b) -> float:
    """One pair of xyxy boxes, the obvious way (a box with right < left has no area)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = [max(0.0, x[2] - x[0]) * max(0.0, x[3] - x[1]) for x in (a, b)]
    union = area[0] + area[1] - w * h
    return w * h / union if union > 0 else 0.0


def _slow_nms(boxes, scores, threshold) -> list[int]:
    """Greedy: best score first (ties: the smaller index), drop those above ``threshold``."""
    left = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    while left:
        keep.append(left.pop(0))
        left = [i for i in left if _slow_iou(boxes[keep[-1]], boxes[i]) <= threshold]
    return keep


def test_iou_and_nms_match_the_obvious_loops():
    """torchvision's box_iou / nms behind our arrays: same numbers, ties in index order,
    degenerate boxes (right < left, no area) overlapping nothing."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(0, 25))
        xy = rng.integers(0, 40, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.integers(-3, 25, (n, 2))], axis=1)
        scores = rng.integers(0, 4, n).astype(np.float32)  # many equal scores
        threshold = float(rng.choice([0.0, 0.3, 0.4, 0.5]))
        iou = iou_matrix(boxes, boxes[::-1])
        slow = [[_slow_iou(x, y) for y in boxes[::-1].tolist()] for x in boxes.tolist()]
        assert iou.shape == (n, n) and np.allclose(iou, np.reshape(slow, (n, n)), atol=1e-12)
        assert nms(boxes, scores, threshold).tolist() == _slow_nms(
            boxes.tolist(), scores.tolist(), threshold
        )


def _frames(walkers, n, size=(256, 144)):
    return [Frame(k, (k - 1) / 10, float(k), render(k, walkers, size)) for k in range(1, n + 1)]


def test_motion_gate_searches_only_where_something_moves():
    import cv2

    walker = Walker(1, (220, 30, 30), 1, 40, (20.0, 40.0), (3.0, 0.0))
    detector = HogDetector()
    grey = [cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY) for f in _frames([walker], 40)]
    assert detector.moving_regions(grey[0]) == []  # the first frame is the model's background
    for g in grey[1:-1]:
        detector.moving_regions(g)
    regions = detector.moving_regions(grey[-1])
    assert regions, "the walker moves, a region must be searched"
    x0, y0, x1, y1 = walker.box(40)
    assert any(r[0] <= x0 + 2 and r[2] >= x1 - 2 and r[1] <= y0 + 2 and r[3] >= y1 - 2
               for r in regions)  # fmt: skip
    assert sum((r[2] - r[0]) * (r[3] - r[1]) for r in regions) < 0.6 * 256 * 144
    # nothing moves: after learning the still scene, nothing is searched
    still = HogDetector()
    background = grey[0].copy()
    background[:] = cv2.cvtColor(render(1, []), cv2.COLOR_RGB2GRAY)
    for _ in range(30):
        regions = still.moving_regions(background)
    assert regions == []


def test_hog_boxes_are_mapped_back_from_regions_and_upscaling(monkeypatch):
    """The detector's windows in a (possibly enlarged) region come back in frame pixels."""
    detector = HogDetector(motion=False, upscale=2.0, tighten=False, min_score=0.0)
    seen = []

    def fake(roi, **kwargs):
        seen.append(roi.shape)
        return np.array([[20, 40, 64, 128]]), np.array([1.5])

    monkeypatch.setattr(detector, "hog", type("H", (), {"detectMultiScale": staticmethod(fake)}))
    frame = Frame(1, 0.0, 0.0, np.zeros((144, 256, 3), np.uint8))
    out = detector.detect(frame)
    assert seen == [(288, 512)]
    assert out.boxes.tolist() == [[10, 20, 42, 84]] and out.scores.tolist() == [1.5]
    monkeypatch.setattr(detector, "moving_regions", lambda grey: [(100, 10, 200, 140)])
    detector.motion = True
    seen.clear()
    out = detector.detect(frame)
    assert seen == [(260, 200)]
    assert out.boxes.tolist() == [[110, 30, 142, 94]]


def test_hog_searches_the_first_frame_and_every_nth_whole(monkeypatch):
    detector = HogDetector(full_every=5)
    shapes = []

    def fake(roi, **kwargs):
        shapes.append(roi.shape)
        return np.zeros((0, 4), int), np.zeros(0)

    monkeypatch.setattr(detector, "hog", type("H", (), {"detectMultiScale": staticmethod(fake)}))
    image = render(1, [])
    for k in range(1, 12):
        shapes.append(k)
        detector.detect(Frame(k, 0.0, 0.0, image))
    whole = [shapes[i - 1] for i, s in enumerate(shapes) if s == (144, 256)]
    assert whole == [1, 6, 11]  # a still scene: only the forced whole frames are searched


def test_hog_bad_upscale():
    with pytest.raises(CerberusError, match="--upscale 0"):
        HogDetector(upscale=0)


def test_rows_out_of_frame_order_are_sorted_out_of_core(tmp_path, monkeypatch):
    import glob
    import tempfile

    from cerberus.footage import detect as detect_module
    from cerberus.footage.video import Frame

    rng = np.random.default_rng(0)
    rows = [(f, i, 10 + i, 20 + f % 7, 30, 60, 0.5 + 0.01 * i)
            for f in range(1, 41) for i in range(1, 5) if rng.random() < 0.8]  # fmt: skip
    ordered = tmp_path / "ordered.txt"
    ordered.write_text("".join(",".join(map(str, r)) + "\n" for r in rows))
    by_id = tmp_path / "by_id.txt"  # as MOTChallenge ground truth: sorted by id, then frame
    by_id.write_text("# ground truth\n" + "".join(",".join(map(str, r)) + "\n"
                                             for r in sorted(rows, key=lambda r: (r[1], r[0]))))
    monkeypatch.setattr(detect_module, "SORT_RUN", 17)  # several runs merged
    before = set(glob.glob(f"{tempfile.gettempdir()}/cerberus-det-*"))
    a = MotDetections.load(ordered, size=(256, 144))
    b = MotDetections.load(by_id, size=(256, 144))
    assert a.frames == b.frames == sorted({r[0] for r in rows}) and a.gives_ids and b.gives_ids
    image = np.zeros((144, 256, 3), np.uint8)
    for n in range(1, 42):
        da, db = a.detect(Frame(n, 0.0, 0.0, image)), b.detect(Frame(n, 0.0, 0.0, image))
        assert da.ids.tolist() == db.ids.tolist() == sorted(da.ids.tolist())
        assert np.array_equal(da.boxes, db.boxes) and np.array_equal(da.scores, db.scores)
    b.close()
    assert set(glob.glob(f"{tempfile.gettempdir()}/cerberus-det-*")) == before  # removed


def test_a_detections_file_is_read_frame_by_frame(tmp_path):
    # what load keeps is where each frame's rows lie: a frame's rows are read when asked
    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,20,30,60,0.9\n1,-1,50,20,30,60,0.8\n3,-1,12,20,30,60,0.7\n")
    dets = MotDetections.load(path, size=(256, 144))
    assert not hasattr(dets, "_rows") and len(dets.rows) == 2
    path.write_text("1,-1,11,20,30,60,0.9\n1,-1,51,20,30,60,0.8\n3,-1,13,20,30,60,0.7\n")
    assert dets.rows[1].boxes[:, 0].tolist() == [10.0, 50.0]  # read from the file now
