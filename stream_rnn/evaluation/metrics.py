"""Ranking metrics computed exactly from scores and binary labels (ties handled)."""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "average_precision"]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability a positive outranks a negative (ties 1/2).

    NaN when only one class is present.

    Examples
    --------
    >>> print(f"{roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]):.2f}")
    0.75
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average ranks over ties so tied pairs count one half.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: mean of the precision at each positive, ranking by score
    (tied scores enter together, as scikit-learn's step-wise definition does).

    Examples
    --------
    >>> print(f"{average_precision([0, 1, 0, 1], [0.1, 0.9, 0.8, 0.3]):.3f}")
    0.833
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    tp = np.cumsum(y_sorted)
    # Only the last index of each run of tied scores is a threshold.
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp_at = tp[last]
    seen = np.flatnonzero(last) + 1
    precision = tp_at / seen
    recall_step = np.diff(np.r_[0, tp_at]) / n_pos
    return float(np.sum(precision * recall_step))
