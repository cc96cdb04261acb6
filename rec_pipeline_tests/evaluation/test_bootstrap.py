from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rec_pipeline.evaluation import (
    EvaluationOptions,
    EvaluationResult,
    compare_models,
    comparison_table_md,
    difference_table_md,
    evaluate_model,
)
from rec_pipeline.evaluation.bootstrap import bootstrap_samples, metric_value
from rec_pipeline_tests.evaluation.fakes import TableModel, ratings

ITEMS = [f"i{n:02d}" for n in range(40)]
USERS = [f"u{n:02d}" for n in range(80)]
METRICS = ("rmse", "mae", "pearson", "rmse_many", "ndcg@10", "recall@10", "hr@10", "map@10")


def _data() -> tuple[pl.DataFrame, pl.DataFrame, dict[str, dict[str, float]]]:
    """Every user rates 12 items: 8 in train, 4 in test; ``truth`` holds every rating."""
    rng = np.random.default_rng(3)
    train, test, truth = [], [], {}
    for user in USERS:
        chosen = rng.choice(len(ITEMS), 12, replace=False)
        stars = rng.integers(1, 6, 12).astype(float)
        truth[user] = {ITEMS[c]: s for c, s in zip(chosen, stars, strict=True)}
        train += [(user, ITEMS[c], s) for c, s in zip(chosen[:8], stars[:8], strict=True)]
        test += [(user, ITEMS[c], s) for c, s in zip(chosen[8:], stars[8:], strict=True)]
    return ratings(train), ratings(test), truth


def _oracle(truth: dict[str, dict[str, float]], noise: float, seed: int) -> TableModel:
    """Knows every rating (plus noise); never-rated items score lowest."""
    rng = np.random.default_rng(seed)
    rows = {user: [truth[user].get(item, 0.0) + rng.normal(0, noise) for item in ITEMS] for user in USERS}
    return TableModel(ITEMS, rows)


def _random(seed: int) -> TableModel:
    rng = np.random.default_rng(seed)
    return TableModel(ITEMS, {user: rng.uniform(1, 5, len(ITEMS)) for user in USERS})


@pytest.fixture(scope="module")
def evaluated() -> dict[str, EvaluationResult]:
    train, test, truth = _data()
    options = EvaluationOptions(ks=(10,))
    models = {"oracle": _oracle(truth, 0.3, 0), "twin": _oracle(truth, 0.3, 0), "random": _random(1)}
    return {name: evaluate_model(model, train, test, options=options) for name, model in models.items()}


def test_per_user_sums_reproduce_every_metric(evaluated: dict[str, EvaluationResult]) -> None:
    for result in evaluated.values():
        assert result.user_stats is not None
        for metric in METRICS:
            assert metric_value(result.user_stats, metric) == pytest.approx(result.metrics[metric], abs=1e-9), metric


def test_identical_models_are_tied_with_an_interval_of_zero(evaluated: dict[str, EvaluationResult]) -> None:
    stats = {name: result.user_stats for name, result in evaluated.items() if name != "random"}
    comparison = compare_models(stats, METRICS, n_resamples=200, seed=0)  # type: ignore[arg-type]
    for metric in METRICS:
        interval = comparison.difference("twin", "oracle", metric)
        assert interval.diff == 0 and interval.low == 0 and interval.high == 0 and interval.contains_zero
        assert comparison.tied_with_best("twin", metric) and comparison.tied_with_best("oracle", metric)


def test_a_clearly_better_model_is_not_tied(evaluated: dict[str, EvaluationResult]) -> None:
    stats = {name: result.user_stats for name, result in evaluated.items()}
    comparison = compare_models(stats, METRICS, n_resamples=200, seed=0)  # type: ignore[arg-type]
    assert comparison.best["ndcg@10"] in {"oracle", "twin"} and comparison.best["rmse"] in {"oracle", "twin"}
    for metric in ("rmse", "ndcg@10", "pearson"):
        interval = comparison.intervals["random"][metric]
        assert interval.contains_zero is False, metric
        assert not comparison.tied_with_best("random", metric)
    assert comparison.intervals["random"]["rmse"].low > 0  # errors: the worse model's difference is positive
    assert comparison.intervals["random"]["ndcg@10"].high < 0


def test_resamples_are_seeded_and_paired_on_the_same_users(evaluated: dict[str, EvaluationResult]) -> None:
    stats = {name: result.user_stats for name, result in evaluated.items()}
    first = bootstrap_samples(stats, ["ndcg@10"], n_resamples=60, seed=5)  # type: ignore[arg-type]
    again = bootstrap_samples(stats, ["ndcg@10"], n_resamples=60, seed=5)  # type: ignore[arg-type]
    other = bootstrap_samples(stats, ["ndcg@10"], n_resamples=60, seed=6)  # type: ignore[arg-type]
    assert np.array_equal(first["random"]["ndcg@10"], again["random"]["ndcg@10"])
    assert not np.array_equal(first["random"]["ndcg@10"], other["random"]["ndcg@10"])
    train, test, _ = _data()
    fewer = evaluate_model(_random(1), train, test.filter(pl.col("user_id") != USERS[0]))
    with pytest.raises(ValueError, match="same"):
        bootstrap_samples({"a": stats["random"], "b": fewer.user_stats}, ["rmse"])  # type: ignore[dict-item]


def test_tables_bold_every_tied_model_and_show_the_difference_intervals(evaluated: dict[str, EvaluationResult]) -> None:
    stats = {name: result.user_stats for name, result in evaluated.items()}
    comparison = compare_models(stats, ("rmse", "ndcg@10"), n_resamples=100, seed=0)  # type: ignore[arg-type]
    table = comparison_table_md(evaluated, metrics=("rmse", "ndcg@10", "coverage@10"), bootstrap=comparison)
    cells = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
        for line in table.splitlines()
        if line.startswith("| ") and "model" not in line
    }
    for name in ("oracle", "twin"):  # tied with each other on rmse and ndcg@10
        assert cells[name][0].startswith("**") and cells[name][1].startswith("**")
    assert not cells["random"][0].startswith("**") and not cells["random"][1].startswith("**")
    assert "without an interval (coverage@10)" in table
    differences = difference_table_md(comparison, ("rmse", "ndcg@10"))
    assert "rmse (vs oracle)" in differences and "| oracle | best | best |" in differences
    assert "+0.000 [+0.000, +0.000]" in differences
    payload = comparison.to_dict()
    assert payload["vs_best"]["random"]["ndcg@10"]["tied"] is False and payload["best"]["rmse"] == "oracle"
