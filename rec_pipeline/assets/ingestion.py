"""Ingestion assets: raw dumps in ``raw/`` -> normalized ``raw_reviews`` and ``raw_items`` Parquet."""

# No `from __future__ import annotations`: Dagster reads Config/resource types from the signature at runtime.
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import polars as pl

from rec_pipeline.assets.factory import category_asset, materialized
from rec_pipeline.assets.metadata import combined_check, counts_md, md_table
from rec_pipeline.atomic import parquet_problem
from rec_pipeline.incremental import Record, reuse_record
from rec_pipeline.ingest.normalize import IngestOptions, IngestReport, ingest_dump
from rec_pipeline.ingest.sources import CategoryDumps, discover, fingerprint
from rec_pipeline.interactions.stats import interaction_stats
from rec_pipeline.paths import DataLayout
from rec_pipeline.plots import bar_md
from rec_pipeline.resources import Lake, step_config
from rec_pipeline.schema import ITEM_SCHEMA, REJECTED_SCHEMA
from rec_pipeline.warehouse import Artifact
from rec_pipeline.warehouse_io import CategoryStore

INGEST_CODE_VERSION = "2"  # 2: hostile-line verdicts (overflow, id types, non-UTF-8 ids, long lines)


class IngestConfig(dg.Config):
    """Streaming settings; the defaults suit dumps of any size on a laptop."""

    chunk_mb: int = 8
    max_line_mb: int = 16  # longer lines are skipped while streaming, never held, and quarantined as too long
    force: bool = False  # re-read the dump even when its fingerprint is unchanged


def _dumps(layout: DataLayout, category: str) -> CategoryDumps:
    found = discover(layout.raw_dir)
    if category not in found:
        names = ", ".join(sorted(found)) or "none"
        raise dg.Failure(
            description=(
                f"no dump for category {category!r} in {layout.raw_dir}. Categories found there: {names}. "
                "Dumps must keep their original names, e.g. AMAZON_FASHION_5.json.gz or "
                "reviews_Musical_Instruments_5.json.gz."
            )
        )
    return found[category]


def _ingest_cached(
    source: Path,
    kind: Literal["reviews", "meta"],
    store: CategoryStore,
    artifacts: tuple[Artifact, Artifact, Artifact],
    config: IngestConfig,
    log: Any,
) -> tuple[IngestReport, bool]:
    """Ingest ``source`` into ``artifacts`` (output, rejected lines, report) unless the same file (name, size,
    mtime) was already ingested by this code version."""
    out, rejected = store.path(artifacts[0]), store.path(artifacts[1])
    stamp = {"fingerprint": fingerprint([source]), "code_version": INGEST_CODE_VERSION}
    recorded = None
    if store.exists(artifacts[2]) and out.exists() and rejected.exists():
        previous = store.read_json(artifacts[2])
        recorded = Record(previous.get("stamp"), previous.get("report") or {})

    def damaged(record: Record) -> str | None:
        # Trust, but verify: a truncated or damaged output would otherwise be reused forever. Reading every
        # page costs a fraction of re-ingesting and catches flipped bytes in columns this run does not read.
        report = IngestReport(**record.payload)
        return parquet_problem(out, report.rows_out, full=True) or parquet_problem(
            rejected, report.rejected_total, full=True
        )

    reused, why = reuse_record(recorded, stamp, force=config.force, problem=damaged)
    if reused is not None:
        log.info(f"{source.name} unchanged since the last ingestion: reusing {out.name}")
        return IngestReport(**reused.payload), True
    if why.startswith("recorded output unusable"):
        log.warning(
            f"{source.name} is unchanged but its output {out} or {rejected.name} is damaged ({why}): ingesting again"
        )
    report = ingest_dump(
        source,
        kind,
        out,
        rejected,
        IngestOptions(chunk_bytes=config.chunk_mb << 20, max_line_bytes=config.max_line_mb << 20),
        logger=log,
    )
    report_dict = {k: v for k, v in report.to_dict().items() if k != "rejected_total"}
    store.write(artifacts[2], {"stamp": stamp, "report": report_dict})
    return report, False


def _report_metadata(report: IngestReport, skipped: bool, out: Path, rejected: Path) -> dict[str, Any]:
    mb = report.decompressed_bytes / 1e6
    return {
        "source_file": report.source_file,
        "release": report.release,
        "lines_in": report.lines,
        "rows_out": dg.MetadataValue.int(report.rows_out),
        "rejected_rows": report.rejected_total,
        "rejected_by_reason": dg.MetadataValue.md(counts_md(report.rejected)),
        "fields_nulled": dg.MetadataValue.md(counts_md(report.nulled_fields, key="field")),
        "empty_lines": report.empty_lines,
        "ms_timestamps_converted": report.ms_timestamps_converted,
        "text_repaired": dg.MetadataValue.md(counts_md(report.text_repaired, key="field")),
        "slow_path_lines": report.slow_path_lines,
        "bom_stripped": report.bom_stripped,
        "input_complete": report.complete,
        "input_problem": report.problem or "none",
        "seconds": report.seconds,
        "mb_per_s": round(mb / report.seconds, 1) if report.seconds else 0.0,
        "skipped_unchanged": skipped,
        "path": dg.MetadataValue.path(str(out)),
        "rejected_path": dg.MetadataValue.path(str(rejected)),
    }


@category_asset(
    eager=False,
    group_name="ingestion",
    kinds={"polars", "parquet"},
    code_version=INGEST_CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec("has_rows", asset="raw_reviews", description="At least one review survived ingestion."),
        dg.AssetCheckSpec(
            "input_complete",
            asset="raw_reviews",
            description="The dump was read to its end (not truncated).",
            blocking=False,
        ),
    ],
    description="Reviews of one category normalized to the common schema (all releases), with rejected lines "
    "quarantined.",
)
def raw_reviews(context: dg.AssetExecutionContext, config: IngestConfig, lake: Lake) -> dg.MaterializeResult:
    layout = lake.layout
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    has_rows: dict[str, tuple[bool, str]] = {}
    complete: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        dumps = _dumps(layout, category)
        if dumps.reviews is None:
            raise dg.Failure(f"category {category!r} has a metadata dump but no reviews dump in {layout.raw_dir}")
        for note in dumps.notes:
            context.log.warning(f"{category}: ignored {note}")
        cfg = step_config(context, config, lake, category)
        store = lake.category(category)
        report, skipped = _ingest_cached(
            dumps.reviews.path,
            "reviews",
            store,
            (Artifact.RAW_REVIEWS, Artifact.REJECTED_REVIEWS, Artifact.RAW_REVIEWS_REPORT),
            cfg,
            context.log,
        )
        out, rejected = store.path(Artifact.RAW_REVIEWS), store.path(Artifact.REJECTED_REVIEWS)
        metadata = _report_metadata(report, skipped, out, rejected)
        metadata["ignored_dumps"] = dg.MetadataValue.md("\n".join(f"- {n}" for n in dumps.notes) or "_none_")
        if report.rows_out:
            stats = interaction_stats(store.read(Artifact.RAW_REVIEWS, columns=["user_id", "item_id", "rating"]))
            metadata.update(
                users=stats["users"],
                items=stats["items"],
                rating_histogram=dg.MetadataValue.md(
                    bar_md(list(stats["rating_histogram"]), list(stats["rating_histogram"].values()), "ratings")
                ),
            )
        per_category[category] = metadata
        fingerprints[category] = store.fingerprint("raw_reviews")
        has_rows[category] = (report.rows_out > 0, f"{report.rows_out} rows")
        complete[category] = (report.complete, report.problem or "complete")
    return materialized(
        context,
        per_category,
        fingerprints,
        [
            combined_check("has_rows", has_rows, "raw_reviews"),
            combined_check("input_complete", complete, "raw_reviews", dg.AssetCheckSeverity.WARN),
        ],
    )


@category_asset(
    eager=False,
    group_name="ingestion",
    kinds={"polars", "parquet"},
    code_version=INGEST_CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(
            "unique_items", asset="raw_items", description="One row per item after merging repeated metadata lines."
        )
    ],
    description="Product metadata of one category in the common item schema; repeated asin lines merged (last wins).",
)
def raw_items(context: dg.AssetExecutionContext, config: IngestConfig, lake: Lake) -> dg.MaterializeResult:
    layout = lake.layout
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    unique: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        dumps = _dumps(layout, category)
        cfg = step_config(context, config, lake, category)
        store = lake.category(category)
        if dumps.meta is None:
            # Metadata is optional (the real 5-core files ship without it): content features will be empty and
            # the hybrid model falls back to its collaborative part. Said loudly, not silently.
            why = "; ".join(dumps.notes) or f"no metadata dump (meta_{category}.json.gz) in {layout.raw_dir}"
            context.log.warning(f"{category}: {why}; items have no text or images")
            store.write(Artifact.RAW_ITEMS, pl.DataFrame(schema=ITEM_SCHEMA))
            store.write(Artifact.REJECTED_ITEMS, pl.DataFrame(schema=REJECTED_SCHEMA))
            per_category[category] = {"metadata_dump": "missing", "items": 0, "why": why}
            fingerprints[category] = store.fingerprint("raw_items")
            unique[category] = (True, "no metadata")
            continue
        report, skipped = _ingest_cached(
            dumps.meta.path,
            "meta",
            store,
            (Artifact.RAW_ITEMS_LINES, Artifact.REJECTED_ITEMS, Artifact.RAW_ITEMS_REPORT),
            cfg,
            context.log,
        )
        lines = store.read(Artifact.RAW_ITEMS_LINES)
        items = lines.sort("source_line").unique(subset=["item_id"], keep="last", maintain_order=True)
        out = store.write(Artifact.RAW_ITEMS, items)
        metadata = _report_metadata(report, skipped, out, store.path(Artifact.REJECTED_ITEMS))
        metadata.update(
            items=items.height,
            repeated_item_lines=lines.height - items.height,
            with_title=int(items["title"].is_not_null().sum()),
            with_image_url=int((items["image_urls"].list.len() > 0).sum()),
            price_known=int(items["price"].is_not_null().sum()),
            preview=dg.MetadataValue.md(
                md_table(items.select("item_id", "title", "brand", "price").head(5).to_dicts())
            ),
        )
        per_category[category] = metadata
        fingerprints[category] = store.fingerprint("raw_items")
        unique[category] = (items["item_id"].n_unique() == items.height, f"{items.height} items")
    return materialized(context, per_category, fingerprints, [combined_check("unique_items", unique, "raw_items")])
