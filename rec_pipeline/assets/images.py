"""Image assets: product images fetched safely into a cache, and their CNN embeddings."""

import dataclasses
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from rec_pipeline.assets.factory import GPU_POOL, category_asset, materialized
from rec_pipeline.assets.metadata import combined_check, counts_md
from rec_pipeline.images.fetch import RESULT_SCHEMA, FetchOptions, fetch_images
from rec_pipeline.incremental import Reuse, reuse_by_key
from rec_pipeline.plots import image_grid_md
from rec_pipeline.resources import Lake, step_config
from rec_pipeline.warehouse import Artifact
from rec_pipeline.warehouse_io import Stored

FEATURES = "features"


_EMBEDDING_SCHEMA: dict[str, pl.DataType] = {
    "embedding_key": pl.String(),
    "vector": pl.Array(pl.Float32, 1),
    "has_vector": pl.Boolean(),
}


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


@category_asset(
    ins=["items"],
    group_name=FEATURES,
    kinds={"httpx", "pillow"},
    code_version="2",
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
    description="Each item's product image: local mirror first, then the network (http/https only, private addresses "
    "refused), cached by URL.",
)
def item_images(
    context: dg.AssetExecutionContext, config: ItemImagesConfig, items: Stored, lake: Lake
) -> dg.MaterializeResult:
    layout = lake.layout.ensure()
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    coverage_ok: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        options = _fetch_options(config)
        # Only items that survived the k-core: nothing else is trained on or recommended, so nothing else is fetched.
        store = lake.category(category)
        catalog = items[category].read(Artifact.ITEMS, columns=["item_id", "image_urls", "in_interactions"])
        rated = catalog.filter(pl.col("in_interactions"))
        wanted = rated.with_columns(pl.col("image_urls").list.get(config.image_index, null_on_oob=True).alias("url"))
        requests = [(i, u) for i, u in wanted.filter(pl.col("url").is_not_null()).select("item_id", "url").iter_rows()]
        context.log.info(
            f"{category}: {len(requests)} of the {rated.height} rated items have an image URL "
            f"({catalog.height - rated.height} catalog items not in the k-core are not fetched)"
        )
        report = fetch_images(requests, layout.image_cache_dir, layout.image_mirror_dir, options, logger=context.log)
        # An empty request list still gets the full schema: downstream reads columns, not rows.
        results = report.results if report.results.width else pl.DataFrame(schema=RESULT_SCHEMA)
        results = results.with_columns(pl.lit(options.variant, dtype=pl.String).alias("variant"))
        store.write(Artifact.ITEM_IMAGES, results)
        ok = results.filter(pl.col("status") == "ok")
        coverage = ok.height / rated.height if rated.height else 0.0
        summary = {
            "items": rated.height,
            "catalog_items_not_fetched": catalog.height - rated.height,
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
        store.write(Artifact.ITEM_IMAGES_SUMMARY, summary)
        fingerprints[category] = store.fingerprint("item_images")
        coverage_ok[category] = (
            coverage >= config.min_coverage,
            f"coverage {coverage:.1%} (min {config.min_coverage:.0%})",
        )
        per_category[category] = {
            **{k: v for k, v in summary.items() if k not in ("failures_by_reason", "hosts_unreachable")},
            "hosts_unreachable": dg.MetadataValue.json(summary["hosts_unreachable"]),
            "items_without_url": rated.height - len(requests),
            "failures_by_reason": dg.MetadataValue.md(counts_md(report.failures_by_reason)),
            "images_per_s": round(report.throughput, 1),
            "seconds": round(report.elapsed_s, 2),
            "sample_thumbnails": dg.MetadataValue.md(
                image_grid_md(
                    [p for p in ok["image_path"].head(32).to_list() if p], columns=8, thumb=48, title="sample images"
                )
            ),
        }
    return materialized(
        context,
        per_category,
        fingerprints,
        [combined_check("coverage", coverage_ok, "item_images", dg.AssetCheckSeverity.WARN)],
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


@category_asset(
    ins=["item_images"],
    group_name=FEATURES,
    kinds={"keras", "tensorflow"},
    code_version="1",
    pool=GPU_POOL,
    check_specs=[
        dg.AssetCheckSpec("no_nan", asset="image_embeddings"),
        dg.AssetCheckSpec("dimensions", asset="image_embeddings", description="Every vector has the configured size."),
    ],
    description="CNN embeddings of the fetched images (Keras backbone, pooled, optionally projected); only new "
    "images are embedded.",
)
def image_embeddings(
    context: dg.AssetExecutionContext, config: ImageEmbeddingsConfig, item_images: Stored, lake: Lake
) -> dg.MaterializeResult:
    # TensorFlow is imported only here, inside the step process, so other steps stay light.
    from rec_pipeline.images.embed import EmbeddingWeightsError, build_embedder, embed_images, embedder_fingerprint

    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    no_nan: dict[str, tuple[bool, str]] = {}
    dims_ok: dict[str, tuple[bool, str]] = {}
    embedders: dict[str, Any] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        options = _embedding_options(config)
        fingerprint = embedder_fingerprint(options)
        store = lake.category(category)
        images = item_images[category].read(Artifact.ITEM_IMAGES).filter(pl.col("status") == "ok")
        images = images.with_columns(
            (pl.col("url_hash") + ":" + pl.col("variant") + ":" + pl.lit(fingerprint)).alias("embedding_key")
        )
        previous = store.read_cache(Artifact.IMAGE_EMBEDDINGS, context.log)

        def embed(todo: pl.DataFrame, options: Any = options, fingerprint: str = fingerprint) -> pl.DataFrame:
            if not todo.height:
                return pl.DataFrame(schema=_EMBEDDING_SCHEMA)
            # The CNN is built only when there is something to embed: a category without images needs no weights.
            if fingerprint not in embedders:
                try:
                    embedders[fingerprint] = build_embedder(options)
                except (EmbeddingWeightsError, ValueError) as exc:
                    raise dg.Failure(description=f"image_embeddings: {exc}") from exc
            vectors, mask = embed_images(
                list(todo["image_path"].to_list()), embedders[fingerprint], options, logger=context.log
            )
            return pl.DataFrame(
                {
                    "embedding_key": todo["embedding_key"],
                    "vector": pl.Series(
                        "vector", np.asarray(vectors, np.float32), dtype=pl.Array(pl.Float32, vectors.shape[1])
                    ),
                    "has_vector": pl.Series("has_vector", np.asarray(mask, bool)),
                }
            )

        if images.height:
            # Keyed by image and embedder; items sharing an image URL (variants) share one embedding.
            reuse = reuse_by_key(
                images,
                "embedding_key",
                previous,
                embed,
                keep=["item_id", "embedding_key"],
                values=["vector", "has_vector"],
                how="inner",
            )
        else:
            context.log.warning(
                f"{category}: no fetched image to embed (see item_images); writing an empty table, the hybrid uses "
                "the other content"
            )
            empty = pl.DataFrame(schema={"item_id": pl.String(), **_EMBEDDING_SCHEMA})
            reuse = Reuse(empty, 0, 0, 0)
        reused = reuse.reused_rows
        context.log.info(f"{category}: {reused} embeddings reused, {reuse.computed_keys} distinct images embedded")
        frame = reuse.frame
        store.write(Artifact.IMAGE_EMBEDDINGS, frame)
        matrix = np.asarray(frame["vector"].to_numpy(), np.float32) if frame.height else np.zeros((0, 0), np.float32)
        dim = int(matrix.shape[1]) if matrix.ndim == 2 and frame.height else 0
        nan_rows = int(np.isnan(matrix).any(axis=1).sum()) if matrix.size else 0
        expected = config.projection_dim or dim
        no_nan[category] = (nan_rows == 0, f"{nan_rows} rows with NaN")
        dims_ok[category] = (frame.height == 0 or dim == expected, f"{dim} dimensions (expected {expected})")
        summary = {"embedded_now": reuse.computed_keys, "reused": reused, "dimensions": dim, "fingerprint": fingerprint}
        store.write(Artifact.IMAGE_EMBEDDINGS_SUMMARY, summary)
        fingerprints[category] = store.fingerprint("image_embeddings")
        per_category[category] = {
            "items_with_embedding": frame.height,
            **summary,
            "why_empty": "no fetched image" if not images.height else "",
            "backbone": config.model_path or config.backbone,
            "weights": config.weights,
            "unreadable_images": int((~frame["has_vector"]).sum()) if frame.height else 0,
        }
    return materialized(
        context,
        per_category,
        fingerprints,
        [
            combined_check("no_nan", no_nan, "image_embeddings"),
            combined_check("dimensions", dims_ok, "image_embeddings"),
        ],
    )
