"""Interaction assets: deduplicated k-core ``interactions`` and the train/validation/test ``splits``."""

from typing import Any, Literal

import dagster as dg
import polars as pl

from rec_pipeline.assets.factory import category_asset, materialized
from rec_pipeline.assets.metadata import combined_check, md_table
from rec_pipeline.atomic import ArtifactError
from rec_pipeline.interactions.dedup import latest_per_pair
from rec_pipeline.interactions.kcore import is_kcore, kcore, workable_k
from rec_pipeline.interactions.splits import SplitOptions, check_splits, split_interactions
from rec_pipeline.interactions.stats import interaction_stats
from rec_pipeline.interactions.variants import VariantOptions, collapse_variants, review_events
from rec_pipeline.plots import bar_md
from rec_pipeline.resources import Lake, settings_metadata, step_config
from rec_pipeline.schema import RATING_MAX, RATING_MIN
from rec_pipeline.warehouse import Artifact, split_artifact
from rec_pipeline.warehouse_io import Stored, Upstream


class InteractionsConfig(dg.Config):
    """How reviews become interactions: variant copies collapsed, one rating per pair, a true k-core."""

    k: int = 5  # every kept user and item has at least k ratings after deduplication
    kcore_iterate: bool = True  # False: one pass of the >= k filter, as some published protocols do (not a k-core)
    collapse_variants: bool = True  # one review copied onto every variant asin counts once (2014/2018 dumps)
    min_shared_copies: int = 2  # two asins are variants when they share at least this many review events ...
    min_shared_fraction: float = 0.5  # ... and those are at least this share of the smaller asin's events
    min_rows: int = 50  # fewer interactions than this after the k-core fails the run here, naming a k that works


class SplitsConfig(dg.Config):
    method: Literal["temporal", "random", "random_rows"] = "temporal"  # random: stratified by user; random_rows: plain
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42


def _review_events(raw_reviews: Upstream) -> pl.DataFrame:
    """The narrow review events of one category (``review_events``), streamed from its Parquet file.

    The streaming engine reads, hashes and drops the review text batch by batch; read whole, the text alone is
    most of the category's bytes and set the asset's peak memory.
    """
    path = raw_reviews.path(Artifact.RAW_REVIEWS)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist: materialize raw_reviews first")
    try:
        return review_events(pl.scan_parquet(path)).collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise ArtifactError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}); it is damaged: materialize raw_reviews again "
            "(with `force: true`), which replaces it atomically"
        ) from exc


def _too_small_message(
    category: str, config: InteractionsConfig, rows: int, pairs: int, copies: int, deduped: pl.DataFrame
) -> str:
    state = "empty" if rows == 0 else f"tiny ({rows:,} interactions, min_rows {config.min_rows:,})"
    collapsed = f" after collapsing {copies:,} variant copies" if copies else ""
    message = (
        f"{category}: the {config.k}-core is {state}{collapsed} "
        f"({pairs:,} distinct (user, item) pairs before the k-core)"
    )
    suggestion = workable_k(deduped, config.k, config.min_rows)
    if suggestion is None:
        return message + "; no k >= 2 keeps enough interactions: this dump is too small to train on"
    k, kept = suggestion
    return (
        f"{message}; k={k} keeps {kept:,} interactions. Set it once in settings.yaml: "
        f"`categories: {{{category}: {{ops: {{interactions: {{config: {{k: {k}}}}}}}}}}}`"
    )


@category_asset(
    ins=["raw_reviews"],
    group_name="interactions",
    kinds={"polars", "parquet"},
    code_version="2",
    check_specs=[
        dg.AssetCheckSpec(
            "enough_interactions",
            asset="interactions",
            blocking=True,
            description="The k-core is not empty or tiny; otherwise no model step runs, and the check names a k that "
            "works.",
        ),
        dg.AssetCheckSpec("ratings_in_range", asset="interactions"),
        dg.AssetCheckSpec("no_duplicate_pairs", asset="interactions"),
        dg.AssetCheckSpec(
            "kcore_invariant", asset="interactions", description="Every user and item has at least k ratings."
        ),
    ],
    description="One rating per (user, item) (variant copies collapsed into one event, the latest kept), filtered to "
    "a true k-core.",
)
def interactions(
    context: dg.AssetExecutionContext, config: InteractionsConfig, raw_reviews: Stored, lake: Lake
) -> dg.MaterializeResult:
    settings = lake.settings()
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    enough: dict[str, tuple[bool, str]] = {}
    in_range: dict[str, tuple[bool, str]] = {}
    no_dups: dict[str, tuple[bool, str]] = {}
    core_ok: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        cfg = step_config(context, config, lake, category, settings)
        store = lake.category(category)
        variant_options = VariantOptions(
            enabled=cfg.collapse_variants,
            min_shared_copies=cfg.min_shared_copies,
            min_shared_fraction=cfg.min_shared_fraction,
        )
        collapsed = collapse_variants(_review_events(raw_reviews[category]), variant_options)
        store.write(Artifact.ITEM_FAMILIES, collapsed.families)
        deduped = latest_per_pair(collapsed.reviews).collect()
        result = kcore(deduped, cfg.k, iterate=cfg.kcore_iterate)
        frame = result.frame
        store.write(Artifact.INTERACTIONS, frame)
        stats = interaction_stats(frame)
        variants = collapsed.metadata()
        store.write(
            Artifact.INTERACTIONS_SUMMARY,
            {
                "k": cfg.k,
                "collapse_variants": cfg.collapse_variants,
                "variants": variants,
                "pairs": deduped.height,
                "rows": frame.height,
            },
        )
        context.log.info(
            f"{category}: {collapsed.rows_in:,} reviews -> {collapsed.events:,} review events "
            f"({collapsed.copies_collapsed:,} variant copies collapsed, "
            f"{collapsed.items_merged:,} asins merged into families) -> {deduped.height:,} unique pairs -> "
            f"{frame.height:,} in the {cfg.k}-core "
            f"({result.iterations} passes)"
        )
        per_category[category] = {
            "rows_in": collapsed.rows_in,
            **{f"variants/{k}": v for k, v in variants.items()},
            "duplicates_removed": collapsed.events - deduped.height,
            "removed_by_kcore": deduped.height - frame.height,
            "rows_out": dg.MetadataValue.int(frame.height),
            "kcore_k": cfg.k,
            "kcore_iterations": result.iterations,
            "users": stats["users"],
            "items": stats["items"],
            "density": stats["density"],
            "rating_mean": stats["rating_mean"],
            "rating_histogram": dg.MetadataValue.md(
                bar_md(list(stats["rating_histogram"]), list(stats["rating_histogram"].values()), "ratings")
            ),
            "path": dg.MetadataValue.path(str(store.path(Artifact.INTERACTIONS))),
            **settings_metadata(cfg),
        }
        fingerprints[category] = store.fingerprint("interactions")
        if frame.height < cfg.min_rows:
            message = _too_small_message(
                category, cfg, frame.height, deduped.height, collapsed.copies_collapsed, deduped
            )
            context.log.error(message)
            enough[category] = (False, message)
        else:
            enough[category] = (True, f"{frame.height:,} interactions")
        out_of_range = frame.filter((pl.col("rating") < RATING_MIN) | (pl.col("rating") > RATING_MAX)).height
        dup_pairs = frame.height - frame.select("user_id", "item_id").unique().height
        in_range[category] = (out_of_range == 0, f"{out_of_range} ratings outside [{RATING_MIN}, {RATING_MAX}]")
        no_dups[category] = (dup_pairs == 0, f"{dup_pairs} duplicate pairs")
        core_ok[category] = (
            is_kcore(frame, cfg.k) or not cfg.kcore_iterate,
            f"k={cfg.k}" + ("" if cfg.kcore_iterate else " (one-pass filter: not checked)"),
        )
    return materialized(
        context,
        per_category,
        fingerprints,
        [
            combined_check("enough_interactions", enough, "interactions"),
            combined_check("ratings_in_range", in_range, "interactions"),
            combined_check("no_duplicate_pairs", no_dups, "interactions"),
            combined_check("kcore_invariant", core_ok, "interactions"),
        ],
    )


@category_asset(
    ins=["interactions"],
    group_name="interactions",
    kinds={"polars", "parquet"},
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec("disjoint", asset="splits", description="No (user, item) pair in two splits."),
        dg.AssetCheckSpec(
            "evaluated_known_to_training",
            asset="splits",
            description="Every validation/test user and item appears in training.",
        ),
    ],
    description="Seeded train/validation/test splits: temporal leave-last-out (default) or random stratified by user.",
)
def splits(
    context: dg.AssetExecutionContext, config: SplitsConfig, interactions: Stored, lake: Lake
) -> dg.MaterializeResult:
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    disjoint: dict[str, tuple[bool, str]] = {}
    known: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        cfg = step_config(context, config, lake, category)
        options = SplitOptions(cfg.method, cfg.validation_fraction, cfg.test_fraction, cfg.seed)
        store = lake.category(category)
        frame = interactions[category].read(Artifact.INTERACTIONS)
        result = split_interactions(frame, options)
        for name, part in result.as_dict().items():
            store.write(split_artifact(name), part)
        store.write(
            Artifact.SPLIT_INFO, {"method": cfg.method, "seed": cfg.seed, "moved_to_train": result.moved_to_train}
        )
        fingerprints[category] = store.fingerprint("splits")
        problems = check_splits(result)
        overlap = [p for p in problems if "in both" in p]
        unknown = [p for p in problems if "unknown" in p]
        disjoint[category] = (not overlap, "; ".join(overlap) or "disjoint")
        known[category] = (not unknown, "; ".join(unknown) or "all known")
        sizes = {name: part.height for name, part in result.as_dict().items()}
        per_category[category] = {
            "method": cfg.method,
            "seed": cfg.seed,
            **{f"{name}_rows": n for name, n in sizes.items()},
            "moved_to_train": result.moved_to_train,
            "sizes": dg.MetadataValue.md(
                md_table(
                    [
                        {"split": k, "rows": v, "users": result.as_dict()[k]["user_id"].n_unique()}
                        for k, v in sizes.items()
                    ]
                )
            ),
        }
    return materialized(
        context,
        per_category,
        fingerprints,
        [
            combined_check("disjoint", disjoint, "splits"),
            combined_check("evaluated_known_to_training", known, "splits"),
        ],
    )
