"""Item content features: cleaned text, Word2Vec, text vectors, fetched images and CNN embeddings.

Each asset pays only for what is new: text vectors are cached by (content hash, Word2Vec version), images by
URL in the fetch cache, embeddings by (image identity, embedder fingerprint). Word2Vec itself is kept while the
share of unseen item texts stays under ``retrain_threshold``, so appending a few reviews does not invalidate
every vector.
"""

# No `from __future__ import annotations`: Dagster reads Config/resource types from the signature at runtime.
import hashlib
import json
from typing import Any, Literal

import dagster as dg
import numpy as np
import polars as pl

from rec_pipeline.assets.factory import category_asset, materialized
from rec_pipeline.assets.metadata import combined_check, counts_md, md_table
from rec_pipeline.incremental import Record, Reuse, reuse_by_key, reuse_record, unseen_share
from rec_pipeline.resources import Lake, step_config
from rec_pipeline.schema import ITEM_SCHEMA
from rec_pipeline.text.clean import (
    CLEANING_VERSION,
    TextCleaningOptions,
    clean_item_text,
    cleaning_report,
    options_fingerprint,
)
from rec_pipeline.text.stopwords import load_stopwords
from rec_pipeline.text.vectors import document_frequencies, item_vectors, nearest_neighbours, vectors_frame
from rec_pipeline.text.word2vec import Word2VecOptions, describe_model, load_model, save_model, train_word2vec
from rec_pipeline.warehouse import Artifact
from rec_pipeline.warehouse_io import Stored, Upstream

FEATURES = "features"


# The columns of item_text after item_id (raw_hash: the identity of what cleaning read, see _raw_text_hash).
_ITEM_TEXT_VALUES = ["tokens", "n_tokens", "is_empty", "content_hash", "text_source", "raw_hash"]


class ItemTextConfig(dg.Config):
    stem: bool = False
    min_token_length: int = 2
    drop_numbers: bool = True
    remove_stopwords: bool = True


class Word2VecConfig(dg.Config):
    vector_size: int = 100
    window: int = 5
    min_count: int = 2
    epochs: int = 10
    workers: int = 2
    seed: int = 42
    pretrained_path: str | None = None  # e.g. GoogleNews-vectors-negative300.bin (then vector_size=300)
    pretrained_limit: int | None = 500_000
    retrain_threshold: float = 0.25  # retrain when more than this share of item texts is new or changed
    force_retrain: bool = False


_VECTOR_SCHEMA: dict[str, pl.DataType] = {
    "content_hash": pl.String(),
    "vector": pl.Array(pl.Float32, 1),
    "has_vector": pl.Boolean(),
}


class TextVectorsConfig(dg.Config):
    weighting: Literal["mean", "tfidf"] = "mean"
    min_coverage: float = 0.5  # share of items that must get a non-zero vector


@category_asset(
    ins=["items"],
    group_name=FEATURES,
    kinds={"nltk", "polars"},
    code_version="1",
    description="One cleaned token list per item from title, features, description, categories (fallback: brand).",
)
def item_text(
    context: dg.AssetExecutionContext, config: ItemTextConfig, items: Stored, lake: Lake
) -> dg.MaterializeResult:
    stopwords = load_stopwords()
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    for category in context.partition_keys:
        cfg = step_config(context, config, lake, category)
        options = TextCleaningOptions(
            stem=cfg.stem,
            min_token_length=cfg.min_token_length,
            drop_numbers=cfg.drop_numbers,
            remove_stopwords=cfg.remove_stopwords,
        )
        settings = options_fingerprint(options, stopwords) + CLEANING_VERSION
        store = lake.category(category)
        catalog = items[category].read(Artifact.ITEMS, columns=list(ITEM_SCHEMA))
        catalog = catalog.with_columns(_raw_text_hash(settings).alias("raw_hash"))
        previous = store.read_cache(Artifact.ITEM_TEXT, context.log)

        def clean(todo: pl.DataFrame, options: TextCleaningOptions = options, category: str = category) -> pl.DataFrame:
            context.log.info(f"{category}: {todo.height} item texts to clean")
            fresh, _ = clean_item_text(todo.drop("raw_hash"), options, stopwords, logger=context.log)
            return fresh.join(todo.select("item_id", "raw_hash"), on="item_id", how="left")

        # Keyed by the raw text and the settings; every changed item is cleaned (not one per text): cleaning is cheap.
        reuse = reuse_by_key(
            catalog, "raw_hash", previous, clean, keep=["item_id"], values=_ITEM_TEXT_VALUES, distinct=False
        )
        cleaned = reuse.frame
        store.write(Artifact.ITEM_TEXT, cleaned)
        fingerprints[category] = store.fingerprint("item_text")
        report = cleaning_report(cleaned, options, stopwords)
        meta = report.as_metadata()
        per_category[category] = {
            "items": report.n_items,
            "cleaned_now": reuse.computed_rows,
            "reused": reuse.reused_rows,
            "empty_texts": report.n_empty,
            "empty_fraction": round(report.empty_fraction, 4),
            "mean_tokens": round(report.mean_tokens, 2),
            "median_tokens": report.median_tokens,
            "vocabulary_size": report.vocabulary_size,
            "stopword_source": report.stopword_source,
            "text_sources": dg.MetadataValue.md(counts_md(meta["text_sources"], key="source")),
            "preview": dg.MetadataValue.md(
                md_table(
                    cleaned.head(5)
                    .with_columns(pl.col("tokens").list.head(12).list.join(" "))
                    .select("item_id", "n_tokens", "tokens")
                    .to_dicts()
                )
            ),
        }
    return materialized(context, per_category, fingerprints)


def _raw_text_hash(settings: str) -> pl.Expr:
    """Identity of everything cleaning reads, plus the settings: equal hash, equal tokens, so no re-cleaning.

    polars' hash may change across polars versions; that only costs one full re-clean, never a wrong reuse
    (a changed hash misses the cache, it cannot match another text).
    """
    fields = [pl.col(c).cast(pl.String).fill_null("") for c in ("title", "brand")] + [
        pl.col(c).list.join("\u241e").fill_null("") for c in ("categories", "description", "features")
    ]
    return pl.concat_str([pl.lit(settings), *fields], separator="\u241f").hash(seed=0).cast(pl.String)


_RETRAIN_REASONS = {
    "forced": "force_retrain",
    "nothing recorded yet": "no model yet",
    "inputs changed": "settings changed",
}


def _w2v_options(config: Word2VecConfig) -> Word2VecOptions:
    return Word2VecOptions(
        vector_size=config.vector_size,
        window=config.window,
        min_count=config.min_count,
        epochs=config.epochs,
        workers=config.workers,
        seed=config.seed,
        pretrained_path=config.pretrained_path,
        pretrained_limit=config.pretrained_limit,
    )


def _options_fingerprint(config: dg.Config) -> str:
    payload = json.dumps(config.model_dump(exclude={"force_retrain", "retrain_threshold"}), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@category_asset(
    ins=["item_text"],
    group_name=FEATURES,
    kinds={"gensim"},
    code_version="1",
    description="gensim Word2Vec trained on the item texts (optionally initialized from pretrained vectors). Kept "
    "while few texts change.",
)
def word2vec_model(
    context: dg.AssetExecutionContext, config: Word2VecConfig, item_text: Stored, lake: Lake
) -> dg.MaterializeResult:
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        store = lake.category(category)
        fingerprint = _options_fingerprint(config)
        texts = item_text[category].read(Artifact.ITEM_TEXT, columns=["content_hash", "tokens"])
        model_path = store.path(Artifact.WORD2VEC_MODEL)
        current = set(texts["content_hash"].to_list())
        # Keyed by the settings; kept while the share of item texts it never saw stays under retrain_threshold.
        recorded, unseen = None, 0.0
        if model_path.exists() and store.exists(Artifact.WORD2VEC_INFO) and store.exists(Artifact.WORD2VEC_TRAINED_ON):
            sidecar = store.read_json(Artifact.WORD2VEC_INFO)
            recorded = Record(sidecar.get("options"), sidecar)
            unseen = unseen_share(current, store.read(Artifact.WORD2VEC_TRAINED_ON)["content_hash"].to_list())
        threshold = config.retrain_threshold
        too_new = f"{unseen:.0%} of item texts are new (> retrain_threshold {threshold:.0%})"
        verdict = too_new if unseen > threshold else None
        kept, why = reuse_record(recorded, fingerprint, force=config.force_retrain, problem=verdict)
        if kept is not None:
            context.log.info(
                f"{category}: keeping Word2Vec {kept.payload['version']}: {unseen:.1%} of item texts are new"
            )
            per_category[category] = {
                "retrained": False,
                "version": kept.payload["version"],
                "new_text_share": round(unseen, 4),
                **kept.payload["describe"],
            }
            fingerprints[category] = store.fingerprint("word2vec_model")
            continue
        reason = _RETRAIN_REASONS.get(why, why.removeprefix("recorded output unusable: "))
        if int(texts["tokens"].list.len().sum() or 0) == 0:
            # The published 5-core files ship without metadata: no text at all is a normal state, not an error.
            context.log.warning(f"{category}: no item text to train Word2Vec on; text vectors will be empty")
            store.remove(Artifact.WORD2VEC_MODEL)
            store.write(
                Artifact.WORD2VEC_INFO, {"options": fingerprint, "version": "none", "describe": {"vocabulary_size": 0}}
            )
            store.write(Artifact.WORD2VEC_TRAINED_ON, texts.select("content_hash").unique())
            per_category[category] = {
                "retrained": False,
                "reason": "no item text",
                "version": "none",
                "vocabulary_size": 0,
            }
            fingerprints[category] = store.fingerprint("word2vec_model")
            continue
        context.log.info(f"{category}: training Word2Vec ({reason})")
        model = train_word2vec(texts["tokens"], _w2v_options(config), logger=context.log)
        save_model(model, model_path)
        version = hashlib.sha256((fingerprint + "".join(sorted(current))).encode()).hexdigest()[:16]
        store.write(Artifact.WORD2VEC_TRAINED_ON, texts.select("content_hash").unique())
        describe = describe_model(model)
        store.write(Artifact.WORD2VEC_INFO, {"options": fingerprint, "version": version, "describe": describe})
        fingerprints[category] = store.fingerprint("word2vec_model")
        per_category[category] = {
            "retrained": True,
            "reason": reason,
            "version": version,
            **describe,
            "path": dg.MetadataValue.path(str(model_path)),
        }
    return materialized(context, per_category, fingerprints)


@category_asset(
    ins=["item_text", "word2vec_model", "items"],
    group_name=FEATURES,
    kinds={"numpy", "parquet"},
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec("no_nan", asset="item_text_vectors"),
        dg.AssetCheckSpec(
            "coverage",
            asset="item_text_vectors",
            description="Share of items with a text vector above min_coverage.",
            blocking=False,
        ),
    ],
    description="Average (or TF-IDF weighted average) of each item's in-vocabulary Word2Vec vectors; zero vector + "
    "mask otherwise.",
)
def item_text_vectors(
    context: dg.AssetExecutionContext,
    config: TextVectorsConfig,
    item_text: Stored,
    word2vec_model: Stored,
    items: Stored,
    lake: Lake,
) -> dg.MaterializeResult:
    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    no_nan: dict[str, tuple[bool, str]] = {}
    coverage_ok: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        store = lake.category(category)
        texts = item_text[category].read(Artifact.ITEM_TEXT, columns=["item_id", "content_hash", "tokens"])
        sidecar = word2vec_model[category].read_json(Artifact.WORD2VEC_INFO)
        version = f"{sidecar['version']}:{config.weighting}"
        previous = store.read_cache(Artifact.ITEM_TEXT_VECTORS, context.log)
        if previous is not None and "model_version" in previous.columns:
            previous = previous.filter(pl.col("model_version") == version)  # the key: text and Word2Vec version

        def vectorize(
            todo: pl.DataFrame,
            texts: pl.DataFrame = texts,
            weighting: Literal["mean", "tfidf"] = config.weighting,
            category: str = category,
        ) -> pl.DataFrame:
            if not todo.height:
                return pl.DataFrame(schema=_VECTOR_SCHEMA)
            model = load_model(word2vec_model[category].path(Artifact.WORD2VEC_MODEL))
            idf = document_frequencies(texts["tokens"]) if weighting == "tfidf" else None
            vectors, mask = item_vectors(todo["tokens"], model, weighting, idf)
            return vectors_frame(todo["content_hash"], vectors, mask).rename({"item_id": "content_hash"})

        if sidecar["version"] == "none":  # no text to train Word2Vec on: no vector, nothing computed
            reuse = Reuse(
                texts.select("item_id", "content_hash").with_columns(
                    pl.lit(None, pl.Array(pl.Float32, 1)).alias("vector"), pl.lit(None, pl.Boolean).alias("has_vector")
                ),
                0,
                0,
                texts.height,
            )
        else:
            # One vector per distinct text: items sharing a text (variants, relisted products) are vectorized once.
            reuse = reuse_by_key(
                texts,
                "content_hash",
                previous,
                vectorize,
                keep=["item_id", "content_hash"],
                values=["vector", "has_vector"],
            )
        reused = reuse.reused_rows
        context.log.info(f"{category}: {reused} item vectors reused, {reuse.computed_keys} distinct texts vectorized")
        frame = reuse.frame.with_columns(pl.lit(version).alias("model_version"))
        store.write(Artifact.ITEM_TEXT_VECTORS, frame)
        fingerprints[category] = store.fingerprint("item_text_vectors")
        frame = frame.with_columns(pl.col("has_vector").fill_null(False))
        with_vector = frame.filter(pl.col("vector").is_not_null())
        matrix = (
            np.asarray(with_vector["vector"].to_numpy(), dtype=np.float32)
            if with_vector.height
            else np.zeros((0, 1), np.float32)
        )
        mask = with_vector["has_vector"].to_numpy() if with_vector.height else np.zeros(0, bool)
        coverage = int(frame["has_vector"].sum()) / frame.height if frame.height else 0.0
        nan_rows = int(np.isnan(matrix).any(axis=1).sum()) if matrix.size else 0
        no_nan[category] = (nan_rows == 0, f"{nan_rows} rows with NaN")
        coverage_ok[category] = (
            coverage >= config.min_coverage,
            f"coverage {coverage:.1%} (min {config.min_coverage:.0%})",
        )
        per_category[category] = {
            "items": frame.height,
            "computed_now": reuse.computed_keys,  # distinct texts vectorized in this run
            "reused": reused,  # items whose vector came from an earlier run
            "coverage": round(coverage, 4),
            "dimensions": int(matrix.shape[1]) if matrix.ndim == 2 else 0,
            "weighting": config.weighting,
            "nearest_neighbours": dg.MetadataValue.md(_neighbours_md(items[category], with_vector, matrix, mask)),
        }
    return materialized(
        context,
        per_category,
        fingerprints,
        [
            combined_check("no_nan", no_nan, "item_text_vectors"),
            combined_check("coverage", coverage_ok, "item_text_vectors", dg.AssetCheckSeverity.WARN),
        ],
    )


def _neighbours_md(
    items: Upstream, frame: pl.DataFrame, matrix: np.ndarray, mask: np.ndarray, n_queries: int = 4
) -> str:
    """A few items with their nearest neighbours by text vector, titled, so a person can judge the vectors."""
    if frame.height < 2 or not mask.any():
        return "_no vectors_"
    titles = dict(items.read(Artifact.ITEMS, columns=["item_id", "title"]).iter_rows())
    ids = frame["item_id"].to_list()
    queries = [ids[i] for i in np.flatnonzero(mask)[:n_queries]]
    rows = []
    # Centred vectors, identical texts skipped: raw averaged word vectors put every neighbour at cosine ~1.00.
    neighbours_of = nearest_neighbours(matrix, mask, ids, queries, k=3, center=True, text_hashes=frame["content_hash"])
    for query, neighbours in neighbours_of.items():
        rows.append(
            {
                "item": f"{query}: {str(titles.get(query) or '')[:40]}",
                "nearest (centred cosine)": "; ".join(
                    f"{str(titles.get(n) or n)[:30]} ({s:.3f})" for n, s in neighbours
                ),
            }
        )
    return md_table(rows)
