"""The artifact catalogue: every file an asset writes under ``warehouse/<category>/``, named once.

Assets, the CLI, the summary and the benches ask for ``Artifact.INTERACTIONS`` rather than spelling
``"interactions.parquet"``: a rename or a move happens here, and a reader finds every producer and consumer of a
file with one search for its name. ``DataLayout.artifact(category, Artifact.X)`` gives the path.

``WRITTEN_BY`` says which asset writes which artifacts: an asset reads another's files only through the handle
Dagster passes it for that upstream (``rec_pipeline.warehouse_io``), which refuses artifacts the upstream does not
write, and ``CONTENT`` names the artifacts whose bytes are an asset's content (its data version): the tables and
models, not the reports that carry timings.
"""

from __future__ import annotations

from enum import StrEnum


class Artifact(StrEnum):
    """Paths relative to ``warehouse/<category>/``, grouped by the asset that writes them."""

    # raw_reviews, raw_items
    RAW_REVIEWS = "raw_reviews.parquet"
    RAW_REVIEWS_REPORT = "raw_reviews.report.json"  # the ingest report and the fingerprint it was made from
    REJECTED_REVIEWS = "rejected_reviews.parquet"
    RAW_ITEMS = "raw_items.parquet"
    RAW_ITEMS_LINES = "raw_items.lines.parquet"  # every metadata line, before repeated asins are merged
    RAW_ITEMS_REPORT = "raw_items.report.json"
    REJECTED_ITEMS = "rejected_items.parquet"
    # interactions, splits, cold_items
    INTERACTIONS = "interactions.parquet"
    INTERACTIONS_SUMMARY = "interactions.summary.json"
    ITEM_FAMILIES = "item_families.parquet"
    TRAIN = "splits/train.parquet"
    VALIDATION = "splits/validation.parquet"
    TEST = "splits/test.parquet"
    SPLIT_INFO = "splits/split.json"
    COLD_ITEMS = "splits/cold_items.parquet"
    COLD_INTERACTIONS = "splits/cold.parquet"
    # items, item_text, word2vec_model, item_text_vectors
    ITEMS = "items.parquet"
    ITEM_TEXT = "item_text.parquet"
    WORD2VEC_MODEL = "word2vec.model"
    WORD2VEC_INFO = "word2vec.json"
    WORD2VEC_TRAINED_ON = "word2vec.trained_on.parquet"
    ITEM_TEXT_VECTORS = "item_text_vectors.parquet"
    # item_images, image_embeddings
    ITEM_IMAGES = "item_images.parquet"
    ITEM_IMAGES_SUMMARY = "item_images.summary.json"
    IMAGE_EMBEDDINGS = "image_embeddings.parquet"
    IMAGE_EMBEDDINGS_SUMMARY = "image_embeddings.summary.json"
    # model_metrics, recommendations
    METRICS_DIR = "metrics"
    METRICS = "metrics/metrics.json"
    METRICS_TABLE = "metrics/metrics.parquet"
    COMPARISON = "metrics/comparison.md"
    CROSS_VALIDATION = "metrics/cross_validation.json"
    RECOMMENDATIONS = "recommendations.parquet"
    RECOMMENDATIONS_INFO = "recommendations.json"


SPLITS: dict[str, Artifact] = {"train": Artifact.TRAIN, "validation": Artifact.VALIDATION, "test": Artifact.TEST}


def split_artifact(name: str) -> Artifact:
    """The artifact of split ``name`` (train, validation, test)."""
    try:
        return SPLITS[name]
    except KeyError:
        raise ValueError(f"unknown split {name!r}; splits: {', '.join(SPLITS)}") from None


def report_artifact(asset: str) -> Artifact:
    """The ingest report of ``raw_reviews`` or ``raw_items``."""
    return {"raw_reviews": Artifact.RAW_REVIEWS_REPORT, "raw_items": Artifact.RAW_ITEMS_REPORT}[asset]


def summary_artifact(asset: str) -> Artifact | None:
    """The JSON summary an asset writes beside its table, if it writes one."""
    return {
        "interactions": Artifact.INTERACTIONS_SUMMARY,
        "item_images": Artifact.ITEM_IMAGES_SUMMARY,
        "image_embeddings": Artifact.IMAGE_EMBEDDINGS_SUMMARY,
    }.get(asset)


WRITTEN_BY: dict[str, tuple[Artifact, ...]] = {
    "raw_reviews": (Artifact.RAW_REVIEWS, Artifact.REJECTED_REVIEWS, Artifact.RAW_REVIEWS_REPORT),
    "raw_items": (Artifact.RAW_ITEMS, Artifact.REJECTED_ITEMS, Artifact.RAW_ITEMS_LINES, Artifact.RAW_ITEMS_REPORT),
    "interactions": (Artifact.INTERACTIONS, Artifact.ITEM_FAMILIES, Artifact.INTERACTIONS_SUMMARY),
    "splits": (Artifact.TRAIN, Artifact.VALIDATION, Artifact.TEST, Artifact.SPLIT_INFO),
    "cold_items": (Artifact.COLD_ITEMS, Artifact.COLD_INTERACTIONS),
    "items": (Artifact.ITEMS,),
    "item_text": (Artifact.ITEM_TEXT,),
    "word2vec_model": (Artifact.WORD2VEC_MODEL, Artifact.WORD2VEC_INFO, Artifact.WORD2VEC_TRAINED_ON),
    "item_text_vectors": (Artifact.ITEM_TEXT_VECTORS,),
    "item_images": (Artifact.ITEM_IMAGES, Artifact.ITEM_IMAGES_SUMMARY),
    "image_embeddings": (Artifact.IMAGE_EMBEDDINGS, Artifact.IMAGE_EMBEDDINGS_SUMMARY),
    "model_metrics": (
        Artifact.METRICS,
        Artifact.METRICS_TABLE,
        Artifact.COMPARISON,
        Artifact.CROSS_VALIDATION,
        Artifact.METRICS_DIR,
    ),
    "recommendations": (Artifact.RECOMMENDATIONS, Artifact.RECOMMENDATIONS_INFO),
}
"""The artifacts of each asset (model assets write a model directory and a training summary instead, see
``DataLayout.model_dir``)."""

# Reports and summaries carry timings (seconds, throughput): they would change the version of unchanged content.
_NOT_CONTENT = frozenset(
    {
        Artifact.RAW_REVIEWS_REPORT,
        Artifact.RAW_ITEMS_REPORT,
        Artifact.RAW_ITEMS_LINES,
        Artifact.ITEM_IMAGES_SUMMARY,
        Artifact.IMAGE_EMBEDDINGS_SUMMARY,
        Artifact.WORD2VEC_TRAINED_ON,
        Artifact.METRICS_DIR,
        Artifact.METRICS_TABLE,
        Artifact.COMPARISON,
    }
)
CONTENT: dict[str, tuple[Artifact, ...]] = {
    asset: tuple(a for a in artifacts if a not in _NOT_CONTENT) for asset, artifacts in WRITTEN_BY.items()
}
"""The artifacts whose bytes make an asset's content fingerprint (its Dagster data version)."""


def writer_of(artifact: Artifact) -> str:
    """The asset that writes ``artifact``."""
    for asset, artifacts in WRITTEN_BY.items():
        if artifact in artifacts:
            return asset
    raise ValueError(f"{artifact!r} has no writer in WRITTEN_BY")
