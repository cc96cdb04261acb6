"""The whole asset graph, materialized for real on a small generated sample, then read back through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rec_pipeline import cli
from rec_pipeline.automation import MAIN_JOB_NAME
from rec_pipeline.definitions import build_definitions
from rec_pipeline.demo import demo_ops_config
from rec_pipeline.models.registry import MODEL_NAMES
from rec_pipeline.paths import DataLayout
from rec_pipeline.sample import SampleSpec, write_sample

CATEGORY = "Tiny_Toys"


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dg.ExecuteInProcessResult]:
    root = tmp_path_factory.mktemp("e2e")
    write_sample(root, SampleSpec(category=CATEGORY, n_users=250, n_items=60, n_reviews=4000, image_size=32, seed=5))
    ops = demo_ops_config()
    for name, value in ops.items():
        if name.startswith("model_"):
            value["config"].update(epochs=2)
    ops["image_embeddings"]["config"].update(image_size=32, projection_dim=16)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("category", [CATEGORY])
    job = build_definitions(str(root)).resolve_job_def(MAIN_JOB_NAME)
    result = job.execute_in_process(
        partition_key=CATEGORY, instance=instance, run_config={"ops": ops}, raise_on_error=False
    )
    return root, result


@pytest.mark.slow
def test_every_asset_materializes_and_every_blocking_check_passes(
    materialized: tuple[Path, dg.ExecuteInProcessResult],
) -> None:
    _, result = materialized
    assert result.success
    keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {
        "raw_reviews",
        "raw_items",
        "interactions",
        "splits",
        "item_text",
        "word2vec_model",
        "item_text_vectors",
        "item_images",
        "image_embeddings",
        "model_metrics",
        "recommendations",
    } <= keys
    assert {f"model_{m}" for m in MODEL_NAMES} <= keys
    checks = {
        (
            e.asset_check_evaluation_data.asset_key.to_user_string(),
            e.asset_check_evaluation_data.check_name,
        ): e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    failed = [k for k, ok in checks.items() if not ok]
    assert not failed, failed
    assert ("raw_reviews", "input_complete") in checks and ("recommendations", "excludes_rated_items") in checks


@pytest.mark.slow
def test_sample_dirt_is_counted_not_lost(materialized: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    root, _ = materialized
    truth = json.loads((root / "sample_truth" / f"{CATEGORY}.json").read_text())
    report = json.loads(DataLayout(root).artifact(CATEGORY, "raw_reviews.report.json").read_text())["report"]
    dirt = truth["counts"]["dirt"]
    assert report["empty_lines"] == dirt["empty_line"]
    assert sum(report["rejected"].values()) == sum(v for k, v in dirt.items() if k != "empty_line")
    assert report["rows_out"] + sum(report["rejected"].values()) + report["empty_lines"] == report["lines"]


@pytest.mark.slow
def test_metrics_cover_every_model_and_the_bias_baseline_beats_the_mean(
    materialized: tuple[Path, dg.ExecuteInProcessResult],
) -> None:
    root, _ = materialized
    metrics = json.loads(DataLayout(root).artifact(CATEGORY, "metrics/metrics.json").read_text())
    assert set(metrics["models"]) == set(MODEL_NAMES)
    rmse = {name: row["metrics"]["rmse"] for name, row in metrics["models"].items()}
    assert rmse["biases"] < rmse["global_mean"]
    assert metrics["best_model"] in MODEL_NAMES and metrics["protocol"].startswith("full")


@pytest.mark.slow
def test_recommendations_exclude_rated_items_and_the_cli_shows_them(
    materialized: tuple[Path, dg.ExecuteInProcessResult], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = materialized
    layout = DataLayout(root)
    recs = pl.read_parquet(layout.artifact(CATEGORY, "recommendations.parquet"))
    rated = pl.read_parquet(layout.artifact(CATEGORY, "interactions.parquet"))
    assert recs.join(rated, on=["user_id", "item_id"], how="inner").height == 0
    assert recs.select("user_id", "item_id").unique().height == recs.height
    user = recs["user_id"][0]
    assert cli.main(["--data-dir", str(root), "recommend", "--category", CATEGORY, "--user", user, "--n", "5"]) == 0
    out = capsys.readouterr().out
    assert "Top-rated history" in out and "Top 5 recommendations" in out
    assert cli.main(["--data-dir", str(root), "summary", "--category", CATEGORY]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["assets"]["interactions"]["rows"] == rated.height
    assert summary["assets"]["raw_reviews"]["rejected"] > 0 and "metrics" in summary


@pytest.mark.slow
def test_cross_validation_and_a_user_sample(
    materialized: tuple[Path, dg.ExecuteInProcessResult], tmp_path: Path
) -> None:
    """Cross-validation reports mean and std; ``max_eval_users`` measures every model on one seeded sample of users
    and says so. Written to a root of its own, so the shared run's metrics stay as the pipeline wrote them."""
    from rec_pipeline.assets.evaluation import MetricsConfig, evaluate_category, upstreams_at
    from rec_pipeline.warehouse_io import CategoryStore

    root, _ = materialized
    layout, out = DataLayout(root), DataLayout(tmp_path)
    outcome = evaluate_category(
        CategoryStore(out, CATEGORY),
        upstreams_at(layout, CATEGORY),
        MetricsConfig(cv_folds=3, cv_models=["biases"], cv_epochs=1, max_eval_users=25),
        _Log(),
    )
    cv = json.loads(out.artifact(CATEGORY, "metrics/cross_validation.json").read_text())
    assert cv["biases"]["k"] == 3 and len(cv["biases"]["folds"]) == 3
    assert cv["biases"]["std"]["rmse"] >= 0 and 0 < cv["biases"]["mean"]["rmse"] < 2
    assert "Cross-validation (3 folds" in outcome["table"]
    assert "Cross-validation" in out.artifact(CATEGORY, "metrics/comparison.md").read_text()
    metrics = json.loads(out.artifact(CATEGORY, "metrics/metrics.json").read_text())
    users = metrics["evaluation_users"]
    assert users["evaluated"] == 25 < users["total"] and "seeded sample of 25 of" in outcome["table"]
    for row in metrics["models"].values():
        assert row["counts"]["n_test_users"] <= 25


class _Log:
    def info(self, *_: object) -> None: ...

    def warning(self, *_: object) -> None: ...


@pytest.mark.slow
def test_keras_models_are_tuned_on_validation_and_say_how(materialized: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    """Each searchable Keras model reports its chosen values and one table row per candidate; the frozen
    reproduction of a published network and the closed-form models are not searched."""
    from rec_pipeline.models.search import DEFAULT_SPACES, SEARCHABLE_MODELS

    _, result = materialized
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    for name in SEARCHABLE_MODELS:
        entry = metadata[f"model_{name}"]
        table = entry["search_table"].value
        rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
        assert len(rows) == DEFAULT_SPACES[name].max_candidates, (name, table)
        assert [line.split("|")[-2].strip() for line in rows].count("True") == 1, table  # one chosen row
        assert "search_chosen" in entry
    assert "search_table" not in metadata["model_hybrid_seed000"]
    assert "search_table" not in metadata["model_biases"]
