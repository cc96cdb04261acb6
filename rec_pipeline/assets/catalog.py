"""The item catalog: one row per product family, the metadata of its variants merged, flagged when rated.

Downstream content features read this, not ``raw_items``: item ids then agree with ``interactions`` (variant
asins are merged into their family's key there too), and only items that survived the k-core are sent to the
network for images (a 2014 category's metadata holds 7,418 items; its k-core 206).
"""

from typing import Any

import dagster as dg
import polars as pl

from rec_pipeline.assets.factory import category_asset, materialized
from rec_pipeline.assets.metadata import combined_check, md_table
from rec_pipeline.interactions.variants import merge_family_items
from rec_pipeline.resources import Lake
from rec_pipeline.schema import ITEM_SCHEMA
from rec_pipeline.warehouse import Artifact
from rec_pipeline.warehouse_io import Stored


def build_catalog(raw_items: pl.DataFrame, families: pl.DataFrame, rated_items: pl.Series) -> pl.DataFrame:
    """Family-merged metadata plus a row (no text, no image) for each rated item that has no metadata at all."""
    merged = merge_family_items(raw_items, families)
    missing = pl.DataFrame({"item_id": rated_items.unique().sort()}).filter(
        ~pl.col("item_id").is_in(merged["item_id"].implode())
    )
    if missing.height:
        blank = missing.with_columns(
            *[
                pl.lit(None, dtype=dtype).alias(name)
                for name, dtype in ITEM_SCHEMA.items()
                if name != "item_id" and not isinstance(dtype, pl.List)
            ],
            *[pl.lit([], dtype=dtype).alias(name) for name, dtype in ITEM_SCHEMA.items() if isinstance(dtype, pl.List)],
            pl.concat_list(pl.col("item_id")).alias("members"),
        ).select(merged.columns)
        merged = pl.concat([merged, blank.cast(merged.schema)], how="vertical")
    return merged.with_columns(pl.col("item_id").is_in(rated_items.implode()).alias("in_interactions"))


@category_asset(
    ins=["raw_items", "interactions"],
    group_name="features",
    kinds={"polars", "parquet"},
    code_version="1",
    check_specs=[dg.AssetCheckSpec("unique_items", asset="items", description="One row per item (family key).")],
    description="Item catalog: metadata merged per variant family (keyed like interactions), flagged "
    "`in_interactions`.",
)
def items(
    context: dg.AssetExecutionContext, raw_items: Stored, interactions: Stored, lake: Lake
) -> dg.MaterializeResult:
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    unique: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        store = lake.category(category)
        raw = raw_items[category].read(Artifact.RAW_ITEMS)
        families = interactions[category].read(Artifact.ITEM_FAMILIES)
        rated = interactions[category].read(Artifact.INTERACTIONS, columns=["item_id"])["item_id"].unique()
        catalog = build_catalog(raw, families, rated)
        store.write(Artifact.ITEMS, catalog)
        fingerprints[category] = store.fingerprint("items")
        in_core = catalog.filter(pl.col("in_interactions"))
        with_metadata = int((in_core["source_line"].is_not_null()).sum())
        context.log.info(
            f"{category}: {catalog.height:,} catalog items, {in_core.height:,} rated in the k-core, "
            f"{with_metadata:,} of those with metadata"
        )
        per_category[category] = {
            "items": catalog.height,
            "metadata_rows": raw.height,
            "rated_items": in_core.height,
            "rated_with_metadata": with_metadata,
            "rated_with_title": int(in_core["title"].is_not_null().sum()),
            "rated_with_image_url": int((in_core["image_urls"].list.len() > 0).sum()),
            "largest_family": int(catalog.select(pl.col("members").list.len().max()).item() or 0),
            "preview": dg.MetadataValue.md(
                md_table(
                    in_core.head(5)
                    .select("item_id", "title", pl.col("members").list.len().alias("variants"))
                    .to_dicts()
                )
            ),
            "path": dg.MetadataValue.path(str(store.path(Artifact.ITEMS))),
        }
        unique[category] = (catalog["item_id"].n_unique() == catalog.height, f"{catalog.height} items")
    return materialized(context, per_category, fingerprints, [combined_check("unique_items", unique, "items")])
