"""benchmarks/bench_vtest.py: the scoring of path boxes against annotated people (matching,
ignored people, recall / precision / tracks per person / crops), checked against slow obvious
versions, and the committed annotations themselves."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_vtest as bv  # noqa: E402

from cerberus.errors import CerberusError  # noqa: E402
from cerberus.store.base import TrackPath  # noqa: E402


def slow_iou(a, b) -> float:
    """IoU of two boxes, the obvious way (pixel areas as products of clipped extents)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def slow_match(iou: np.ndarray, threshold: float = 0.5) -> tuple[int, float]:
    """(number of pairs, IoU sum) of the best one-to-one matching by trying them all: the most
    pairs with IoU >= threshold, then the highest sum."""
    n, m = iou.shape
    best = (0, 0.0)
    for k in range(min(n, m), 0, -1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                vals = [iou[r, c] for r, c in zip(rows, cols)]
                if all(v >= threshold for v in vals):
                    best = max(best, (k, float(sum(vals))))
        if best[0] == k:
            return best
    return best


def random_boxes(rng, n: int) -> np.ndarray:
    xy = rng.uniform(0, 60, (n, 2))
    wh = rng.uniform(10, 40, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_iou_matrix_matches_the_obvious_formula():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 7), random_boxes(rng, 5)
    got = bv.iou_matrix(a, b)
    want = np.array([[slow_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert bv.iou_matrix(a, np.zeros((0, 4))).shape == (7, 0)


@pytest.mark.parametrize("seed", range(40))
def test_hungarian_matching_gives_the_most_pairs_then_the_best_iou(seed):
    rng = np.random.default_rng(seed)
    gt = random_boxes(rng, int(rng.integers(0, 5)))
    pred = np.concatenate([gt + rng.normal(0, 4, gt.shape), random_boxes(rng, 2)])[
        rng.permutation(len(gt) + 2)[: int(rng.integers(0, len(gt) + 3))]
    ]
    iou = bv.iou_matrix(gt, pred)
    pairs = bv.match(iou)
    assert len({r for r, _ in pairs}) == len(pairs) == len({c for _, c in pairs})
    assert all(iou[r, c] >= 0.5 for r, c in pairs)
    count, total = slow_match(iou)
    assert len(pairs) == count
    assert sum(iou[r, c] for r, c in pairs) == pytest.approx(total)


def test_matching_prefers_two_pairs_to_one_better_pair():
    # greedy by IoU would take (0, 0) at 0.9 and leave person 1 without a box
    iou = np.array([[0.9, 0.6], [0.55, 0.0]])
    assert sorted(bv.match(iou)) == [(0, 1), (1, 0)]


def test_overlaps_below_the_threshold_do_not_steal_a_pair():
    # the largest IoU sum (0.45 + 0.45) is made of pairs that do not count
    iou = np.array([[0.6, 0.45], [0.45, 0.0]])
    assert bv.match(iou) == [(0, 0)]
    assert slow_match(iou) == (1, 0.6)


def hand_case():
    """2 people over 3 frames plus one ignored (small) person on frame 20."""
    rows = [
        # frame, person, left, top, right, bottom, ignore
        (10, 1, 100, 100, 130, 180, 0),
        (10, 2, 300, 100, 330, 180, 0),
        (20, 1, 110, 100, 140, 180, 0),
        (20, 2, 290, 100, 320, 180, 0),
        (20, 3, 500, 50, 510, 80, 1),
        (30, 1, 120, 100, 150, 180, 0),
        (30, 2, 280, 100, 310, 180, 0),
    ]
    a = np.array(rows, np.int64)
    return bv.Truth(a[:, 0], a[:, 1], a[:, 2:6].astype(float), a[:, 6] != 0)


def test_hand_made_case():
    truth = hand_case()
    paths = [
        # person 1 by track 7 on all three frames (the middle box predicted, not detected)
        TrackPath("v", "c", 7, [10, 20, 30], [[101, 101, 131, 181], [112, 100, 142, 180],
                                               [121, 99, 151, 179]], [True, False, True]),
        # person 2 by track 8 on frame 10, then track 9 on frame 30 (a broken track)
        TrackPath("v", "c", 8, [10, 15], [[300, 100, 330, 180], [0, 0, 5, 5]], [True, True]),
        TrackPath("v", "c", 9, [30], [[282, 102, 312, 182]], [True]),
        # a false box on frame 20 and a box on the ignored person (neither counted against)
        TrackPath("v", "c", 11, [20], [[600, 300, 640, 380]], [True]),
        TrackPath("v", "c", 12, [20, 30], [[501, 52, 509, 70], [700, 0, 710, 10]], [True] * 2),
    ]  # fmt: skip
    found = bv.boxes_of_paths(paths, truth.frame_numbers)
    assert sorted(found[20].tracks.tolist()) == [7, 11, 12]
    crops = {7: np.array([12]), 8: np.array([10]), 9: np.array([60])}
    s = bv.score(truth, found, crops, window=20)
    assert s.people == 6 and s.covered == 5  # person 2 missed on frame 20
    assert s.recall == pytest.approx(5 / 6)
    # boxes: frame 10: 7, 8; frame 20: 7, 11 (12 excused); frame 30: 7, 9, 12 (false)
    assert s.excused == 1
    assert s.boxes == 7 and s.true_boxes == 5
    assert s.precision == pytest.approx(5 / 7)
    assert s.identities == 2 and s.tracks_per_identity == {1: 1, 2: 2}
    assert s.tracks_per_person == 1.5
    # crops: track 7 (frame 12) is within 20 frames of 10, 20, 30; 8 at 10; 9 at 60 is 30 away
    assert s.with_crop == 4 and s.crop_rate == pytest.approx(4 / 6)
    assert s.per_frame == {10: (2, 2, 2, 2), 20: (2, 1, 2, 1), 30: (2, 2, 3, 2)}
    # no crops given: none counted; a shorter window loses track 7's crop on frame 30
    assert bv.score(truth, found, None).with_crop == 0
    assert bv.score(truth, found, crops, window=10).with_crop == 3


def test_a_box_mostly_inside_an_ignored_person_is_excused_a_box_beside_it_is_not():
    ignored = np.array([[100, 100, 120, 160]])
    pred = np.array([[102, 110, 118, 150], [95, 100, 115, 130], [121, 100, 141, 160]])
    assert bv.excused(pred, ignored).tolist() == [True, True, False]
    assert bv.excused(pred, np.zeros((0, 4))).tolist() == [False] * 3


def test_a_box_on_a_person_already_matched_is_a_false_box():
    truth = hand_case()
    frame10 = bv.FrameBoxes(np.array([1, 2, 3]), np.array(
        [[100, 100, 130, 180], [101, 100, 131, 180], [300, 100, 330, 180]], float))  # fmt: skip
    s = bv.score(truth, {10: frame10})
    assert s.per_frame[10] == (2, 2, 3, 2)
    assert s.per_frame[20] == (2, 0, 0, 0)  # no box on a frame: all missed, no false box


def test_committed_annotations_are_well_formed():
    truth = bv.read_truth(bv.ANNOTATIONS)
    assert truth.frame_numbers == list(range(101, 392, 10))
    keys = list(zip(truth.frames.tolist(), truth.person.tolist()))
    assert len(keys) == len(set(keys))  # one box per person per frame
    b = truth.boxes
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= 768).all() and (b[:, 3] <= 576).all()
    h = b[:, 3] - b[:, 1]
    assert truth.ignore[h < 60].all()  # under 60 px tall: ignored
    assert (~truth.ignore).sum() >= 150


def test_bad_annotation_files_are_one_line(tmp_path):
    with pytest.raises(CerberusError, match="no annotation file"):
        bv.read_truth(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,person,left\n1,2,3\n")
    with pytest.raises(CerberusError, match="needs the columns"):
        bv.read_truth(bad)
    bad.write_text("frame,person,left,top,right,bottom,ignore\n1,2,3,4,x,6,0\n")
    with pytest.raises(CerberusError, match="not whole numbers"):
        bv.read_truth(bad)
    bad.write_text("frame,person,left,top,right,bottom,ignore\n1,2,30,4,20,60,0\n")
    with pytest.raises(CerberusError, match="empty box"):
        bv.read_truth(bad)


def test_gallery_boxes_reads_the_videos_paths_and_crops(monkeypatch):
    from cerberus.store import open as store_open
    from cerberus.store.base import GalleryInfo, Items
    from cerberus.store.memory import MemoryStore

    store = MemoryStore(GalleryInfo(dim=4, fingerprint="f" * 64, schema={"name": "t"},
                                    prototypes={}, checkpoint="m.pt"))  # fmt: skip
    for source, track, frames in (("/data/vtest.avi", 7, [12, 40]), ("/data/other.avi", 7, [3])):
        items = Items.make(np.ones((len(frames), 4)), source=source, num_attributes=0,
                           frame=frames, track=[track] * len(frames))  # fmt: skip
        path = TrackPath(source, "", track, [10, 20], [[1, 2, 3, 4], [5, 6, 7, 8]], [True, False])
        store.add(items, paths=[path])
    monkeypatch.setattr(store_open, "existing_store", lambda target: store)
    found, crops, source = bv.gallery_boxes("G", Path("/elsewhere/vtest.avi"), [10, 20, 30])
    assert source == "/data/vtest.avi"
    assert found[20].tracks.tolist() == [7] and found[20].boxes.tolist() == [[5, 6, 7, 8]]
    assert len(found[30].tracks) == 0
    assert {t: c.tolist() for t, c in crops.items()} == {7: [12, 40]}  # not other.avi's crop
    with pytest.raises(CerberusError, match="holds no source"):
        bv.gallery_boxes("G", Path("/x/third.avi"), [10])


def test_found_boxes_written_for_the_overlay_read_back(tmp_path):
    found = {101: bv.FrameBoxes(np.array([3, -1]), np.array([[1.2, 2, 30, 40], [5, 6, 7, 8.6]]))}
    bv.write_boxes(tmp_path / "f.csv", found)
    back = bv.read_truth(tmp_path / "f.csv")
    assert back.frames.tolist() == [101, 101] and back.person.tolist() == [3, -1]
    assert back.boxes.tolist() == [[1, 2, 30, 40], [5, 6, 7, 9]]
