"""Evaluation assets: every model measured the same way on the same test split, and recommendations from the best."""

# No `from __future__ import annotations`: Dagster reads Config/resource types from the signature at runtime.
import json
from typing import Any, Literal

import dagster as dg
import numpy as np
import polars as pl

from rec_pipeline.assets.metadata import combined_check, md_table, merge_category_metadata
from rec_pipeline.assets.partitions import CATEGORY_PARTITIONS
from rec_pipeline.assets.training import MODEL_NAMES
from rec_pipeline.atomic import write_bytes, write_json, write_parquet
from rec_pipeline.paths import DataLayout
from rec_pipeline.plots import scatter_md
from rec_pipeline.recommend import item_titles
from rec_pipeline.resources import DataLake, step_config

EVALUATION = "evaluation"


class MetricsConfig(dg.Config):
    ks: list[int] = [10]
    protocol: Literal["full", "sampled"] = "full"
    n_negatives: int = 100
    relevance_threshold: float = 4.0
    seed: int = 0
    selection_metric: str = "val_rmse"  # how `recommendations` picks its model
    cv_folds: int = 0  # > 1: also k-fold cross-validate `cv_models` on all interactions (mean and std per metric)
    cv_models: list[str] = ["biases", "mf"]
    cv_epochs: int = 10


class RecommendationsConfig(dg.Config):
    n: int = 10
    model: str | None = None  # None: the model with the best validation score in model_metrics


def evaluate_category(layout: DataLayout, category: str, config: MetricsConfig, log: Any) -> dict[str, Any]:
    """Evaluate every saved model of the category; write metrics JSON/Parquet and the comparison table."""
    from rec_pipeline.evaluation import EvaluationOptions, comparison_table_md, evaluate_model, results_frame, select_best
    from rec_pipeline.models import load_model

    train = pl.read_parquet(layout.artifact(category, "splits/train.parquet"))
    validation = pl.read_parquet(layout.artifact(category, "splits/validation.parquet"))
    test = pl.read_parquet(layout.artifact(category, "splits/test.parquet"))
    options = EvaluationOptions(ks=tuple(config.ks), protocol=config.protocol, n_negatives=config.n_negatives,
                                relevance_threshold=config.relevance_threshold, seed=config.seed)
    results: dict[str, Any] = {}
    scatter: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in MODEL_NAMES:
        model_dir = layout.model_dir(category, name)
        if not (model_dir / "model.json").exists():
            log.warning(f"{category}: no saved model `{name}`: materialize model_{name} first; skipped")
            continue
        model = load_model(model_dir)
        result = evaluate_model(model, train, test, validation=validation, options=options, logger=log)
        training = json.loads((model_dir.parent / f"{name}.training.json").read_text())
        row = result.to_dict()
        # Validation RMSE (from training, with best weights restored) picks the model; test numbers only report.
        row["metrics"]["val_rmse"] = training.get("best_val_rmse")
        row["metrics"]["train_examples_per_s"] = training.get("history", {}).get("examples_per_second")
        results[name] = row
        scatter[name] = (result.scatter_actual, result.scatter_predicted)
        log.info(f"{category}/{name}: test RMSE {row['metrics'].get('rmse')}, NDCG@{options.ks[0]} {row['metrics'].get(f'ndcg@{options.ks[0]}')}")
    if not results:
        raise dg.Failure(f"{category}: no trained model to evaluate; materialize the training group first")
    try:
        best = select_best(results, config.selection_metric)
    except KeyError:
        log.warning(f"{category}: no model defines {config.selection_metric}; choosing by test rmse")
        best = select_best(results, "rmse")
    k = options.ks[0]
    table = comparison_table_md(results, metrics=("val_rmse", "rmse", "mae", "pearson", "rmse_few", "rmse_cold", f"ndcg@{k}", f"recall@{k}", f"hr@{k}", f"map@{k}", f"coverage@{k}"))
    metrics_dir = layout.artifact(category, "metrics")
    write_json({"protocol": options.protocol_name, "ks": list(config.ks), "best_model": best, "selection_metric": config.selection_metric,
                "models": results}, metrics_dir / "metrics.json")
    write_parquet(results_frame(results), metrics_dir / "metrics.parquet")
    if config.cv_folds > 1:
        cv = cross_validate_models(layout, category, config, options, log)
        write_json(cv, metrics_dir / "cross_validation.json")
        table += "\n\nCross-validation (" + str(config.cv_folds) + " folds, mean ± std):\n\n" + comparison_table_md(cv, metrics=("rmse", "mae", f"ndcg@{k}"))
    write_bytes((table + "\n").encode(), metrics_dir / "comparison.md")
    y_true, y_pred = scatter[best]
    return {"best": best, "table": table, "results": results, "scatter": (y_true, y_pred), "protocol": options.protocol_name}


def cross_validate_models(layout: DataLayout, category: str, config: MetricsConfig, options: Any, log: Any) -> dict[str, Any]:
    """k-fold CV (folds stratified by user) of the chosen models, each fold trained from scratch."""
    from rec_pipeline.evaluation import cross_validate
    from rec_pipeline.models import TrainingData, TrainOptions, create_model

    interactions = pl.read_parquet(layout.artifact(category, "interactions.parquet"))
    train_options = TrainOptions(epochs=config.cv_epochs, seed=config.seed)
    out = {}
    for name in config.cv_models:
        log.info(f"{category}: {config.cv_folds}-fold cross-validation of {name}")
        out[name] = cross_validate(
            lambda name=name: create_model(name),
            lambda model, train_fold, val_fold: model.fit(TrainingData(train_fold, val_fold), train_options),
            interactions, k=config.cv_folds, seed=config.seed, options=options,
        )
    return out


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS, group_name=EVALUATION, kinds={"numpy", "polars"}, code_version="1",
    deps=[f"model_{name}" for name in MODEL_NAMES], backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.eager(),
    description="RMSE, MAE, Pearson and ranking metrics (Recall/NDCG/HR/MAP@K, coverage) of every model on the test split.",
)
def model_metrics(context: dg.AssetExecutionContext, config: MetricsConfig, lake: DataLake) -> dg.MaterializeResult:
    per_category: dict[str, dict[str, Any]] = {}
    for category in context.partition_keys:
        outcome = evaluate_category(lake.layout, category, step_config(context, config, lake, category), context.log)
        y_true, y_pred = outcome["scatter"]
        best_row = outcome["results"][outcome["best"]]
        per_category[category] = {
            "best_model": outcome["best"],
            "best_test_rmse": best_row["metrics"].get("rmse"),
            "protocol": outcome["protocol"],
            "comparison": dg.MetadataValue.md(outcome["table"]),
            "predicted_vs_actual": dg.MetadataValue.md(scatter_md(y_true, y_pred, f"{outcome['best']}: predicted vs actual", "actual rating", "predicted rating", diagonal=True)),
            "metrics_path": dg.MetadataValue.path(str(lake.layout.artifact(category, "metrics/metrics.json"))),
        }
    return dg.MaterializeResult(metadata=merge_category_metadata(per_category))


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS, group_name=EVALUATION, kinds={"polars", "parquet"}, code_version="1",
    deps=[model_metrics], backfill_policy=dg.BackfillPolicy.single_run(), automation_condition=dg.AutomationCondition.eager(),
    check_specs=[dg.AssetCheckSpec("excludes_rated_items", asset="recommendations", description="No user is recommended an item they already rated; no duplicates.")],
    description="Top-N items per user from the best model (by validation score), excluding already-rated items, with titles.",
)
def recommendations(context: dg.AssetExecutionContext, config: RecommendationsConfig, lake: DataLake) -> dg.MaterializeResult:
    from rec_pipeline.models import load_model

    layout = lake.layout
    per_category: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        metrics = json.loads(layout.artifact(category, "metrics/metrics.json").read_text())
        name = config.model or metrics["best_model"]
        model = load_model(layout.model_dir(category, name))
        rated = pl.read_parquet(layout.artifact(category, "interactions.parquet"), columns=["user_id", "item_id"])
        exclude = {u: set(items) for u, items in rated.group_by("user_id").agg("item_id").iter_rows()}
        users = sorted(exclude)
        recs = model.recommend(users, config.n, exclude=exclude)
        titles = item_titles(layout, category)
        recs = recs.join(titles, on="item_id", how="left").sort("user_id", "rank")
        write_parquet(recs, layout.artifact(category, "recommendations.parquet"))
        write_json({"model": name, "n": config.n, "users": len(users)}, layout.artifact(category, "recommendations.json"))
        leaked = recs.join(rated, on=["user_id", "item_id"], how="inner").height
        duplicates = recs.height - recs.select("user_id", "item_id").unique().height
        outcomes[category] = (leaked == 0 and duplicates == 0, f"{leaked} already-rated, {duplicates} duplicates")
        coverage = recs["item_id"].n_unique() / max(1, len(model.item_ids))
        context.log.info(f"{category}: {recs.height:,} recommendations for {len(users):,} users from `{name}`")
        per_category[category] = {
            "model": name, "users": len(users), "rows": recs.height, "catalog_coverage": round(coverage, 4),
            "preview": dg.MetadataValue.md(md_table(recs.head(10).select("user_id", "rank", "item_id", pl.col("score").round(3), "title").to_dicts())),
            "path": dg.MetadataValue.path(str(layout.artifact(category, "recommendations.parquet"))),
        }
    return dg.MaterializeResult(metadata=merge_category_metadata(per_category), check_results=[combined_check("excludes_rated_items", outcomes, "recommendations")])

