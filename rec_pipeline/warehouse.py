"""The artifact catalogue: every file an asset writes under ``warehouse/<category>/``, named once.

Assets, the CLI, the summary and the benches ask for ``Artifact.INTERACTIONS`` rather than spelling
``"interactions.parquet"``: a rename or a move happens here, and a reader finds every producer and consumer of a
file with one search for its name. ``DataLayout.artifact(category, Artifact.X)`` gives the path.
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
