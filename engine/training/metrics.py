"""Binary-classification metrics as small pure functions, the reference both trainers agree with.

``PROBABILITY_EPS`` is the clipping every logloss in lakescore uses (the Spark trainer computes
the same formula with DataFrame expressions), so a probability of exactly 0 or 1 never yields an
infinite loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PROBABILITY_EPS = 1e-15


def logloss(labels: Sequence[float] | np.ndarray, probabilities: Sequence[float] | np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 ``labels`` under ``probabilities`` of class 1,
    with probabilities clipped to ``[eps, 1 - eps]``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"logloss needs two non-empty arrays of one length, got {y.shape} and {p.shape}")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def roc_auc(labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with average ranks for ties): the probability
    that a random positive scores above a random negative. NaN when one class is absent."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    positives = int((y == 1).sum())
    negatives = int(y.size - positives)
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average rank per group of tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [s.size]])
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    rank_sum = ranks[y == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))
