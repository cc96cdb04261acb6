"""Rating-prediction accuracy: RMSE, MAE, Pearson, and RMSE by how much the training data knows an item.

The popularity segments exist because a content-aware (hybrid) model earns its keep on sparse and cold items;
an overall RMSE dominated by popular items hides that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SEGMENTS = ("cold", "few", "many")


def rating_metrics(
    y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray
) -> dict[str, float | None]:
    """RMSE, MAE and Pearson correlation between actual and predicted ratings, plus ``n`` (pairs compared).

    NaN-safe by construction rather than by filtering: ``pearson`` is ``None`` (not NaN) when it is undefined,
    i.e. fewer than two pairs or either side constant (a global-mean model predicts one value, so its
    correlation is undefined, not zero). With no pairs every metric is ``None``. Non-finite inputs raise,
    because a model emitting NaN is broken and silently dropping its pairs would flatter it.
    """
    actual = np.asarray(y_true, dtype=np.float64).ravel()
    predicted = np.asarray(y_pred, dtype=np.float64).ravel()
    if actual.shape != predicted.shape:
        raise ValueError(f"y_true has {actual.size} values but y_pred has {predicted.size}")
    bad = int((~np.isfinite(actual)).sum() + (~np.isfinite(predicted)).sum())
    if bad:
        raise ValueError(f"{bad} non-finite values in ratings or predictions")
    n = int(actual.size)
    if n == 0:
        return {"rmse": None, "mae": None, "pearson": None, "n": 0}
    error = predicted - actual
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "pearson": _pearson(actual, predicted),
        "n": n,
    }


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    # Exact constancy check: a constant column has zero variance and no defined correlation.
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    return float(np.clip((dx * dy).sum() / np.sqrt((dx**2).sum() * (dy**2).sum()), -1.0, 1.0))


def popularity_segments(train_counts: np.ndarray, few_max: int = 5) -> np.ndarray:
    """Label each test pair by its item's number of training ratings.

    ``"cold"``: the item has no training rating at all; ``"few"``: 1..``few_max`` ratings; ``"many"``: more.
    """
    counts = np.asarray(train_counts, dtype=np.int64)
    return np.where(counts == 0, "cold", np.where(counts <= few_max, "few", "many"))


def segment_rating_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, segments: np.ndarray
) -> dict[str, dict[str, float | None]]:
    """``rating_metrics`` per popularity segment; every segment is present (``n == 0`` when empty)."""
    actual, predicted, labels = np.asarray(y_true), np.asarray(y_pred), np.asarray(segments)
    return {segment: rating_metrics(actual[labels == segment], predicted[labels == segment]) for segment in SEGMENTS}
