"""Image assets: product images fetched safely into a cache, and their CNN embeddings."""

import dataclasses
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from rec_pipeline.assets.metadata import combined_check, counts_md, merge_category_metadata
from rec_pipeline.assets.partitions import CATEGORY_PARTITIONS
from rec_pipeline.atomic import read_artifact, read_cache, write_json, write_parquet
from rec_pipeline.images.fetch import RESULT_SCHEMA, FetchOptions, fetch_images
from rec_pipeline.plots import image_grid_md
from rec_pipeline.resources import DataLake, step_config
from rec_pipeline.warehouse import Artifact

FEATURES = "features"


class ItemImagesConfig(dg.Config):
    image_index: int = 0  # which of an item's image URLs to fetch (0 = the first, usually the main picture)
    image_size: int = 224
    max_concurrency: int = 16
    per_host_limit: int = 4
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_retries: int = 3
    max_bytes: int = 10_000_000
    max_pixels: int = 40_000_000
    allowed_hosts: list[str] = []  # hosts allowed even when they resolve to private addresses
    allowed_networks: list[str] = []  # e.g. ["127.0.0.1/32"] for a mirror served on this machine
    retry_permanent: bool = False
    retry_deferred: bool = False  # try URLs whose host was unreachable now, even before their back-off is due
    rerun_backoff_base: float = 3600.0  # a URL left without an answer is tried again after 1 h, then 2 h, 4 h, ...
    rerun_backoff_max: float = 7 * 24 * 3600.0  # ... up to a week
    offline: bool = False  # cache and local mirror only: no request, no DNS query; the rest is deferred
    min_coverage: float = 0.5


class ImageEmbeddingsConfig(dg.Config):
    backbone: str = "MobileNetV3Small"
    weights: str = "imagenet"  # "imagenet" (Keras download), a local weights file, or "random" (explicit opt-in)
    model_path: str | None = None  # a whole saved .keras embedding model instead of a backbone
    image_size: int = 224
    projection_dim: int | None = (
        None  # None: the backbone's pooled features as they are; an int adds a seeded projection
    )
    batch_size: int = 64
    seed: int = 0


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS,
    group_name=FEATURES,
    kinds={"httpx", "pillow"},
    code_version="2",
    deps=["items"],
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.eager(),
    pool="image_fetch",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
    check_specs=[
        dg.AssetCheckSpec(
            "coverage",
            asset="item_images",
            description="Share of items with an image above min_coverage.",
            blocking=False,
        )
    ],
    description="Each item's product image: local mirror first, then the network (http/https only, private addresses refused), cached by URL.",
)
def item_images(context: dg.AssetExecutionContext, config: ItemImagesConfig, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.layout.ensure()
    per_category: dict[str, dict[str, Any]] = {}
    coverage_ok: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        options = _fetch_options(config)
        # Only items that survived the k-core: nothing else is trained on or recommended, so nothing else is fetched.
        catalog = read_artifact(
            layout.artifact(category, Artifact.ITEMS), columns=["item_id", "image_urls", "in_interactions"]
        )
        items = catalog.filter(pl.col("in_interactions"))
        wanted = items.with_columns(pl.col("image_urls").list.get(config.image_index, null_on_oob=True).alias("url"))
        requests = [(i, u) for i, u in wanted.filter(pl.col("url").is_not_null()).select("item_id", "url").iter_rows()]
        context.log.info(
            f"{category}: {len(requests)} of the {items.height} rated items have an image URL ({catalog.height - items.height} catalog items not in the k-core are not fetched)"
        )
        report = fetch_images(requests, layout.image_cache_dir, layout.image_mirror_dir, options, logger=context.log)
        # An empty request list still gets the full schema: downstream reads columns, not rows.
        results = report.results if report.results.width else pl.DataFrame(schema=RESULT_SCHEMA)
        results = results.with_columns(pl.lit(options.variant, dtype=pl.String).alias("variant"))
        write_parquet(results, layout.artifact(category, Artifact.ITEM_IMAGES))
        ok = results.filter(pl.col("status") == "ok")
        coverage = ok.height / items.height if items.height else 0.0
        summary = {
            "items": items.height,
            "catalog_items_not_fetched": catalog.height - items.height,
            "with_url": len(requests),
            "coverage": round(coverage, 4),
            **report.summary(),
        }
        if report.hosts_unreachable or summary["backing_off"] or config.offline:
            why = "offline: true" if config.offline else "unreachable: " + ", ".join(report.hosts_unreachable)
            context.log.warning(
                f"{category}: {summary['deferred']} image URLs deferred ({why}), {summary['backing_off']} backing off "
                "until a later run; the models use the content there is"
            )
        write_json(summary, layout.artifact(category, Artifact.ITEM_IMAGES_SUMMARY))
        coverage_ok[category] = (
            coverage >= config.min_coverage,
            f"coverage {coverage:.1%} (min {config.min_coverage:.0%})",
        )
        per_category[category] = {
            **{k: v for k, v in summary.items() if k not in ("failures_by_reason", "hosts_unreachable")},
            "hosts_unreachable": dg.MetadataValue.json(summary["hosts_unreachable"]),
            "items_without_url": items.height - len(requests),
            "failures_by_reason": dg.MetadataValue.md(counts_md(report.failures_by_reason)),
            "images_per_s": round(report.throughput, 1),
            "seconds": round(report.elapsed_s, 2),
            "sample_thumbnails": dg.MetadataValue.md(
                image_grid_md(
                    [p for p in ok["image_path"].head(32).to_list() if p], columns=8, thumb=48, title="sample images"
                )
            ),
        }
    return dg.MaterializeResult(
        metadata=merge_category_metadata(per_category),
        check_results=[combined_check("coverage", coverage_ok, "item_images", dg.AssetCheckSeverity.WARN)],
    )


def _fetch_options(config: ItemImagesConfig) -> FetchOptions:
    """FetchOptions from the settings of the same name (one definition each), plus the square image size."""
    shared = {f.name for f in dataclasses.fields(FetchOptions)} & set(type(config).model_fields)
    values = {name: getattr(config, name) for name in shared if name != "image_size"}
    values.update(allowed_hosts=tuple(config.allowed_hosts), allowed_networks=tuple(config.allowed_networks))
    return FetchOptions(**values, image_size=(config.image_size, config.image_size))


def _embedding_options(config: ImageEmbeddingsConfig) -> Any:
    from rec_pipeline.images.embed import EmbeddingOptions

    return EmbeddingOptions(
        backbone=config.backbone,
        weights=config.weights,
        image_size=config.image_size,
        projection_dim=config.projection_dim,
        batch_size=config.batch_size,
        seed=config.seed,
        model_path=config.model_path,
    )


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS,
    group_name=FEATURES,
    kinds={"keras", "tensorflow"},
    code_version="1",
    deps=[item_images],
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.eager(),
    pool="gpu",
    check_specs=[
        dg.AssetCheckSpec("no_nan", asset="image_embeddings"),
        dg.AssetCheckSpec("dimensions", asset="image_embeddings", description="Every vector has the configured size."),
    ],
    description="CNN embeddings of the fetched images (Keras backbone, pooled, optionally projected); only new images are embedded.",
)
def image_embeddings(
    context: dg.AssetExecutionContext, config: ImageEmbeddingsConfig, lake: DataLake
) -> dg.MaterializeResult:
    # TensorFlow is imported only here, inside the step process, so other steps stay light.
    from rec_pipeline.images.embed import EmbeddingWeightsError, build_embedder, embed_images, embedder_fingerprint

    layout = lake.layout
    per_category: dict[str, dict[str, Any]] = {}
    no_nan: dict[str, tuple[bool, str]] = {}
    dims_ok: dict[str, tuple[bool, str]] = {}
    embedders: dict[str, Any] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        options = _embedding_options(config)
        fingerprint = embedder_fingerprint(options)
        images = read_artifact(layout.artifact(category, Artifact.ITEM_IMAGES)).filter(pl.col("status") == "ok")
        images = images.with_columns(
            (pl.col("url_hash") + ":" + pl.col("variant") + ":" + pl.lit(fingerprint)).alias("embedding_key")
        )
        out_path = layout.artifact(category, Artifact.IMAGE_EMBEDDINGS)
        cached = pl.DataFrame()
        if (previous := read_cache(out_path, context.log)) is not None:
            cached = previous.unique("embedding_key").select("embedding_key", "vector", "has_vector")
        todo = (
            images.filter(~pl.col("embedding_key").is_in(cached["embedding_key"].implode()))
            if cached.height
            else images
        )
        # Items sharing an image URL (variants) share one embedding: embedding it once also keeps the join below
        # from multiplying their rows.
        todo = todo.unique("embedding_key", keep="first", maintain_order=True)
        reused = images.height - int(images["embedding_key"].is_in(todo["embedding_key"].implode()).sum())
        context.log.info(f"{category}: {reused} embeddings reused, {todo.height} distinct images to embed")
        if todo.height:
            # The CNN is built only when there is something to embed: a category without images needs no weights.
            if fingerprint not in embedders:
                try:
                    embedders[fingerprint] = build_embedder(options)
                except (EmbeddingWeightsError, ValueError) as exc:
                    raise dg.Failure(description=f"image_embeddings: {exc}") from exc
            embedder = embedders[fingerprint]
            vectors, mask = embed_images(
                [p for p in todo["image_path"].to_list()], embedder, options, logger=context.log
            )
            fresh = pl.DataFrame(
                {
                    "embedding_key": todo["embedding_key"],
                    "vector": pl.Series(
                        "vector", np.asarray(vectors, np.float32), dtype=pl.Array(pl.Float32, vectors.shape[1])
                    ),
                    "has_vector": pl.Series("has_vector", np.asarray(mask, bool)),
                }
            )
            cached = pl.concat([cached, fresh], how="vertical") if cached.height else fresh
        if not images.height:
            context.log.warning(
                f"{category}: no fetched image to embed (see item_images); writing an empty table, the hybrid uses the other content"
            )
            cached = pl.DataFrame(
                schema={"embedding_key": pl.String, "vector": pl.Array(pl.Float32, 1), "has_vector": pl.Boolean}
            )
        frame = images.select("item_id", "embedding_key").join(cached, on="embedding_key", how="inner")
        write_parquet(frame, out_path)
        matrix = np.asarray(frame["vector"].to_numpy(), np.float32) if frame.height else np.zeros((0, 0), np.float32)
        dim = int(matrix.shape[1]) if matrix.ndim == 2 and frame.height else 0
        nan_rows = int(np.isnan(matrix).any(axis=1).sum()) if matrix.size else 0
        expected = config.projection_dim or dim
        no_nan[category] = (nan_rows == 0, f"{nan_rows} rows with NaN")
        dims_ok[category] = (frame.height == 0 or dim == expected, f"{dim} dimensions (expected {expected})")
        summary = {"embedded_now": todo.height, "reused": reused, "dimensions": dim, "fingerprint": fingerprint}
        write_json(summary, layout.artifact(category, Artifact.IMAGE_EMBEDDINGS_SUMMARY))
        per_category[category] = {
            "items_with_embedding": frame.height,
            **summary,
            "why_empty": "no fetched image" if not images.height else "",
            "backbone": config.model_path or config.backbone,
            "weights": config.weights,
            "unreadable_images": int((~frame["has_vector"]).sum()) if frame.height else 0,
        }
    return dg.MaterializeResult(
        metadata=merge_category_metadata(per_category),
        check_results=[
            combined_check("no_nan", no_nan, "image_embeddings"),
            combined_check("dimensions", dims_ok, "image_embeddings"),
        ],
    )
