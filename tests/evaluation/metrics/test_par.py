"""PAR metrics (method §6.3): hand-worked cases, slow references, majority chance and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.attributes.schema_files import DUKEMTMC, MARKET1501
from cerberus.errors import CerberusError
from cerberus.evaluation.metrics import (
    binary_labels,
    par_accuracy,
    par_label_majority_chance,
    par_label_mean_accuracy,
    par_majority_chance,
    par_official_accuracy,
    par_official_majority_chance,
)


def test_par_hand_case():
    hat, gender = MARKET1501.index("hat"), MARKET1501.index("gender")
    true = np.zeros((4, 12), dtype=np.int64)
    true[0, hat] = -1  # unknown: ignored
    pred = np.zeros_like(true)
    pred[0, hat] = 1  # ignored, the truth is unknown
    pred[1, hat] = 1  # hat: 2 of 3 labelled rows right
    pred[:, gender] = [1, 1, 0, 0]  # gender: 2 of 4 right
    m = par_accuracy(pred, true, MARKET1501)
    assert m["attribute_accuracy_score"]["hat"] == pytest.approx(2 / 3)
    assert m["attribute_accuracy_score"]["gender"] == 0.5
    assert m["attribute_accuracy_score"]["upper.color"] == 1.0
    assert m["num_labelled"]["hat"] == 3 and m["num_labelled"]["gender"] == 4
    assert m["mean_accuracy_score"] == pytest.approx((2 / 3 + 1 / 2 + 10) / 12)  # = 67/72


def test_par_counts_attributes_per_schema(schema):
    values = np.zeros((3, schema.num_attributes), dtype=np.int64)
    m = par_accuracy(values, values, schema)
    assert len(m["attribute_accuracy_score"]) == {"market1501": 12, "dukemtmc": 10}[schema.name]
    assert m["mean_accuracy_score"] == 1.0


def test_par_majority_chance():
    backpack = DUKEMTMC.index("backpack")
    train = np.zeros((5, 10), dtype=np.int64)
    train[:3, backpack] = 1  # majority: backpack
    train[4, 0] = -1  # unknown entries are not counted
    test = np.zeros((4, 10), dtype=np.int64)
    test[:1, backpack] = 1  # 1 of 4 test rows has a backpack
    m = par_majority_chance(train, test, DUKEMTMC)
    assert m["majority_value"]["backpack"] == 1
    assert m["attribute_accuracy_score"]["backpack"] == 0.25
    assert m["mean_accuracy_score"] == pytest.approx((9 + 0.25) / 10)


def reference_official(pred, true, schema, alt):
    """Lin et al.'s protocol, one image and one attribute at a time."""
    scores = {}
    for j, attr in enumerate(schema.attributes):
        correct = labelled = 0
        for i in range(len(true)):
            if true[i, j] < 0:
                continue
            labelled += 1
            if attr.is_onehot:
                annotated = {true[i, j]} | {a for a in alt[i, :, j] if a >= 0}
                annotated.discard(0)  # "none" is never a correct answer
                correct += pred[i, j] in annotated
            else:
                correct += pred[i, j] == true[i, j]
        scores[attr.name] = correct / labelled if labelled else float("nan")
    return scores


def reference_label_mean(pred, true, schema, alt):
    """(TPR + TNR) / 2 per binary field, one image at a time; None when left out."""
    scores = {}
    for j, attr in enumerate(schema.attributes):
        if attr.num_values == 2 and not attr.is_onehot:
            codes = [1]
        elif attr.is_onehot:
            codes = range(1, attr.num_values)
        else:
            codes = range(attr.num_values)
        for v in codes:
            tp = fn = tn = fp = 0
            for i in range(len(true)):
                if true[i, j] < 0:
                    continue
                positive = true[i, j] == v or v in alt[i, :, j]
                predicted = pred[i, j] == v
                tp += positive and predicted
                fn += positive and not predicted
                tn += not positive and not predicted
                fp += not positive and predicted
            name = f"{attr.name}={attr.values[v]}"
            if tp + fn == 0 or tn + fp == 0:
                scores[name] = None
            else:
                scores[name] = (tp / (tp + fn) + tn / (tn + fp)) / 2
    return scores


def random_par_case(schema, seed, n=60):
    """Random predictions and truths with unknown entries and alternative colours."""
    rng = np.random.default_rng(seed)
    sizes = [a.num_values for a in schema.attributes]
    true = np.stack([rng.integers(0, k, n) for k in sizes], 1)
    pred = np.stack([rng.integers(0, k, n) for k in sizes], 1)
    true[rng.random(true.shape) < 0.1] = -1
    alt = np.full((n, 2, len(sizes)), -1)
    for j, attr in enumerate(schema.attributes):
        if attr.is_onehot:
            pick = rng.random((n, 2)) < 0.25
            alt[:, :, j] = np.where(pick, rng.integers(1, attr.num_values, (n, 2)), -1)
    return pred, true, alt



DUKE_GENDER = DUKEMTMC.index("gender")



DUKE_LOWER, DUKE_UPPER = DUKEMTMC.index("lower.color"), DUKEMTMC.index("upper.color")


def test_par_official_hand_case():
    true = np.zeros((4, 10), dtype=np.int64)
    pred = np.zeros_like(true)
    alt = np.full((4, 2, 10), -1)
    # upper: black right; "none" truth never right, even predicted "none"; red right; red vs
    # purple wrong -> 2/4 (par_accuracy: 3/4).
    true[:, DUKE_UPPER], pred[:, DUKE_UPPER] = [1, 0, 3, 3], [1, 0, 3, 4]
    # lower: image 0 is black, white or red and red is predicted (right); image 1 black, white
    # predicted (wrong); image 2 white (right); image 3 unknown (ignored) -> 2/3 (par: 1/3).
    true[:, DUKE_LOWER], pred[:, DUKE_LOWER] = [1, 1, 2, -1], [3, 2, 2, 0]
    alt[0, :, DUKE_LOWER] = [2, 3]
    true[:, DUKE_GENDER], pred[:, DUKE_GENDER] = [0, 1, 1, 0], [0, 1, 0, 0]  # 3/4
    m = par_official_accuracy(pred, true, DUKEMTMC, alt_values=alt)
    acc = m["official_attribute_accuracy_score"]
    assert acc["upper.color"] == 0.5
    assert acc["lower.color"] == pytest.approx(2 / 3)
    assert acc["gender"] == 0.75 and acc["hat"] == 1.0
    assert m["official_accuracy_score"] == pytest.approx(107 / 120)  # (1/2 + 2/3 + 3/4 + 7) / 10
    assert m["num_labelled"]["lower.color"] == 3
    paper = par_accuracy(pred, true, DUKEMTMC)["attribute_accuracy_score"]
    assert paper["upper.color"] == 0.75 and paper["lower.color"] == pytest.approx(1 / 3)
    # Without the alternatives image 0 is wrong: 1/3.
    plain = par_official_accuracy(pred, true, DUKEMTMC)
    assert plain["official_attribute_accuracy_score"]["lower.color"] == pytest.approx(1 / 3)


def test_par_official_accepts_any_annotated_colour():
    true = np.zeros((3, 10), dtype=np.int64)
    true[:, DUKE_LOWER] = 1  # black, also white and red
    alt = np.full((3, 10), -1)
    alt[:, DUKE_LOWER] = 2
    alt3 = np.stack([alt, alt], 1)
    alt3[:, 1, DUKE_LOWER] = 3
    pred = true.copy()
    for colour, expected in ((1, 1.0), (2, 1.0), (3, 1.0), (4, 0.0), (0, 0.0)):
        pred[:, DUKE_LOWER] = colour
        m = par_official_accuracy(pred, true, DUKEMTMC, alt_values=alt3)
        assert m["official_attribute_accuracy_score"]["lower.color"] == expected
    pred[:, DUKE_LOWER] = 3  # red: only the second slot has it
    m = par_official_accuracy(pred, true, DUKEMTMC, alt_values=alt)
    assert m["official_attribute_accuracy_score"]["lower.color"] == 0.0


def test_binary_labels_per_schema():
    market = [name for _, _, name in binary_labels(MARKET1501)]
    assert len(market) == 30 and len(set(market)) == 30
    assert "gender=female" in market and "age=young" in market and "age=old" in market
    assert "upper.color=none" not in market and "upper.color=green" in market
    assert len(binary_labels(DUKEMTMC)) == 23  # the 23 fields of the annotation


def test_par_label_mean_hand_case():
    true = np.zeros((4, 10), dtype=np.int64)
    pred = np.zeros_like(true)
    true[:, DUKE_GENDER], pred[:, DUKE_GENDER] = [1, 1, 0, 0], [1, 0, 0, 0]  # (1/2 + 1) / 2
    # lower: black, black, white, white; image 0 also white. Predicted white, black, black, white.
    # black: P = {0, 1}, predicted {1, 2}: TPR 1/2, TNR 1/2 -> 1/2.
    # white: P = {0, 2, 3}, predicted {0, 3}: TPR 2/3, TNR 1/1 -> 5/6.
    true[:, DUKE_LOWER], pred[:, DUKE_LOWER] = [1, 1, 2, 2], [2, 1, 1, 2]
    alt = np.full((4, 1, 10), -1)
    alt[0, 0, DUKE_LOWER] = 2
    m = par_label_mean_accuracy(pred, true, DUKEMTMC, alt_values=alt)
    acc = m["label_accuracy_score"]
    assert acc["gender=female"] == 0.75
    assert acc["lower.color=black"] == 0.5
    assert acc["lower.color=white"] == pytest.approx(5 / 6)
    assert m["num_positive"]["lower.color=white"] == 3 and m["num_negative"]["gender=female"] == 2
    # Every other label has no positive image (all "no" / "none"): left out.
    assert len(m["left_out_labels"]) == 20 and "hat=yes" in m["left_out_labels"]
    assert np.isnan(acc["hat=yes"])
    assert m["label_mean_accuracy_score"] == pytest.approx(25 / 36)  # (3/4 + 1/2 + 5/6) / 3


@pytest.mark.parametrize("seed", range(3))
def test_par_metrics_match_slow_references(schema, seed):
    pred, true, alt = random_par_case(schema, seed)
    official = par_official_accuracy(pred, true, schema, alt_values=alt)
    ref = reference_official(pred, true, schema, alt)
    for name, value in ref.items():
        assert official["official_attribute_accuracy_score"][name] == pytest.approx(value)
    assert official["official_accuracy_score"] == pytest.approx(np.nanmean(list(ref.values())))
    label = par_label_mean_accuracy(pred, true, schema, alt_values=alt)
    ref = reference_label_mean(pred, true, schema, alt)
    assert list(label["label_accuracy_score"]) == list(ref)
    for name, value in ref.items():
        if value is None:
            assert name in label["left_out_labels"]
        else:
            assert label["label_accuracy_score"][name] == pytest.approx(value)
    kept = [v for v in ref.values() if v is not None]
    assert label["label_mean_accuracy_score"] == pytest.approx(np.mean(kept))


@pytest.mark.parametrize("seed", range(3))
def test_par_label_majority_answer_scores_exactly_one_half(schema, seed):
    _, train, _ = random_par_case(schema, seed, n=30)
    _, test, alt = random_par_case(schema, seed + 10)
    m = par_label_majority_chance(train, test, schema, alt_values=alt)
    kept = [v for v in m["label_accuracy_score"].values() if v == v]
    assert kept and all(v == 0.5 for v in kept)
    assert m["label_mean_accuracy_score"] == 0.5
    # Any constant answer does, too.
    for value in (0, 1):
        constant = np.full_like(test, value)
        assert par_label_mean_accuracy(constant, test, schema)["label_mean_accuracy_score"] == 0.5


def test_par_official_majority_chance():
    train = np.zeros((5, 10), dtype=np.int64)
    train[:, DUKE_LOWER] = [1, 1, 1, 2, 0]  # majority black
    train[:, DUKE_UPPER] = [0, 0, 0, 1, 2]  # majority "none": never right under the protocol
    test = np.zeros((4, 10), dtype=np.int64)
    test[:, DUKE_LOWER] = [1, 2, 2, 0]
    test[:, DUKE_UPPER] = [0, 0, 1, 1]
    alt = np.full((4, 10), -1)
    alt[1, DUKE_LOWER] = 1  # white or black
    m = par_official_majority_chance(train, test, DUKEMTMC, alt_values=alt)
    assert m["majority_value"]["lower.color"] == 1 and m["majority_value"]["upper.color"] == 0
    acc = m["official_attribute_accuracy_score"]
    assert acc["lower.color"] == 0.5 and acc["upper.color"] == 0.0
    assert m["official_accuracy_score"] == pytest.approx((8 + 0.5) / 10)
    assert (
        par_majority_chance(train, test, DUKEMTMC)["attribute_accuracy_score"]["upper.color"] == 0.5
    )


def test_par_input_errors():
    ok = np.zeros((3, 12), dtype=np.int64)
    with pytest.raises(CerberusError, match=r"pred_values: expected shape \(n, 12\)"):
        par_accuracy(ok[:, :10], ok, MARKET1501)
    with pytest.raises(CerberusError, match="pred_values: shape"):
        par_accuracy(ok[:2], ok, MARKET1501)
    bad = ok.copy()
    bad[1, MARKET1501.index("age")] = 4
    with pytest.raises(CerberusError, match=r"true_values: age value 4 out of range \[-1, 4\)"):
        par_accuracy(ok, bad, MARKET1501)
    with pytest.raises(CerberusError, match="pred_values: -1"):
        par_accuracy(ok - 1, ok, MARKET1501)
    with pytest.raises(CerberusError, match="true_values: no labelled entry"):
        par_accuracy(ok, ok - 1, MARKET1501)
    with pytest.raises(CerberusError, match="expected integer"):
        par_accuracy(ok.astype(float), ok, MARKET1501)


@pytest.mark.parametrize(
    ("alt", "match"),
    [
        (np.full((2, 10), -1), r"alt_values must have shape \(3, K, 10\) or \(3, 10\)"),
        (np.full((3, 1, 9), -1), r"alt_values must have shape"),
        (np.full((3, 10), -1.0), r"alt_values must hold integer codes"),
        (np.zeros((3, 10), dtype=np.int64), r"alt_values for hat must be -1 \(only colour"),
    ],
)
def test_par_alternative_input_errors(alt, match):
    ok = np.zeros((3, 10), dtype=np.int64)
    for metric in (par_official_accuracy, par_label_mean_accuracy):
        with pytest.raises(CerberusError, match=match):
            metric(ok, ok, DUKEMTMC, alt_values=alt)


def test_par_new_metrics_input_errors():
    ok = np.zeros((3, 10), dtype=np.int64)
    bad_alt = np.full((3, 10), -1)
    bad_alt[0, DUKE_LOWER] = 0
    with pytest.raises(CerberusError, match=r"lower.color must be -1 or a colour code 1..7, got 0"):
        par_official_accuracy(ok, ok, DUKEMTMC, alt_values=bad_alt)
    for metric in (par_official_accuracy, par_label_mean_accuracy):
        with pytest.raises(CerberusError, match="pred_values: -1"):
            metric(ok - 1, ok, DUKEMTMC)
        with pytest.raises(CerberusError, match=r"pred_values: expected shape \(n, 10\)"):
            metric(ok[:, :9], ok, DUKEMTMC)
        with pytest.raises(CerberusError, match="true_values: no labelled entry"):
            metric(ok, ok - 1, DUKEMTMC)
    with pytest.raises(CerberusError, match="every binary label lacks positives or negatives"):
        par_label_mean_accuracy(ok, ok, DUKEMTMC)  # all "no" / "none"
    with pytest.raises(CerberusError, match="train_values: no labelled hat entry"):
        par_label_majority_chance(ok - 1, ok, DUKEMTMC)


def test_label_mean_of_labels_without_both_classes_is_refused_in_words():
    """Every binary label lacks positives or negatives (every image alike): refused, saying
    why, not a NaN."""
    true = np.zeros((4, MARKET1501.num_attributes), dtype=np.int64)
    with pytest.raises(CerberusError) as e:
        par_label_mean_accuracy(true, true, MARKET1501)
    assert str(e.value) == (
        "true_values: every binary label lacks positives or negatives; label-based mA is undefined"
    )
