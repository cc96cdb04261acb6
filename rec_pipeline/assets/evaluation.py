"""Evaluation assets: every model measured the same way (one candidate set, one tie-break order) on validation and
test, and on the held-out cold items (``cold_items``), with bootstrap intervals, and recommendations from the best
ranker on validation."""

# No `from __future__ import annotations`: Dagster reads Config/resource types from the signature at runtime.
import functools
from typing import Any, Literal

import dagster as dg
import numpy as np
import polars as pl

from rec_pipeline.assets.factory import GPU_POOL, category_asset, materialized
from rec_pipeline.assets.metadata import combined_check, md_table
from rec_pipeline.assets.training import held_out_items, warm
from rec_pipeline.evaluation.user_sample import DEFAULT_MAX_USERS
from rec_pipeline.models.registry import CATALOGUE, MODEL_NAMES, NESTED_MODELS
from rec_pipeline.paths import DataLayout
from rec_pipeline.plots import scatter_md
from rec_pipeline.recommend import unique_titles
from rec_pipeline.resources import Lake, step_config
from rec_pipeline.warehouse import Artifact
from rec_pipeline.warehouse_io import CategoryStore, Stored, Upstream, stored

EVALUATION = "evaluation"


class MetricsConfig(dg.Config):
    ks: list[int] = [10]
    protocol: Literal["full", "sampled"] = "full"
    n_negatives: int = 100
    relevance_threshold: float = 4.0
    seed: int = 0  # sampled negatives, tie-break order among equal scores, bootstrap resamples, evaluation users
    # Users evaluated: a seeded sample of this many (the same for every model and split) when more have held-out
    # ratings; None evaluates everyone. Ranking is O(users x items): at 50,000 users a metric's standard error is
    # ~0.002 already, while a 1M-user category would take hours per model (evaluation/user_sample.py).
    max_eval_users: int | None = DEFAULT_MAX_USERS
    # How `recommendations` picks its model: a metric of metrics.json, normally a val_ one (validation split, same
    # ranking protocol, training items excluded) so the test split stays a report. Lower wins for errors.
    selection_metric: str = "val_ndcg@10"
    bootstrap_resamples: int = 200  # paired bootstrap over users behind the intervals and ties; 0: no intervals
    cv_folds: int = 0  # > 1: also k-fold cross-validate `cv_models` on all interactions (mean and std per metric)
    cv_models: list[str] = ["biases", "mf"]
    cv_epochs: int = 10


class RecommendationsConfig(dg.Config):
    n: int = 10
    model: str | None = None  # None: the model model_metrics selected (MetricsConfig.selection_metric)
    seed: int = 0  # order among equal scores, as in evaluation (MetricsConfig.seed)


NESTING_METRIC = "val_rmse"


def _table_metrics(k: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(validation, test, cold-item protocol) metrics with bootstrap intervals; the table adds coverage@K, which has
    none (a property of the whole user set, see ``evaluation.bootstrap``). The cold ones are shown as ``rmse_cold``
    and ``ndcg_cold@K``."""
    return (
        ("rmse", f"ndcg@{k}"),
        ("rmse", "mae", "pearson", "rmse_few", f"ndcg@{k}", f"recall@{k}", f"hr@{k}", f"map@{k}"),
        ("rmse", f"ndcg@{k}"),
    )


MODEL_ASSETS = tuple(spec.asset for spec in CATALOGUE)
EVALUATION_INPUTS = ("splits", "cold_items", "interactions")  # and every model asset


def upstreams_at(
    layout: DataLayout, category: str, names: tuple[str, ...] = (*EVALUATION_INPUTS, *MODEL_ASSETS)
) -> dict[str, Upstream]:
    """``{asset: Upstream}`` of one category from a data root: what Dagster passes ``model_metrics``, for scripts and
    tests that evaluate outside Dagster."""
    return {name: stored(layout, name)[category] for name in names}


def evaluate_category(
    store: CategoryStore, inputs: dict[str, Upstream], config: MetricsConfig, log: Any
) -> dict[str, Any]:
    """Evaluate every saved model of the category (``inputs``: ``EVALUATION_INPUTS`` and ``model_<name>`` for each
    model) on validation, test and the cold items, with one candidate set per protocol for all; select the model
    for `recommendations`; write metrics JSON/Parquet and the comparison tables."""
    from rec_pipeline.evaluation import (
        EvaluationOptions,
        cold_candidates,
        cold_metric_name,
        cold_metrics,
        compare_models,
        comparison_table_md,
        default_candidates,
        difference_table_md,
        evaluate_cold_items,
        evaluate_model,
        results_frame,
        sample_users,
    )
    from rec_pipeline.models import load_model
    from rec_pipeline.models.artifacts import is_saved_model

    category = store.category
    splits, cold_items = inputs["splits"], inputs["cold_items"]
    # The warm splits (cold items held out), as the models were trained on; the cold items are measured apart.
    train, validation, test = (warm(splits, cold_items, name) for name in ("train", "validation", "test"))
    held_out = held_out_items(cold_items)
    has_cold = bool(held_out) and cold_items.exists(Artifact.COLD_INTERACTIONS)
    cold = cold_items.read(Artifact.COLD_INTERACTIONS) if has_cold else None
    users = sample_users({"validation": validation, "test": test, "cold": cold}, config.max_eval_users, config.seed)
    validation, test = users.required("validation"), users.required("test")
    cold = users.frames["cold"]
    log.info(f"{category}: evaluating on {users.describe()}")
    options = EvaluationOptions(
        ks=tuple(config.ks),
        protocol=config.protocol,
        n_negatives=config.n_negatives,
        relevance_threshold=config.relevance_threshold,
        seed=config.seed,
    )
    candidates = default_candidates(train)
    # Cold ranking: the held-out items among as many sampled warm items; the user's warm items are never ranked.
    candidates_cold = cold_candidates(held_out, candidates, config.seed) if cold is not None else []
    warm_history = pl.concat([validation, test], how="vertical_relaxed")
    results: dict[str, Any] = {}
    stats: dict[str, dict[str, Any]] = {"test": {}, "val": {}, "cold": {}}
    scatter: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    k = options.ks[0]
    for spec in CATALOGUE:
        name, saved = spec.name, inputs[spec.asset]
        model_dir = saved.model_dir
        training = saved.training()
        if not is_saved_model(model_dir):
            reason = training.get("skipped_reason") or f"materialize model_{name} first"
            log.warning(f"{category}: no saved model `{name}` ({reason}); skipped")
            continue
        model = load_model(model_dir)
        result = evaluate_model(
            model, train, test, validation=validation, options=options, logger=log, candidates=candidates
        )
        # Validation: the same protocol and candidates, the user's training items excluded; it picks the model.
        validated = evaluate_model(model, train, validation, options=options, candidates=candidates)
        row = result.to_dict()
        row["metrics"].update(validated.prefixed("val_"))
        if cold is not None:
            # Replaces the test split's own rmse_cold segment, which the splits leave empty (every test item is
            # trained).
            on_cold = evaluate_cold_items(model, train, cold, candidates_cold, warm_history, options)
            row["metrics"].update(cold_metrics(on_cold))
            row["counts"].update(
                {
                    "n_cold_ratings": on_cold.counts["n_test"],
                    "n_cold_users_evaluated": on_cold.counts["n_users_evaluated"],
                }
            )
            stats["cold"][name] = on_cold.user_stats
        row["metrics"]["train_examples_per_s"] = training.get("history", {}).get("examples_per_second")
        history = training.get("history", {})
        row["training"] = {
            "best_epoch": history.get("best_epoch"),
            "epochs_run": history.get("epochs_run"),
            "max_epochs": model.options.epochs if model.options else None,
            "curve_length": len(history.get("val_loss") or history.get("loss") or []),
        }
        results[name] = row
        stats["test"][name], stats["val"][name] = result.user_stats, validated.user_stats
        scatter[name] = (result.scatter_actual, result.scatter_predicted)
        log.info(
            f"{category}/{name}: test RMSE {row['metrics'].get('rmse')}, NDCG@{k} {row['metrics'].get(f'ndcg@{k}')}, "
            f"val NDCG@{k} {row['metrics'].get(f'val_ndcg@{k}')}"
        )
    if not results:
        raise dg.Failure(f"{category}: no trained model to evaluate; materialize the training group first")
    val_metrics, test_metrics, cold_table_metrics = _table_metrics(k)
    selection_metric = _selection_metric(
        results, [config.selection_metric, f"val_ndcg@{k}", "val_rmse", "rmse"], log, category
    )
    if selection_metric.startswith("val_") and selection_metric[4:] not in val_metrics and "@" in selection_metric:
        val_metrics = (*val_metrics, selection_metric[4:])
    comparison = None
    if config.bootstrap_resamples > 0:
        comparison = compare_models(stats["test"], test_metrics, config.bootstrap_resamples, config.seed).merged(
            compare_models(stats["val"], val_metrics, config.bootstrap_resamples, config.seed, prefix="val_")
        )
        if stats["cold"]:
            comparison = comparison.merged(
                compare_models(
                    stats["cold"], cold_table_metrics, config.bootstrap_resamples, config.seed, rename=cold_metric_name
                )
            )
    selection = select_model(results, selection_metric, comparison)
    best = selection["model"]
    columns = (
        *(f"val_{m}" for m in val_metrics[:2]),
        *test_metrics,
        *(cold_metric_name(m) for m in cold_table_metrics),
        f"coverage@{k}",
    )
    table = comparison_table_md(results, metrics=columns, bootstrap=comparison)
    if users.sampled:
        table += f"\nEvery model is measured on {users.describe()}, seed {config.seed}.\n"
    if cold is not None:
        n_cold = next(iter(results.values()))["counts"].get("n_cold_ratings", 0)
        table += (
            f"\nCold items (`rmse_cold`, `ndcg_cold@{k}`): {len(held_out):,} items with content held out of every "
            f"model's training; {n_cold:,} of their ratings, ranked among {len(candidates_cold):,} candidates (the "
            "cold items and as many sampled warm ones). Models that cannot score an unseen item use their "
            "item-agnostic fallback.\n"
        )
    table += (
        f"\nRecommendations use `{best}`: best {selection_metric} ("
        + ", ".join(f"{row['model']} {row['value']:.4f}" for row in selection["top"])
        + ").\n"
    )
    nesting = nesting_report(results, comparison)
    store.write(
        Artifact.METRICS,
        {
            "protocol": options.protocol_name,
            "ks": list(config.ks),
            "n_candidates": len(candidates),
            "evaluation_users": {"total": users.n_users, "evaluated": users.n_sampled, "seed": config.seed},
            "best_model": best,
            "cold": {
                "items": len(held_out),
                "interactions": cold.height if cold is not None else 0,
                "candidates": len(candidates_cold),
            },
            "selection_metric": selection_metric,
            "selection": selection,
            "bootstrap": comparison.to_dict() if comparison else None,
            "nesting": nesting,
            "models": results,
        },
    )
    store.write(Artifact.METRICS_TABLE, results_frame(results))
    if comparison is not None:
        table += (
            "\nDifference to the best model of each column, with its paired bootstrap "
            f"{comparison.level:.0%} interval (an interval containing 0 is a tie):\n\n"
            + difference_table_md(comparison, columns)
        )
    if config.cv_folds > 1:
        cv = cross_validate_models(inputs["interactions"], config, options, log)
        store.write(Artifact.CROSS_VALIDATION, cv)
        table += f"\n\nCross-validation ({config.cv_folds} folds, mean ± std):\n\n" + comparison_table_md(
            cv, metrics=("rmse", "mae", f"ndcg@{k}")
        )
    store.write(Artifact.COMPARISON, (table + "\n").encode())
    y_true, y_pred = scatter[best]
    return {
        "best": best,
        "table": table,
        "results": results,
        "scatter": (y_true, y_pred),
        "protocol": options.protocol_name,
        "selection": selection,
        "nesting": nesting,
        "n_candidates": len(candidates),
    }


def _selection_metric(results: dict[str, Any], preferred: list[str], log: Any, category: str) -> str:
    """The first metric of ``preferred`` that some model defines; says so when it is not the configured one."""
    for metric in dict.fromkeys(preferred):
        if any(row["metrics"].get(metric) is not None for row in results.values()):
            if metric != preferred[0]:
                log.warning(f"{category}: no model defines {preferred[0]}; selecting by {metric}")
            return metric
    raise dg.Failure(f"{category}: no model defines any of {preferred}; nothing to select by")


def select_model(results: dict[str, Any], metric: str, comparison: Any) -> dict[str, Any]:
    """The model with the best ``metric``, and why: the top 3 with their values and intervals against the best."""
    from rec_pipeline.evaluation import lower_is_better, select_best

    best = select_best(results, metric)
    defined = [
        (name, row["metrics"][metric]) for name, row in results.items() if row["metrics"].get(metric) is not None
    ]
    defined.sort(key=lambda pair: pair[1], reverse=not lower_is_better(metric))
    defined.sort(key=lambda pair: pair[0] != best)  # stable: the selected model first even on an exact tie
    top = []
    for name, value in defined[:3]:
        interval = comparison.intervals.get(name, {}).get(metric) if comparison is not None else None
        top.append(
            {"model": name, "value": float(value), "vs_best": interval.to_dict() if interval is not None else None}
        )
    return {"metric": metric, "model": best, "top": top}


def nesting_report(results: dict[str, Any], comparison: Any) -> list[dict[str, Any]]:
    """For each (model, contained baseline) pair: ok, violation (worse on validation, interval clear of 0) or why
    it is not judged (a model missing, or still improving when its epoch budget ran out: not "after training")."""
    rows = []
    for model, base in NESTED_MODELS:
        row: dict[str, Any] = {"model": model, "contains": base, "metric": NESTING_METRIC}
        if model not in results or base not in results:
            rows.append({**row, "verdict": "not judged: not evaluated"})
            continue
        value, base_value = results[model]["metrics"].get(NESTING_METRIC), results[base]["metrics"].get(NESTING_METRIC)
        training = results[model].get("training", {})
        still_improving = (
            training.get("curve_length", 0) > 1
            and training.get("max_epochs") is not None
            and training.get("epochs_run") == training.get("max_epochs") == training.get("best_epoch")
        )
        row.update(value=value, base_value=base_value)
        if value is None or base_value is None:
            verdict = "not judged: undefined"
        elif still_improving:
            verdict = f"not judged: still improving at its last epoch ({training['epochs_run']}); train longer"
        else:
            interval = comparison.difference(model, base, NESTING_METRIC) if comparison is not None else None
            row["diff"] = interval.to_dict() if interval is not None else {"diff": value - base_value}
            clearly_worse = value > base_value if interval is None or interval.low is None else interval.low > 0
            if clearly_worse:
                verdict = "violation: worse than the model it contains"
            else:
                verdict = "ok" if value <= base_value else "ok: worse, but within the bootstrap interval (noise)"
        rows.append({**row, "verdict": verdict})
    return rows


def cross_validate_models(
    stored_interactions: Upstream, config: MetricsConfig, options: Any, log: Any
) -> dict[str, Any]:
    """k-fold CV (folds stratified by user) of the chosen models on one category's interactions, each fold trained
    from scratch."""
    from rec_pipeline.evaluation import cross_validate
    from rec_pipeline.models import TrainingData, TrainOptions, create_model

    category = stored_interactions.category
    interactions = stored_interactions.read(Artifact.INTERACTIONS)
    train_options = TrainOptions(epochs=config.cv_epochs, seed=config.seed)
    out = {}

    def fit(model: Any, train_fold: pl.DataFrame, val_fold: pl.DataFrame) -> None:
        model.fit(TrainingData(train_fold, val_fold), train_options)

    for name in config.cv_models:
        log.info(f"{category}: {config.cv_folds}-fold cross-validation of {name}")
        out[name] = cross_validate(
            functools.partial(create_model, name),
            fit,
            interactions,
            k=config.cv_folds,
            seed=config.seed,
            options=options,
        )
    return out


@category_asset(
    ins=[*EVALUATION_INPUTS, *MODEL_ASSETS],
    group_name=EVALUATION,
    kinds={"numpy", "polars"},
    code_version="2",
    pool=GPU_POOL,  # loads and scores the Keras models (and trains them again when cross-validating)
    check_specs=[
        dg.AssetCheckSpec(
            "nested_models_not_worse",
            asset="model_metrics",
            blocking=False,
            description="MF contains biases, NeuMF and the hybrid contain MF, biases contain the global mean: "
            "after training none may be clearly worse on validation RMSE than what it contains.",
        )
    ],
    description="Every model on one candidate set (items seen in training): RMSE, MAE, Pearson, Recall/NDCG/HR/MAP@K "
    "and coverage on validation and test, RMSE and NDCG@K on the held-out cold items, paired bootstrap intervals "
    "against the best, and the model `recommendations` uses.",
)
def model_metrics(
    context: dg.AssetExecutionContext,
    config: MetricsConfig,
    splits: Stored,
    cold_items: Stored,
    interactions: Stored,
    lake: Lake,
    **models: Stored,
) -> dg.MaterializeResult:
    """``models``: one input per model of the catalogue (``model_<name>``)."""
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    nesting: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        store = lake.category(category)
        inputs = {
            "splits": splits[category],
            "cold_items": cold_items[category],
            "interactions": interactions[category],
            **{name: model[category] for name, model in models.items()},
        }
        outcome = evaluate_category(store, inputs, step_config(context, config, lake, category), context.log)
        fingerprints[category] = store.fingerprint("model_metrics")
        y_true, y_pred = outcome["scatter"]
        best_row = outcome["results"][outcome["best"]]
        selection = outcome["selection"]
        violations = [r for r in outcome["nesting"] if r["verdict"].startswith("violation")]
        nesting[category] = (
            not violations,
            "; ".join(
                f"{r['model']} worse than {r['contains']} ({r['value']:.4f} vs {r['base_value']:.4f})"
                for r in violations
            )
            or "no violation",
        )
        per_category[category] = {
            "best_model": outcome["best"],
            "selected_by": selection["metric"],
            "selection": dg.MetadataValue.md(_selection_md(selection)),
            "best_test_rmse": best_row["metrics"].get("rmse"),
            "protocol": outcome["protocol"],
            "candidates": outcome["n_candidates"],
            "comparison": dg.MetadataValue.md(outcome["table"]),
            "nesting": dg.MetadataValue.md(
                md_table(
                    [
                        {k: r.get(k) for k in ("model", "contains", "value", "base_value", "verdict")}
                        for r in outcome["nesting"]
                    ]
                )
            ),
            "predicted_vs_actual": dg.MetadataValue.md(
                scatter_md(
                    y_true,
                    y_pred,
                    f"{outcome['best']}: predicted vs actual",
                    "actual rating",
                    "predicted rating",
                    diagonal=True,
                )
            ),
            "metrics_path": dg.MetadataValue.path(str(store.path(Artifact.METRICS))),
        }
    check = combined_check("nested_models_not_worse", nesting, "model_metrics", severity=dg.AssetCheckSeverity.WARN)
    return materialized(context, per_category, fingerprints, [check])


def _selection_md(selection: dict[str, Any]) -> str:
    rows = []
    for row in selection["top"]:
        interval = row.get("vs_best") or {}
        ci = (
            "best"
            if row["model"] == selection["model"]
            else (
                f"{interval['diff']:+.4f} [{interval['low']:+.4f}, {interval['high']:+.4f}]"
                if interval.get("low") is not None
                else "–"
            )
        )
        rows.append({"model": row["model"], selection["metric"]: row["value"], "difference to best (95% CI)": ci})
    return md_table(rows)


@category_asset(
    ins=["model_metrics", "splits", "cold_items", "interactions", "items", *MODEL_ASSETS],
    group_name=EVALUATION,
    kinds={"polars", "parquet"},
    code_version="2",
    pool=GPU_POOL,  # loads a Keras model and scores every user with it
    check_specs=[
        dg.AssetCheckSpec(
            "excludes_rated_items",
            asset="recommendations",
            description="No user is recommended an item they already rated; no duplicates.",
        ),
        dg.AssetCheckSpec(
            "not_one_list",
            asset="recommendations",
            blocking=False,
            description="The recommendations name at least 2 x n distinct items: not (nearly) the same list for "
            "everybody.",
        ),
    ],
    description="Top-N items per user from the best ranker on validation (MetricsConfig.selection_metric), among the "
    "items seen in training and excluding already-rated items, with titles.",
)
def recommendations(
    context: dg.AssetExecutionContext,
    config: RecommendationsConfig,
    model_metrics: Stored,
    splits: Stored,
    cold_items: Stored,
    interactions: Stored,
    items: Stored,
    lake: Lake,
    **models: Stored,
) -> dg.MaterializeResult:
    """``models``: one input per model of the catalogue (``model_<name>``); the selected one is loaded."""
    from rec_pipeline.models import load_model

    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    outcomes: dict[str, tuple[bool, str]] = {}
    variety: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        store = lake.category(category)
        metrics = model_metrics[category].read_json(Artifact.METRICS)
        name = config.model or metrics["best_model"]
        selection = metrics.get("selection") or {}
        selected_by = (
            "RecommendationsConfig.model"
            if config.model
            else f"best {selection.get('metric', metrics.get('selection_metric'))}"
        )
        if f"model_{name}" not in models:
            raise dg.Failure(f"{category}: RecommendationsConfig.model {name!r} is not a model; models: {MODEL_NAMES}")
        model = load_model(models[f"model_{name}"][category].model_dir)
        # The candidate set of model_metrics: recommending what no model was evaluated on would be unmeasured.
        candidates = warm(splits[category], cold_items[category], "train")["item_id"].unique().to_list()
        rated = interactions[category].read(Artifact.INTERACTIONS, columns=["user_id", "item_id"])
        exclude = {u: set(items) for u, items in rated.group_by("user_id").agg("item_id").iter_rows()}
        users = sorted(exclude)
        recs = model.recommend(users, config.n, exclude=exclude, candidates=candidates, seed=config.seed)
        titles = unique_titles(items[category].read(Artifact.ITEMS, columns=["item_id", "title"]))
        recs = recs.join(titles, on="item_id", how="left").sort("user_id", "rank")
        distinct = recs["item_id"].n_unique()
        coverage = distinct / max(1, len(candidates))
        store.write(Artifact.RECOMMENDATIONS, recs)
        store.write(
            Artifact.RECOMMENDATIONS_INFO,
            {
                "model": name,
                "selected_by": selected_by,
                "n": config.n,
                "users": len(users),
                "distinct_items": distinct,
                "catalog_coverage": coverage,
            },
        )
        fingerprints[category] = store.fingerprint("recommendations")
        leaked = recs.join(rated, on=["user_id", "item_id"], how="inner").height
        duplicates = recs.height - recs.select("user_id", "item_id").unique().height
        outcomes[category] = (leaked == 0 and duplicates == 0, f"{leaked} already-rated, {duplicates} duplicates")
        # At least 2n distinct items (capped by what can exist): below that nearly everybody got the same list.
        needed = min(2 * config.n, len(candidates), recs.height)
        variety[category] = (
            distinct >= needed,
            f"{distinct:,} distinct items in {recs.height:,} recommendations from `{name}` "
            f"(at least {needed} expected)",
        )
        context.log.info(
            f"{category}: {recs.height:,} recommendations for {len(users):,} users from `{name}` ({selected_by}), "
            f"{distinct:,} distinct items"
        )
        per_category[category] = {
            "model": name,
            "selected_by": selected_by,
            "users": len(users),
            "rows": recs.height,
            "distinct_items": distinct,
            "catalog_coverage": round(coverage, 4),
            "candidates": len(candidates),
            "preview": dg.MetadataValue.md(
                md_table(
                    recs.head(10).select("user_id", "rank", "item_id", pl.col("score").round(3), "title").to_dicts()
                )
            ),
            "path": dg.MetadataValue.path(str(store.path(Artifact.RECOMMENDATIONS))),
        }
        if selection.get("top") and not config.model:
            per_category[category]["selection"] = dg.MetadataValue.md(_selection_md(selection))
    return materialized(
        context,
        per_category,
        fingerprints,
        [
            combined_check("excludes_rated_items", outcomes, "recommendations"),
            combined_check("not_one_list", variety, "recommendations", severity=dg.AssetCheckSeverity.WARN),
        ],
    )
