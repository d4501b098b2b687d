"""PAR metrics, each with its majority-answer baseline: pure functions on arrays (method §6.3).

* :func:`par_accuracy`: per-attribute accuracy and their mean (mA, the paper's convention).
* :func:`par_official_accuracy`: Lin et al.'s official attribute-evaluation protocol.
* :func:`par_label_mean_accuracy`: label-based mA, mean of (TPR + TNR) / 2 over binary labels.
* :func:`par_majority_chance`, :func:`par_official_majority_chance`,
  :func:`par_label_majority_chance`: the same metrics for always answering the most frequent
  training value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cerberus.attributes.schema import Schema
from cerberus.attributes.table import check_alt_values
from cerberus.errors import CerberusError
from cerberus.evaluation.metrics.ranking import _to_numpy

__all__ = [
    "binary_labels",
    "par_accuracy",
    "par_label_majority_chance",
    "par_label_mean_accuracy",
    "par_majority_chance",
    "par_official_accuracy",
    "par_official_majority_chance",
]


def _check_values(x: Any, name: str, schema: Schema) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.ndim != 2 or arr.shape[1] != schema.num_attributes:
        raise CerberusError(
            f"{name}: expected shape (n, {schema.num_attributes}) for {schema.name}, "
            f"got {arr.shape}"
        )
    if arr.dtype.kind not in "iu":
        raise CerberusError(f"{name}: expected integer value codes, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    for j, attr in enumerate(schema.attributes):
        bad = (arr[:, j] < -1) | (arr[:, j] >= attr.num_values)
        if bad.any():
            raise CerberusError(
                f"{name}: {attr.name} value {arr[bad, j][0]} out of range "
                f"[-1, {attr.num_values}) (-1 = unknown)"
            )
    return arr


def _check_par_inputs(
    pred_values: Any, true_values: Any, schema: Schema, alt_values: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked ``(pred, true, alt)``; ``alt`` has shape ``(n, K, n_attributes)``."""
    pred = _check_values(pred_values, "pred_values", schema)
    true = _check_values(true_values, "true_values", schema)
    if pred.shape != true.shape:
        raise CerberusError(
            f"pred_values: shape {pred.shape} differs from true_values shape {true.shape}"
        )
    known = true >= 0
    if (pred[known] < 0).any():
        raise CerberusError("pred_values: -1 (unknown) where the true value is known")
    if not known.any():
        raise CerberusError("true_values: no labelled entry; accuracy is undefined")
    alt = None if alt_values is None else _to_numpy(alt_values)
    alt = check_alt_values(alt, schema, len(true), "par metrics")
    return pred, true, alt


def par_accuracy(pred_values: Any, true_values: Any, schema: Schema) -> dict[str, Any]:
    """Per-attribute accuracy and mean accuracy mA (method §6.3).

    Each colour is one multi-class attribute (Market-1501: 12 attributes, DukeMTMC-reID: 10).
    ``acc_a = mean over labelled rows of [pred[:, a] == true[:, a]]``; rows whose true value is
    ``-1`` (unknown) are ignored for that attribute; ``mA = mean_a acc_a`` over the attributes
    with at least one labelled row. This is the paper's (and APR's) mA; a colour "none" predicted
    for a "none" identity counts as correct and alternative colours are not used.

    Args:
        pred_values: int array of shape ``(n, n_attributes)``, value codes of ``schema``.
        true_values: int array of the same shape; ``-1`` = unknown.
        schema: the attribute schema the codes follow.

    Returns:
        ``{"attribute_accuracy_score": {name: float (nan when unlabelled)},
        "mean_accuracy_score": float, "num_labelled": {name: int}}``.

    Raises:
        CerberusError: bad shapes or dtypes, values out of range, a known true value with an
            unknown prediction, or no labelled row at all.
    """
    pred, true, _ = _check_par_inputs(pred_values, true_values, schema)
    known = true >= 0
    correct = ((pred == true) & known).sum(0)
    labelled = known.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = correct / labelled
    names = [a.name for a in schema.attributes]
    return {
        "attribute_accuracy_score": {n: float(a) for n, a in zip(names, acc)},
        "mean_accuracy_score": float(np.nanmean(acc)),
        "num_labelled": {n: int(c) for n, c in zip(names, labelled)},
    }


def par_official_accuracy(
    pred_values: Any, true_values: Any, schema: Schema, *, alt_values: Any = None
) -> dict[str, Any]:
    """Accuracy under Lin et al.'s official attribute-evaluation protocol (method §6.3).

    What the official MATLAB scripts of the Lin et al. annotations do
    (``evaluate_market_attribute.m`` in github.com/vana77/Market-1501_Attribute,
    ``evaluate_duke_attribute.m`` in github.com/vana77/DukeMTMC-attribute): one prediction per
    *image* of the test gallery (``bounding_box_test``), each image carrying its identity's
    attributes; on Market-1501 the junk (``-1``) and distractor (``0000``) images are left out
    (13,115 images, as the maintainers confirm in issue #6 of the Market repository), on
    DukeMTMC-reID every gallery image counts (17,661). Query images are not evaluated. Then,
    per attribute, the fraction of images predicted correctly:

    * binary attributes and age: ``pred == true``;
    * a colour attribute (one multi-class prediction among the colours): correct when the
      predicted colour's field is set for the identity, i.e. ``pred == true`` or ``pred`` is one
      of its alternative colours (``alt_values``: an identity annotated with several colours
      accepts any of them). An identity with no colour field set (the none value) is never
      counted correct, whatever is predicted, and a predicted "none" is never correct: the
      script only credits a predicted colour whose field is "yes" (the Market maintainers
      confirm this in issue #13), and the images still count in the denominator.

    The Market script averages the 12 attribute accuracies; the Duke script prints its 10
    without averaging; ``official_accuracy_score`` is their mean in both cases. The Duke script
    as published credits a predicted colour when that colour's field is coded 1, which that
    dataset's README defines as "no"; read literally it would reward every wrong colour, so it
    is taken as a slip and the Market rule (field coded 2, "yes") is applied to both. (Its
    prediction codes for the seven lower-body colours skip 4; that is numbering only.) Rows
    whose true value is ``-1`` are ignored for that attribute, as in :func:`par_accuracy`.

    Args:
        pred_values: int array of shape ``(n, n_attributes)``, value codes of ``schema``.
        true_values: int array of the same shape; ``-1`` = unknown.
        schema: the attribute schema the codes follow.
        alt_values: optional int array of shape ``(n, K, n_attributes)`` (or ``(n,
            n_attributes)`` for ``K = 1``): further annotated colours, ``-1`` where none.

    Returns:
        ``{"official_attribute_accuracy_score": {name: float (nan when unlabelled)},
        "official_accuracy_score": float, "num_labelled": {name: int}}``.

    Raises:
        CerberusError: as :func:`par_accuracy`, plus bad ``alt_values`` (shape, or a code that is
            not a colour of a colour attribute).

    Examples:
        Two images of a DukeMTMC identity in a black top and black-or-white trousers, one of an
        identity with no upper-body colour and blue trousers; every prediction is the first
        annotated value except one "white":

        >>> from cerberus.attributes.schema_files import DUKEMTMC
        >>> true = np.zeros((3, 10), dtype=int)
        >>> true[:, 1] = [1, 1, 0]  # upper.color black, black, none
        >>> true[:, 3] = [1, 1, 5]  # lower.color black, black, blue
        >>> alt = np.full((3, 10), -1)
        >>> alt[:2, 3] = 2  # ... or white
        >>> pred = true.copy()
        >>> pred[1, 3] = 2  # white: accepted; "none" for the third top: never correct
        >>> m = par_official_accuracy(pred, true, DUKEMTMC, alt_values=alt)
        >>> acc = m["official_attribute_accuracy_score"]
        >>> acc["lower.color"], round(acc["upper.color"], 4)
        (1.0, 0.6667)
    """
    pred, true, alt = _check_par_inputs(pred_values, true_values, schema, alt_values)
    known = true >= 0
    correct = pred == true
    for j, attr in enumerate(schema.attributes):
        if attr.is_onehot:
            is_colour = pred[:, j] != attr.none_code
            correct[:, j] = is_colour & (
                (pred[:, j] == true[:, j]) | (pred[:, j, None] == alt[:, :, j]).any(1)
            )
    correct = (correct & known).sum(0)
    labelled = known.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = correct / labelled
    names = [a.name for a in schema.attributes]
    return {
        "official_attribute_accuracy_score": {n: float(a) for n, a in zip(names, acc)},
        "official_accuracy_score": float(np.nanmean(acc)),
        "num_labelled": {n: int(c) for n, c in zip(names, labelled)},
    }


def binary_labels(schema: Schema) -> list[tuple[int, int, str]]:
    """The binary labels of label-based mA: ``(attribute column, value code, name)``.

    A two-valued attribute is one label, its second value the positive (``"gender=female"``,
    ``"backpack=yes"``; (TPR + TNR) / 2 does not depend on which value is positive). A colour
    attribute gives one label per colour, "none" excluded (its one-hot fields, ``upblack`` ...),
    and age one label per value, one-vs-rest. Market-1501: 9 + 8 + 9 + 4 = 30 labels;
    DukeMTMC-reID: 8 + 8 + 7 = 23, its annotation fields.
    """
    out = []
    for j, attr in enumerate(schema.attributes):
        if attr.num_values == 2 and not attr.is_onehot:
            codes = [1]
        elif attr.is_onehot:
            codes = list(attr.colour_codes)
        else:
            codes = list(range(attr.num_values))
        out.extend((j, v, f"{attr.name}={attr.values[v]}") for v in codes)
    return out


def par_label_mean_accuracy(
    pred_values: Any, true_values: Any, schema: Schema, *, alt_values: Any = None
) -> dict[str, Any]:
    """Label-based mA: mean over binary labels of (TPR + TNR) / 2 (method §6.3).

    The PETA / RAP / PA-100K convention. The attributes are expanded into binary labels by
    :func:`binary_labels` (colours and age one-vs-rest). For the label "attribute ``a`` has value
    ``v``", an image is a true positive when ``true[:, a] == v`` or ``v`` is one of its
    alternative colours (an identity annotated with two colours is positive for both, as in
    the annotation's one-hot fields), and predicted positive when ``pred[:, a] == v``; then::

        score_l = (TP / P + TN / N) / 2,   label_mean_accuracy_score = mean_l score_l

    with ``P`` / ``N`` the positive / negative images among the rows where ``true[:, a]`` is
    known. A label with no positive or no negative image is *left out* (TPR or TNR undefined):
    its score is nan and its name is listed in ``left_out_labels``. Predicting one constant
    answer per attribute (e.g. the majority) scores exactly 0.5 on every label.

    Args:
        pred_values: int array of shape ``(n, n_attributes)``, value codes of ``schema``.
        true_values: int array of the same shape; ``-1`` = unknown.
        schema: the attribute schema the codes follow.
        alt_values: optional int array of shape ``(n, K, n_attributes)`` (or ``(n,
            n_attributes)``): further annotated colours, ``-1`` where none.

    Returns:
        ``{"label_accuracy_score": {label: float (nan when left out)},
        "label_mean_accuracy_score": float, "num_positive": {label: int},
        "num_negative": {label: int}, "left_out_labels": [label, ...]}``.

    Raises:
        CerberusError: as :func:`par_official_accuracy`, or every label left out.

    Examples:
        >>> from cerberus.attributes.schema_files import DUKEMTMC
        >>> true = np.zeros((4, 10), dtype=int)
        >>> true[:, 6] = [1, 1, 0, 0]  # gender: female, female, male, male
        >>> pred = true.copy()
        >>> pred[:, 6] = [1, 0, 0, 0]  # TPR 1/2, TNR 2/2
        >>> m = par_label_mean_accuracy(pred, true, DUKEMTMC)
        >>> m["label_accuracy_score"]["gender=female"]
        0.75
    """
    pred, true, alt = _check_par_inputs(pred_values, true_values, schema, alt_values)
    scores, positive, negative, left_out = {}, {}, {}, []
    for j, v, name in binary_labels(schema):
        known = true[:, j] >= 0
        is_true = (true[known, j] == v) | (alt[known, :, j] == v).any(1)
        is_pred = pred[known, j] == v
        p, n = int(is_true.sum()), int((~is_true).sum())
        positive[name], negative[name] = p, n
        if p == 0 or n == 0:
            scores[name] = float("nan")
            left_out.append(name)
            continue
        tpr = (is_true & is_pred).sum() / p
        tnr = (~is_true & ~is_pred).sum() / n
        scores[name] = float((tpr + tnr) / 2)
    if len(left_out) == len(scores):
        raise CerberusError(
            "true_values: every binary label lacks positives or negatives; label-based mA "
            "is undefined"
        )
    return {
        "label_accuracy_score": scores,
        "label_mean_accuracy_score": float(np.nanmean(list(scores.values()))),
        "num_positive": positive,
        "num_negative": negative,
        "left_out_labels": left_out,
    }


def _majority_values(train_values: Any, schema: Schema) -> np.ndarray:
    """Most frequent training value per attribute, ``(n_attributes,)``; ties to the smallest."""
    train = _check_values(train_values, "train_values", schema)
    majority = np.zeros(schema.num_attributes, dtype=np.int64)
    for j, attr in enumerate(schema.attributes):
        column = train[:, j]
        column = column[column >= 0]
        if len(column) == 0:
            raise CerberusError(f"train_values: no labelled {attr.name} entry")
        majority[j] = np.bincount(column, minlength=attr.num_values).argmax()
    return majority


def _majority_chance(metric, train_values, test_values, schema, **kwargs) -> dict[str, Any]:
    majority = _majority_values(train_values, schema)
    test = _check_values(test_values, "test_values", schema)
    out = metric(np.broadcast_to(majority, test.shape), test, schema, **kwargs)
    out["majority_value"] = {a.name: int(v) for a, v in zip(schema.attributes, majority)}
    return out


def par_majority_chance(train_values: Any, test_values: Any, schema: Schema) -> dict[str, Any]:
    """:func:`par_accuracy` of predicting, for every attribute, its most frequent training value.

    Ties go to the smallest value code; unknown (``-1``) training entries are not counted.

    Args:
        train_values: int array of shape ``(n_train, n_attributes)``.
        test_values: int array of shape ``(n_test, n_attributes)``; ``-1`` = unknown.
        schema: the attribute schema the codes follow.

    Returns:
        The same keys as :func:`par_accuracy`, plus ``"majority_value": {name: int}``.
    """
    return _majority_chance(par_accuracy, train_values, test_values, schema)


def par_official_majority_chance(
    train_values: Any, test_values: Any, schema: Schema, *, alt_values: Any = None
) -> dict[str, Any]:
    """:func:`par_official_accuracy` of the majority answer of :func:`par_majority_chance`.

    Args:
        train_values: int array of shape ``(n_train, n_attributes)``.
        test_values: int array of shape ``(n_test, n_attributes)``; ``-1`` = unknown.
        schema: the attribute schema the codes follow.
        alt_values: the test rows' alternative colours, as in :func:`par_official_accuracy`.

    Returns:
        The same keys as :func:`par_official_accuracy`, plus ``"majority_value"``.
    """
    return _majority_chance(
        par_official_accuracy, train_values, test_values, schema, alt_values=alt_values
    )


def par_label_majority_chance(
    train_values: Any, test_values: Any, schema: Schema, *, alt_values: Any = None
) -> dict[str, Any]:
    """:func:`par_label_mean_accuracy` of the majority answer: exactly 0.5 on every label.

    A constant answer predicts each label always positive (TPR 1, TNR 0) or always negative
    (TPR 0, TNR 1). Computed, not assumed, so the labels left out match the model's row.

    Args:
        train_values: int array of shape ``(n_train, n_attributes)``.
        test_values: int array of shape ``(n_test, n_attributes)``; ``-1`` = unknown.
        schema: the attribute schema the codes follow.
        alt_values: the test rows' alternative colours, as in :func:`par_label_mean_accuracy`.

    Returns:
        The same keys as :func:`par_label_mean_accuracy`, plus ``"majority_value"``.
    """
    return _majority_chance(
        par_label_mean_accuracy, train_values, test_values, schema, alt_values=alt_values
    )
