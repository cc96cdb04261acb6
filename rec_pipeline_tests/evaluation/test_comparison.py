from __future__ import annotations

import polars as pl
import pytest

from rec_pipeline.evaluation import (
    EvaluationOptions,
    comparison_table_md,
    evaluate_model,
    lower_is_better,
    results_frame,
    select_best,
)
from rec_pipeline_tests.evaluation.fakes import TableModel, ratings

RESULTS = {
    "biases": {"rmse": 0.95, "mae": 0.74, "ndcg@10": 0.10},
    "hybrid": {"rmse": 0.91, "mae": 0.75, "ndcg@10": 0.08},
    "mf": {"rmse": 0.99, "mae": 0.80, "ndcg@10": 0.12},
}


def _row(table: str, model: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {model} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_table_bolds_lowest_error_and_highest_ranking_value() -> None:
    table = comparison_table_md(RESULTS, metrics=("rmse", "mae", "ndcg@10"))
    assert _row(table, "hybrid")[0] == "**0.9100**"
    assert _row(table, "biases")[1] == "**0.7400**"
    assert _row(table, "mf")[2] == "**0.1200**"
    assert _row(table, "mf")[0] == "0.9900"
    assert table.splitlines()[0] == "| model | rmse | mae | ndcg@10 |"


def test_ties_at_display_precision_are_all_bold_and_missing_values_show_a_dash() -> None:
    table = comparison_table_md(
        {"a": {"rmse": 0.900001}, "b": {"rmse": 0.9}, "c": {"rmse": None}}, metrics=("rmse", "pearson")
    )
    assert _row(table, "a") == ["**0.9000**", "–"]
    assert _row(table, "b")[0] == "**0.9000**"
    assert _row(table, "c") == ["–", "–"]


def test_cross_validation_results_show_mean_and_std() -> None:
    cv = {"mean": {"rmse": 0.9}, "std": {"rmse": 0.01}, "protocol": "full(x)"}
    table = comparison_table_md({"mf": cv, "mean": {"rmse": 1.1}}, metrics=("rmse",))
    assert _row(table, "mf") == ["**0.9000 ± 0.0100**"]


def test_table_warns_when_models_were_ranked_under_different_protocols() -> None:
    mixed = {"a": {"rmse": 1.0, "protocol": "full(x)"}, "b": {"rmse": 1.0, "protocol": "sampled(y)"}}
    table = comparison_table_md(mixed)
    assert "protocols differ" in table
    same = comparison_table_md({"a": {"rmse": 1.0, "protocol": "full(x)"}})
    assert "Ranking protocol: full(x)" in same


def test_results_frame_has_one_typed_row_per_model_with_union_of_columns() -> None:
    frame = results_frame({**RESULTS, "cv": {"mean": {"rmse": 0.9, "pearson": 0.4}, "std": {"rmse": 0.02}}})
    assert frame.get_column("model").to_list() == ["biases", "hybrid", "mf", "cv"]
    assert frame.schema["rmse"] == pl.Float64
    assert frame.filter(pl.col("model") == "cv").get_column("rmse_std").item() == pytest.approx(0.02)
    assert frame.filter(pl.col("model") == "mf").get_column("pearson").item() is None


def test_results_frame_and_table_accept_evaluation_results_and_their_dicts() -> None:
    model = TableModel(["a", "b", "c"], {"u": [5.0, 1.0, 3.0]})
    result = evaluate_model(
        model,
        ratings([("u", "c", 3.0)]),
        ratings([("u", "a", 5.0), ("u", "b", 2.0)]),
        options=EvaluationOptions(ks=(1,)),
        candidates=model.item_ids,
    )
    frame = results_frame({"live": result, "loaded": result.to_dict()})
    assert frame.height == 2
    assert frame.schema["n_test"] == pl.Int64
    assert frame.get_column("rmse").to_list()[0] == frame.get_column("rmse").to_list()[1]
    assert "**1.0000**" in comparison_table_md({"live": result}, metrics=("hr@1",))


def test_select_best_minimizes_errors_and_maximizes_ranking_metrics() -> None:
    validation = {name: {f"val_{key}": value for key, value in metrics.items()} for name, metrics in RESULTS.items()}
    assert select_best(validation) == "hybrid"
    assert select_best(RESULTS, metric="ndcg@10") == "mf"
    assert select_best(RESULTS, metric="mae") == "biases"


def test_select_best_ignores_undefined_values_and_raises_when_none_defined() -> None:
    assert select_best({"a": {"pearson": None}, "b": {"pearson": 0.2}}, metric="pearson") == "b"
    with pytest.raises(KeyError):
        select_best(RESULTS, metric="val_rmse")


@pytest.mark.parametrize(
    ("metric", "lower"),
    [
        ("rmse", True),
        ("val_rmse", True),
        ("rmse_cold", True),
        ("mae", True),
        ("pearson", False),
        ("ndcg@10", False),
        ("coverage@10", False),
    ],
)
def test_metric_direction(metric: str, lower: bool) -> None:
    assert lower_is_better(metric) is lower
