"""Interaction assets: deduplicated k-core ``interactions`` and the train/validation/test ``splits``."""

from typing import Any, Literal

import dagster as dg
import polars as pl

from rec_pipeline.assets.metadata import combined_check, md_table, merge_category_metadata
from rec_pipeline.assets.partitions import CATEGORY_PARTITIONS
from rec_pipeline.atomic import write_json, write_parquet
from rec_pipeline.interactions.dedup import latest_per_pair
from rec_pipeline.interactions.kcore import is_kcore, kcore
from rec_pipeline.interactions.splits import SplitOptions, check_splits, split_interactions
from rec_pipeline.interactions.stats import interaction_stats
from rec_pipeline.plots import bar_md
from rec_pipeline.resources import DataLake
from rec_pipeline.schema import RATING_MAX, RATING_MIN


class InteractionsConfig(dg.Config):
    k: int = 5  # every kept user and item has at least k ratings after deduplication


class SplitsConfig(dg.Config):
    method: Literal["temporal", "random"] = "temporal"
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS,
    group_name="interactions",
    kinds={"polars", "parquet"},
    code_version="1",
    deps=["raw_reviews"],
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec("ratings_in_range", asset="interactions"),
        dg.AssetCheckSpec("no_duplicate_pairs", asset="interactions"),
        dg.AssetCheckSpec("kcore_invariant", asset="interactions", description="Every user and item has at least k ratings."),
    ],
    description="One rating per (user, item), the latest, filtered to a true k-core (iterated to a fixed point).",
)
def interactions(context: dg.AssetExecutionContext, config: InteractionsConfig, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.layout
    per_category: dict[str, dict[str, Any]] = {}
    in_range: dict[str, tuple[bool, str]] = {}
    no_dups: dict[str, tuple[bool, str]] = {}
    core_ok: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        reviews = pl.scan_parquet(layout.artifact(category, "raw_reviews.parquet"))
        rows_in = reviews.select(pl.len()).collect().item()
        deduped = latest_per_pair(reviews).collect()
        result = kcore(deduped, config.k)
        frame = result.frame
        write_parquet(frame, layout.artifact(category, "interactions.parquet"))
        stats = interaction_stats(frame)
        context.log.info(f"{category}: {rows_in:,} reviews -> {deduped.height:,} unique pairs -> {frame.height:,} in the {config.k}-core ({result.iterations} passes)")
        per_category[category] = {
            "rows_in": rows_in,
            "duplicates_removed": rows_in - deduped.height,
            "removed_by_kcore": deduped.height - frame.height,
            "rows_out": dg.MetadataValue.int(frame.height),
            "kcore_k": config.k,
            "kcore_iterations": result.iterations,
            "users": stats["users"],
            "items": stats["items"],
            "density": stats["density"],
            "rating_mean": stats["rating_mean"],
            "rating_histogram": dg.MetadataValue.md(bar_md(list(stats["rating_histogram"]), list(stats["rating_histogram"].values()), "ratings")),
            "path": dg.MetadataValue.path(str(layout.artifact(category, "interactions.parquet"))),
        }
        if frame.height == 0:
            context.log.warning(f"{category}: the {config.k}-core is empty; lower k or ingest a larger dump")
        out_of_range = frame.filter((pl.col("rating") < RATING_MIN) | (pl.col("rating") > RATING_MAX)).height
        dup_pairs = frame.height - frame.select("user_id", "item_id").unique().height
        in_range[category] = (out_of_range == 0, f"{out_of_range} ratings outside [{RATING_MIN}, {RATING_MAX}]")
        no_dups[category] = (dup_pairs == 0, f"{dup_pairs} duplicate pairs")
        core_ok[category] = (is_kcore(frame, config.k), f"k={config.k}")
    return dg.MaterializeResult(
        metadata=merge_category_metadata(per_category),
        check_results=[
            combined_check("ratings_in_range", in_range, "interactions"),
            combined_check("no_duplicate_pairs", no_dups, "interactions"),
            combined_check("kcore_invariant", core_ok, "interactions"),
        ],
    )


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS,
    group_name="interactions",
    kinds={"polars", "parquet"},
    code_version="1",
    deps=[interactions],
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec("disjoint", asset="splits", description="No (user, item) pair in two splits."),
        dg.AssetCheckSpec("evaluated_known_to_training", asset="splits", description="Every validation/test user and item appears in training."),
    ],
    description="Seeded train/validation/test splits: temporal leave-last-out (default) or random stratified by user.",
)
def splits(context: dg.AssetExecutionContext, config: SplitsConfig, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.layout
    options = SplitOptions(config.method, config.validation_fraction, config.test_fraction, config.seed)
    per_category: dict[str, dict[str, Any]] = {}
    disjoint: dict[str, tuple[bool, str]] = {}
    known: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        frame = pl.read_parquet(layout.artifact(category, "interactions.parquet"))
        result = split_interactions(frame, options)
        for name, part in result.as_dict().items():
            write_parquet(part, layout.artifact(category, f"splits/{name}.parquet"))
        write_json({"method": config.method, "seed": config.seed, "moved_to_train": result.moved_to_train}, layout.artifact(category, "splits/split.json"))
        problems = check_splits(result)
        overlap = [p for p in problems if "in both" in p]
        unknown = [p for p in problems if "unknown" in p]
        disjoint[category] = (not overlap, "; ".join(overlap) or "disjoint")
        known[category] = (not unknown, "; ".join(unknown) or "all known")
        sizes = {name: part.height for name, part in result.as_dict().items()}
        per_category[category] = {
            "method": config.method,
            "seed": config.seed,
            **{f"{name}_rows": n for name, n in sizes.items()},
            "moved_to_train": result.moved_to_train,
            "sizes": dg.MetadataValue.md(md_table([{"split": k, "rows": v, "users": result.as_dict()[k]["user_id"].n_unique()} for k, v in sizes.items()])),
        }
    return dg.MaterializeResult(
        metadata=merge_category_metadata(per_category),
        check_results=[
            combined_check("disjoint", disjoint, "splits"),
            combined_check("evaluated_known_to_training", known, "splits"),
        ],
    )
