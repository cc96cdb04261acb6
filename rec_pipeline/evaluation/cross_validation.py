"""k-fold cross-validation with folds stratified by user.

Stratifying by user (each user's ratings dealt round-robin over the folds, in seeded random order) keeps every
fold's test users known to the model trained on the other folds, as a random row split would not for light
users; a user with fewer ratings than folds appears in only that many test folds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import polars as pl

from rec_pipeline.evaluation.evaluate import evaluate_model
from rec_pipeline.evaluation.options import EvaluationOptions
from rec_pipeline.evaluation.scoring_model import ScoringModel

ModelT = TypeVar("ModelT", bound=ScoringModel)


def user_stratified_folds(interactions: pl.DataFrame, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) for every row of ``interactions``, in row order.

    Each user's rows are shuffled (seeded) and dealt round-robin starting at a random fold per user, so every
    user's ratings spread evenly over the folds (sizes differ by at most one per user) and users with fewer
    than ``k`` ratings do not all pile into fold 0.
    """
    if k < 2:
        raise ValueError("cross-validation needs k >= 2")
    n = interactions.height
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    _, codes = np.unique(interactions.get_column("user_id").cast(pl.String).to_numpy(), return_inverse=True)
    # Group rows by user in a random order within each user, then number them 0, 1, 2, ... per user.
    order = np.lexsort((rng.permutation(n), codes))
    sorted_codes = codes[order]
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - np.searchsorted(sorted_codes, sorted_codes, side="left")
    offsets = rng.integers(0, k, size=int(codes.max()) + 1)
    return (position + offsets[codes]) % k


def cross_validate(
    make_model: Callable[[], ModelT],
    fit: Callable[[ModelT, pl.DataFrame, pl.DataFrame], None],
    interactions: pl.DataFrame,
    k: int = 5,
    seed: int = 0,
    options: EvaluationOptions | None = None,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Train a fresh model per fold and report mean and standard deviation of every metric.

    For fold ``f`` the model is built by ``make_model()``, fitted by ``fit(model, train_fold, val_fold)`` on the
    other folds and evaluated on fold ``f`` with ``evaluate_model``. ``val_fold`` *is* the held-out fold: if
    ``fit`` early-stops on it the estimate is slightly optimistic, so pass a ``fit`` that ignores it (or splits
    its own validation off ``train_fold``) when a clean estimate matters.

    Returns ``{"k", "seed", "protocol", "n_interactions", "folds": [per-fold metrics and counts],
    "mean": {metric: value}, "std": {metric: value}}``; the standard deviation is the sample one (ddof=1) over
    folds where the metric is defined, ``None`` where fewer than two folds define it.
    """
    options = options or EvaluationOptions()
    folds = user_stratified_folds(interactions, k, seed)
    per_fold: list[dict[str, Any]] = []
    for fold in range(k):
        held_out = folds == fold
        train_fold = interactions.filter(pl.Series(~held_out))
        val_fold = interactions.filter(pl.Series(held_out))
        model = make_model()
        fit(model, train_fold, val_fold)
        result = evaluate_model(model, train_fold, val_fold, options=options)
        per_fold.append({"fold": fold, **result.metrics, **result.counts})
        if logger is not None:
            logger.info("fold %d/%d: %s", fold + 1, k, {key: result.metrics[key] for key in list(result.metrics)[:3]})
    metric_names = list(result.metrics) if k else []
    mean: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    for name in metric_names:
        values = [row[name] for row in per_fold if row[name] is not None and not math.isnan(row[name])]
        mean[name] = float(np.mean(values)) if values else None
        std[name] = float(np.std(values, ddof=1)) if len(values) >= 2 else None
    return {
        "k": k,
        "seed": seed,
        "protocol": options.protocol_name,
        "n_interactions": interactions.height,
        "folds": per_fold,
        "mean": mean,
        "std": std,
    }
