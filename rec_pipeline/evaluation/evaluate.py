"""One call that measures a model on a split: rating accuracy, ranking quality, segments, scatter sample."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from rec_pipeline.evaluation.bootstrap import UserStatistics, user_statistics
from rec_pipeline.evaluation.options import EvaluationOptions
from rec_pipeline.evaluation.ranking_protocols import rank_model
from rec_pipeline.evaluation.rating_metrics import (
    SEGMENTS,
    popularity_segments,
    rating_metrics,
    segment_rating_metrics,
)
from rec_pipeline.evaluation.scoring_model import ScoringModel

# Pairs per predict() call: bounds the memory a model may allocate for one call on a large test split.
_PREDICT_CHUNK = 262_144


@dataclass(frozen=True)
class EvaluationResult:
    """Everything one evaluation produced.

    ``metrics`` is flat and JSON-ready: ``rmse``, ``mae``, ``pearson``, ``rmse_cold``/``rmse_few``/
    ``rmse_many``, then ``recall@K``, ``ndcg@K``, ``hr@K``, ``map@K``, ``coverage@K`` per K (``None`` where
    undefined). ``counts`` says how many pairs and users those numbers rest on. ``segments`` holds rmse/mae/n
    per popularity segment. ``scatter_actual``/``scatter_predicted`` are a seeded subsample of test pairs for
    a predicted-vs-actual plot. ``user_stats`` holds the per-user sums that bootstrap intervals resample.
    """

    protocol: str
    metrics: dict[str, float | None]
    counts: dict[str, int]
    segments: dict[str, dict[str, float | None]]
    options: EvaluationOptions
    scatter_actual: np.ndarray = field(repr=False)
    scatter_predicted: np.ndarray = field(repr=False)
    user_stats: UserStatistics | None = field(default=None, repr=False)

    def prefixed(self, prefix: str) -> dict[str, float | None]:
        """Metrics with a prefix, e.g. ``prefixed("val_")`` gives ``val_rmse`` for ``select_best``."""
        return {f"{prefix}{key}": value for key, value in self.metrics.items()}

    def to_dict(self, include_scatter: bool = False) -> dict[str, Any]:
        """JSON-ready summary (``comparison_table_md``/``results_frame`` accept it back)."""
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "metrics": dict(self.metrics),
            "counts": dict(self.counts),
            "segments": {name: dict(values) for name, values in self.segments.items()},
            "options": self.options.to_dict(),
        }
        if include_scatter:
            out["scatter"] = {
                "actual": self.scatter_actual.astype(float).tolist(),
                "predicted": self.scatter_predicted.astype(float).tolist(),
            }
        return out


def evaluate_model(
    model: ScoringModel,
    train: pl.DataFrame,
    test: pl.DataFrame,
    validation: pl.DataFrame | None = None,
    options: EvaluationOptions | None = None,
    logger: logging.Logger | None = None,
    candidates: Sequence[str] | None = None,
) -> EvaluationResult:
    """Measure ``model`` on ``test`` (frames with user_id, item_id, rating[, timestamp]).

    ``train`` (and ``validation``) define what each user has already rated, which items are cold, and which
    items must never be ranked; they are not used for fitting here. ``candidates`` (default: the items of
    ``train``) is what every model ranks. See ``ranking_protocols`` for the exact ranking protocol rules.
    """
    options = options or EvaluationOptions()
    for name, frame in (("train", train), ("test", test), ("validation", validation)):
        if frame is not None:
            missing = {"user_id", "item_id", "rating"} - set(frame.columns)
            if missing:
                raise ValueError(f"{name} frame lacks columns {sorted(missing)}")
    test = test.select(
        pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String), pl.col("rating").cast(pl.Float64)
    )
    actual = test.get_column("rating").to_numpy()
    predicted = _predict(model, test)
    overall = rating_metrics(actual, predicted)
    train_counts = (
        test.select("item_id")
        .join(
            train.group_by(pl.col("item_id").cast(pl.String)).len("n_train"),
            on="item_id",
            how="left",
            maintain_order="left",
        )
        .get_column("n_train")
        .fill_null(0)
        .to_numpy()
    )
    segment_labels = popularity_segments(train_counts, options.few_ratings_max)
    segments = segment_rating_metrics(actual, predicted, segment_labels)
    if logger is not None:
        logger.info("rating metrics on %d test pairs: rmse=%s mae=%s", overall["n"], overall["rmse"], overall["mae"])

    ranking = rank_model(model, train, test, validation, options, logger, candidates)
    test_users, user_of_pair = np.unique(test.get_column("user_id").to_numpy().astype(str), return_inverse=True)
    user_stats = user_statistics(test_users.tolist(), user_of_pair.ravel(), actual, predicted, segment_labels, ranking)

    metrics: dict[str, float | None] = {"rmse": overall["rmse"], "mae": overall["mae"], "pearson": overall["pearson"]}
    metrics.update({f"rmse_{name}": segments[name]["rmse"] for name in SEGMENTS})
    metrics.update(ranking.metrics)
    counts = {
        "n_test": int(test.height),
        "n_test_users": ranking.n_test_users,
        "n_users_evaluated": ranking.n_users_evaluated,
        "n_users_skipped": ranking.n_users_skipped,
        "n_relevant_dropped": ranking.n_relevant_dropped,
        "n_ranking_cases": ranking.n_cases,
        "n_catalog_items": len(model.item_ids),
        "n_candidates": ranking.n_candidates,
        "n_candidates_unscored": ranking.n_candidates_unscored,
        "n_coverage_users": ranking.n_coverage_users,
    }
    counts.update({f"n_test_{name}": int(segments[name]["n"] or 0) for name in SEGMENTS})
    scatter = _scatter_sample(test.height, options)
    return EvaluationResult(
        protocol=ranking.protocol,
        metrics=metrics,
        counts=counts,
        segments={name: {"rmse": seg["rmse"], "mae": seg["mae"], "n": seg["n"]} for name, seg in segments.items()},
        options=options,
        scatter_actual=actual[scatter].astype(np.float32),
        scatter_predicted=predicted[scatter].astype(np.float32),
        user_stats=user_stats,
    )


def _predict(model: ScoringModel, test: pl.DataFrame) -> np.ndarray:
    users = test.get_column("user_id").to_list()
    items = test.get_column("item_id").to_list()
    chunks = [
        np.asarray(
            model.predict(users[start : start + _PREDICT_CHUNK], items[start : start + _PREDICT_CHUNK]),
            dtype=np.float64,
        ).ravel()
        for start in range(0, len(users), _PREDICT_CHUNK)
    ]
    predicted = np.concatenate(chunks) if chunks else np.zeros(0)
    if predicted.size != len(users):
        raise ValueError(f"predict returned {predicted.size} values for {len(users)} pairs")
    return predicted


def _scatter_sample(n: int, options: EvaluationOptions) -> np.ndarray:
    """Sorted, seeded row indices: the same pairs for every model, so scatter plots are comparable."""
    size = min(n, options.scatter_points)
    if size == n:
        return np.arange(n)
    return np.sort(np.random.default_rng(options.seed).choice(n, size=size, replace=False))
