"""Evaluation metrics, pure functions on arrays (method §6): no model in sight.

:mod:`~cerberus.evaluation.metrics.ranking` ranks a gallery per query (reID, APS, their chance
levels); :mod:`~cerberus.evaluation.metrics.par` scores attribute predictions three ways, each with
its majority-answer baseline; :mod:`~cerberus.evaluation.metrics.verification` turns same /
different identity pairs into a ROC and thresholds at chosen false-positive rates.
"""

from cerberus.evaluation.metrics.par import (
    binary_labels,
    par_accuracy,
    par_label_majority_chance,
    par_label_mean_accuracy,
    par_majority_chance,
    par_official_accuracy,
    par_official_majority_chance,
)
from cerberus.evaluation.metrics.ranking import (
    DEFAULT_MEMORY_BUDGET,
    aps_chance,
    aps_metrics,
    aps_queries,
    reid_chance,
    reid_metrics,
)
from cerberus.evaluation.metrics.verification import (
    DEFAULT_FPRS,
    DEFAULT_MAX_PAIRS,
    Pairs,
    operating_points,
    pair_similarities,
    rates_at_threshold,
    roc_auc,
    roc_curve,
    sample_pairs,
    threshold_at_fpr,
)

__all__ = [
    "DEFAULT_FPRS",
    "DEFAULT_MAX_PAIRS",
    "Pairs",
    "operating_points",
    "pair_similarities",
    "rates_at_threshold",
    "roc_auc",
    "roc_curve",
    "sample_pairs",
    "threshold_at_fpr",
    "DEFAULT_MEMORY_BUDGET",
    "aps_chance",
    "aps_metrics",
    "aps_queries",
    "binary_labels",
    "par_accuracy",
    "par_label_majority_chance",
    "par_label_mean_accuracy",
    "par_majority_chance",
    "par_official_accuracy",
    "par_official_majority_chance",
    "reid_chance",
    "reid_metrics",
]
