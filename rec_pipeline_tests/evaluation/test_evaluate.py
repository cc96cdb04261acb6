from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from rec_pipeline.evaluation import EvaluationOptions, ScoringModel, evaluate_model
from rec_pipeline_tests.evaluation.fakes import TableModel, ratings

ITEMS = ["hot", "rare", "x1", "x2", "x3", "x4", "x5", "x6"]


def _data() -> tuple[TableModel, pl.DataFrame, pl.DataFrame]:
    # "hot" has 6 training ratings (many), "rare" has 1 (few), "new" has none and is outside the catalogue (cold).
    train = ratings([(f"t{n}", "hot", 4.0) for n in range(6)] + [("t0", "rare", 2.0)])
    model = TableModel(ITEMS, {"u1": [4.5, 2.0, 1, 1, 1, 1, 1, 1], "u2": [3.0, 5.0, 1, 1, 1, 1, 1, 1]}, fallback=3.0)
    test = ratings([("u1", "hot", 5.0), ("u1", "rare", 1.0), ("u2", "new", 5.0), ("u2", "rare", 5.0)])
    return model, train, test


def test_table_model_satisfies_the_scoring_protocol() -> None:
    assert isinstance(_data()[0], ScoringModel)


def test_rating_metrics_and_popularity_segments_use_the_model_predictions() -> None:
    model, train, test = _data()
    result = evaluate_model(model, train, test, options=EvaluationOptions(ks=(1,)))
    errors = np.array([4.5 - 5.0, 2.0 - 1.0, 3.0 - 5.0, 5.0 - 5.0])
    assert result.metrics["rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)))
    assert result.metrics["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert result.metrics["rmse_cold"] == pytest.approx(2.0)
    assert result.metrics["rmse_few"] == pytest.approx(np.sqrt((1.0 + 0.0) / 2))
    assert result.metrics["rmse_many"] == pytest.approx(0.5)
    assert (result.counts["n_test_cold"], result.counts["n_test_few"], result.counts["n_test_many"]) == (1, 2, 1)


def test_result_reports_counts_protocol_and_ranking_metrics() -> None:
    model, train, test = _data()
    result = evaluate_model(model, train, test, options=EvaluationOptions(ks=(1,)))
    assert result.counts["n_test"] == 4
    assert result.counts["n_test_users"] == 2
    # u1: "hot" relevant and ranked first; u2: "rare" relevant and first, "new" dropped (not in catalogue).
    assert result.counts["n_users_evaluated"] == 2
    assert result.counts["n_relevant_dropped"] == 1
    assert result.metrics["hr@1"] == 1.0
    assert result.protocol == result.options.protocol_name


def test_scatter_sample_is_seeded_bounded_and_aligned_with_predictions() -> None:
    rng = np.random.default_rng(0)
    items = [f"i{n}" for n in range(20)]
    model = TableModel(items, {f"u{n}": rng.uniform(1, 5, 20) for n in range(10)})
    pairs = [(f"u{n}", items[j], float(rng.integers(1, 6))) for n in range(10) for j in range(20)]
    options = EvaluationOptions(scatter_points=15, ks=(3,))
    first = evaluate_model(model, ratings(pairs[:100]), ratings(pairs[100:]), options=options)
    second = evaluate_model(model, ratings(pairs[:100]), ratings(pairs[100:]), options=options)
    assert first.scatter_actual.shape == first.scatter_predicted.shape == (15,)
    assert np.array_equal(first.scatter_actual, second.scatter_actual)
    test = ratings(pairs[100:])
    predicted_all = model.predict(test["user_id"].to_list(), test["item_id"].to_list()).astype(np.float32)
    all_pairs = set(zip(test["rating"].to_list(), predicted_all.tolist(), strict=True))
    assert set(zip(first.scatter_actual.tolist(), first.scatter_predicted.tolist(), strict=True)) <= all_pairs


def test_to_dict_is_json_ready_and_prefixed_names_metrics_for_validation() -> None:
    model, train, test = _data()
    result = evaluate_model(model, train, test)
    decoded = json.loads(json.dumps(result.to_dict(include_scatter=True)))
    assert decoded["metrics"]["rmse"] == pytest.approx(result.metrics["rmse"])
    assert len(decoded["scatter"]["actual"]) == 4
    assert result.prefixed("val_")["val_rmse"] == result.metrics["rmse"]


def test_frames_missing_a_required_column_are_rejected() -> None:
    model, train, test = _data()
    with pytest.raises(ValueError, match="rating"):
        evaluate_model(model, train, test.drop("rating"))


def test_empty_test_split_gives_undefined_metrics_instead_of_errors() -> None:
    model, train, _ = _data()
    result = evaluate_model(model, train, ratings([]), options=EvaluationOptions(protocol="sampled"))
    assert all(value is None for value in result.metrics.values())
    assert result.counts["n_test"] == 0 and result.counts["n_users_evaluated"] == 0
