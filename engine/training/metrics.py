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


def pr_auc(labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the precision-recall curve as average precision: the mean, over positives, of
    the precision at each positive's score (tied scores form one step, as in scikit-learn's
    ``average_precision_score``). NaN without positives."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    positives = float((y == 1).sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    true_pos = np.cumsum(y_sorted)[last_of_tie]
    predicted = last_of_tie + 1.0
    recall = true_pos / positives
    precision = true_pos / predicted
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def calibration_table(labels: Sequence[float] | np.ndarray, probabilities: Sequence[float] | np.ndarray,
                      bins: int = 10) -> list[dict[str, float]]:
    """Rows per equal-width probability bin ``[lower, upper)`` (the last bin includes 1): how many
    rows, their mean predicted probability and the observed rate of 1s. Empty bins are left out."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if n:
            rows.append({"lower": b / bins, "upper": (b + 1) / bins, "rows": n,
                         "mean_predicted": float(p[mask].mean()), "observed_rate": float(y[mask].mean())})
    return rows


def binary_metrics(labels: Sequence[float] | np.ndarray, probabilities: Sequence[float] | np.ndarray,
                   threshold: float = 0.5) -> dict[str, float]:
    """AUC, PR-AUC, logloss, and at ``threshold`` (predict 1 when p >= threshold) accuracy,
    precision, recall and F1; plus rows and positives. Precision and F1 are 0 with no
    predicted positives."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    predicted = p >= threshold
    actual = y == 1
    tp = float((predicted & actual).sum())
    fp = float((predicted & ~actual).sum())
    fn = float((~predicted & actual).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"auc": roc_auc(y, p), "pr_auc": pr_auc(y, p), "logloss": logloss(y, p),
            "accuracy": float((predicted == actual).mean()), "precision": precision,
            "recall": recall, "f1": f1, "rows": float(y.size), "positives": float(actual.sum())}


def regression_metrics(labels: Sequence[float] | np.ndarray,
                       predictions: Sequence[float] | np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² (1 - residual / total sum of squares; NaN for a constant label)."""
    y = np.asarray(labels, dtype=np.float64)
    yhat = np.asarray(predictions, dtype=np.float64)
    if y.shape != yhat.shape or y.size == 0:
        raise ValueError(f"regression metrics need two non-empty arrays of one length, got {y.shape} "
                         f"and {yhat.shape}")
    residual = y - yhat
    total = float(((y - y.mean()) ** 2).sum())
    return {"rmse": float(np.sqrt(np.mean(residual ** 2))), "mae": float(np.mean(np.abs(residual))),
            "r2": 1.0 - float((residual ** 2).sum()) / total if total else float("nan"),
            "rows": float(y.size)}


def evaluate(task: str, labels: Sequence[float] | np.ndarray, predictions: Sequence[float] | np.ndarray,
             threshold: float = 0.5, prefix: str = "") -> tuple[dict[str, float], dict[str, object]]:
    """(metrics, details) of one side: ``binary_metrics`` or ``regression_metrics`` with keys
    prefixed by ``prefix``; details hold the calibration table of a binary model."""
    if task == "binary":
        metrics = binary_metrics(labels, predictions, threshold)
        details: dict[str, object] = {f"{prefix}calibration": calibration_table(labels, predictions)}
    else:
        metrics, details = regression_metrics(labels, predictions), {}
    return {f"{prefix}{k}": v for k, v in metrics.items()}, details
