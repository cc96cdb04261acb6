"""The noise floor of a sample dump and the truth files saved beside it.

Observed ratings are ``clip(round(r* + N(0, sigma)), 1, 5)``, so the best any model can do is predict
``E[observed | r*]``, not ``r*``: rounding adds error and clipping removes some. The floor reported here is the
RMSE of the written (latest-per-pair) ratings against that expectation, i.e. what a perfect model would score.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtr

from rec_pipeline.atomic import write_json, write_parquet
from rec_pipeline.sample.world import (
    BIAS_SHARES,
    FACTOR_SHARES,
    N_STYLES,
    N_TOPICS,
    ReviewDraw,
    World,
    content_share,
)

RATING_LEVELS = np.arange(1, 6, dtype=np.float64)
FORMULA = (
    "r* = mu + b_u + b_i + p_u . q_i; q_i = topic_emb[topic_i] + style_emb[style_i] + residual_i; "
    "b_i = topic_bias[topic_i] + style_bias[style_i] + residual_i; "
    "observed = clip(round(r* + N(0, sigma)), 1, 5); the later copy of a duplicated (user, item) is the latest; "
    "which items a user reviews: P(i) ~ popularity_i * exp(choice_affinity * p_u . q_i), drawn without replacement "
    "from a popularity-drawn pool (choice_affinity 0: popularity alone)"
)


def rating_level_probabilities(true_score: np.ndarray, sigma: float) -> np.ndarray:
    """P(observed = k | r*) for k = 1..5, shape (n, 5), from the normal CDF at the rounding boundaries."""
    true_score = np.asarray(true_score, dtype=np.float64)
    if sigma == 0:
        observed = np.clip(np.floor(true_score + 0.5), 1, 5)
        return (observed[:, None] == RATING_LEVELS[None, :]).astype(np.float64)
    # Boundaries k +- 0.5 between levels; the outer levels absorb everything clipped into them.
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    cdf = ndtr((edges[None, :] - true_score[:, None]) / sigma)
    return np.diff(cdf, axis=1)


def expected_rating(true_score: np.ndarray, sigma: float) -> np.ndarray:
    """E[observed | r*]: the prediction of a model that knows the truth exactly."""
    return rating_level_probabilities(true_score, sigma) @ RATING_LEVELS


def expected_noise_floor(true_score: np.ndarray, sigma: float) -> float:
    """sqrt(mean Var[observed | r*]): the floor's expectation, free of the particular noise draw."""
    probs = rating_level_probabilities(true_score, sigma)
    mean = probs @ RATING_LEVELS
    var = probs @ RATING_LEVELS**2 - mean**2
    return float(np.sqrt(np.mean(var)))


def noise_floor_rmse(true_score: np.ndarray, observed: np.ndarray, sigma: float) -> float:
    """RMSE of the observed ratings against E[observed | r*]: the score of a perfect model on these reviews."""
    err = np.asarray(observed, dtype=np.float64) - expected_rating(true_score, sigma)
    return float(np.sqrt(np.mean(err**2)))


def item_truth_frame(world: World, item_ids: list[str]) -> pl.DataFrame:
    """One row per item: its content classes and true parameters, keyed by the id written in the dump."""
    return pl.DataFrame(
        {
            "item_id": item_ids,
            "topic": world.item_topic.astype(np.int32),
            "style": world.item_style.astype(np.int32),
            "bias": world.item_bias,
            "content_bias": world.item_content_bias,
            "factors": world.item_factors.tolist(),
            "image_state": world.item_image_state.astype(np.int32),
        },
        schema={
            "item_id": pl.String(),
            "topic": pl.Int32(),
            "style": pl.Int32(),
            "bias": pl.Float64(),
            "content_bias": pl.Float64(),
            "factors": pl.List(pl.Float64()),
            "image_state": pl.Int32(),
        },
    )


def user_truth_frame(world: World, user_ids: list[str]) -> pl.DataFrame:
    """One row per user: true bias, factors and how many distinct items the user reviewed."""
    return pl.DataFrame(
        {
            "user_id": user_ids,
            "bias": world.user_bias,
            "factors": world.user_factors.tolist(),
            "n_items_reviewed": world.user_review_counts.astype(np.int64),
        },
        schema={
            "user_id": pl.String(),
            "bias": pl.Float64(),
            "factors": pl.List(pl.Float64()),
            "n_items_reviewed": pl.Int64(),
        },
    )


def truth_summary(
    world: World, draw: ReviewDraw, counts: dict[str, Any], variants: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The truth JSON: spec, model, noise floor, the exact counts tests check the ingestion against and the
    planted variant families (item -> its asins) and coincidental copies (asin pairs sharing one review)."""
    spec = world.spec
    latest = draw.is_latest
    return {
        "spec": dataclasses.asdict(spec),
        "sigma": spec.sigma,
        "mu": world.mu,
        "formula": FORMULA,
        "n_topics": N_TOPICS,
        "n_styles": N_STYLES,
        "variance_shares": {"factors": FACTOR_SHARES, "bias": BIAS_SHARES},
        "realized_content_share": {
            "factors": content_share(world.item_factors, world.item_content_factors),
            "bias": content_share(world.item_bias, world.item_content_bias),
        },
        "noise_floor_rmse": noise_floor_rmse(draw.true_score[latest], draw.rating[latest], spec.sigma),
        "expected_noise_floor_rmse": expected_noise_floor(draw.true_score[latest], spec.sigma),
        "true_score_std": float(draw.true_score[latest].std()),
        "rating_mean": float(draw.rating[latest].mean()),
        "rating_histogram": {
            str(k): int(v) for k, v in zip(range(1, 6), np.bincount(draw.rating[latest], minlength=6)[1:], strict=True)
        },
        "counts": counts,
        "variants": variants or {"families": {}, "coincidences": []},
    }


def write_truth(
    truth_dir: Path,
    world: World,
    draw: ReviewDraw,
    item_ids: list[str],
    user_ids: list[str],
    counts: dict[str, Any],
    variants: dict[str, Any] | None = None,
) -> tuple[Path, Path, Path]:
    """Write ``<Cat>.json``, ``<Cat>_items.parquet`` and ``<Cat>_users.parquet`` atomically."""
    category = world.spec.category
    items = write_parquet(item_truth_frame(world, item_ids), truth_dir / f"{category}_items.parquet")
    users = write_parquet(user_truth_frame(world, user_ids), truth_dir / f"{category}_users.parquet")
    summary = write_json(truth_summary(world, draw, counts, variants), truth_dir / f"{category}.json")
    return summary, items, users
