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

from rec_pipeline.assets.metadata import combined_check, counts_md, md_table, merge_category_metadata
from rec_pipeline.assets.partitions import CATEGORY_PARTITIONS
from rec_pipeline.atomic import read_artifact, read_cache, write_json, write_parquet
from rec_pipeline.paths import DataLayout
from rec_pipeline.resources import DataLake, step_config
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

FEATURES = "features"


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


class TextVectorsConfig(dg.Config):
    weighting: Literal["mean", "tfidf"] = "mean"
    min_coverage: float = 0.5  # share of items that must get a non-zero vector


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS,
    group_name=FEATURES,
    kinds={"nltk", "polars"},
    code_version="1",
    deps=["items"],
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.eager(),
    description="One cleaned token list per item from title, features, description, categories (fallback: brand).",
)
def item_text(context: dg.AssetExecutionContext, config: ItemTextConfig, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.layout
    stopwords = load_stopwords()
    per_category: dict[str, dict[str, Any]] = {}
    for category in context.partition_keys:
        cfg = step_config(context, config, lake, category)
        options = TextCleaningOptions(
            stem=cfg.stem,
            min_token_length=cfg.min_token_length,
            drop_numbers=cfg.drop_numbers,
            remove_stopwords=cfg.remove_stopwords,
        )
        settings = options_fingerprint(options, stopwords) + CLEANING_VERSION
        items = read_artifact(layout.artifact(category, Artifact.ITEMS), columns=list(ITEM_SCHEMA))
        items = items.with_columns(_raw_text_hash(settings).alias("raw_hash"))
        out_path = layout.artifact(category, Artifact.ITEM_TEXT)
        previous = read_cache(out_path, context.log)
        if previous is not None and "raw_hash" in previous.columns:
            reusable = previous.drop("item_id").unique("raw_hash")
            reused = items.select("item_id", "raw_hash").join(reusable, on="raw_hash", how="inner")
            todo = items.filter(~pl.col("raw_hash").is_in(reusable["raw_hash"].implode()))
        else:
            reused, todo = None, items
        context.log.info(f"{category}: {items.height - todo.height} item texts unchanged, {todo.height} to clean")
        fresh, _ = clean_item_text(todo.drop("raw_hash"), options, stopwords, logger=context.log)
        fresh = fresh.join(todo.select("item_id", "raw_hash"), on="item_id", how="left")
        cleaned = (
            pl.concat([reused.select(fresh.columns), fresh], how="vertical")
            if reused is not None and reused.height
            else fresh
        )
        cleaned = items.select("item_id").join(cleaned, on="item_id", how="left", maintain_order="left")
        write_parquet(cleaned, out_path)
        report = cleaning_report(cleaned, options, stopwords)
        meta = report.as_metadata()
        per_category[category] = {
            "items": report.n_items,
            "cleaned_now": todo.height,
            "reused": items.height - todo.height,
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
    return dg.MaterializeResult(metadata=merge_category_metadata(per_category))


def _raw_text_hash(settings: str) -> pl.Expr:
    """Identity of everything cleaning reads, plus the settings: equal hash, equal tokens, so no re-cleaning.

    polars' hash may change across polars versions; that only costs one full re-clean, never a wrong reuse
    (a changed hash misses the cache, it cannot match another text).
    """
    fields = [pl.col(c).cast(pl.String).fill_null("") for c in ("title", "brand")] + [
        pl.col(c).list.join("\u241e").fill_null("") for c in ("categories", "description", "features")
    ]
    return pl.concat_str([pl.lit(settings), *fields], separator="\u241f").hash(seed=0).cast(pl.String)


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


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS,
    group_name=FEATURES,
    kinds={"gensim"},
    code_version="1",
    deps=[item_text],
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.eager(),
    description="gensim Word2Vec trained on the item texts (optionally initialized from pretrained vectors). Kept while few texts change.",
)
def word2vec_model(context: dg.AssetExecutionContext, config: Word2VecConfig, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.layout
    per_category: dict[str, dict[str, Any]] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        fingerprint = _options_fingerprint(config)
        texts = read_artifact(layout.artifact(category, Artifact.ITEM_TEXT), columns=["content_hash", "tokens"])
        model_path = layout.artifact(category, Artifact.WORD2VEC_MODEL)
        sidecar_path = layout.artifact(category, Artifact.WORD2VEC_INFO)
        trained_path = layout.artifact(category, Artifact.WORD2VEC_TRAINED_ON)
        current = set(texts["content_hash"].to_list())
        reason = "no model yet"
        if model_path.exists() and sidecar_path.exists() and trained_path.exists() and not config.force_retrain:
            sidecar = json.loads(sidecar_path.read_text())
            seen = set(read_artifact(trained_path)["content_hash"].to_list())
            unseen = len(current - seen) / max(1, len(current))
            if sidecar.get("options") != fingerprint:
                reason = "settings changed"
            elif unseen > config.retrain_threshold:
                reason = f"{unseen:.0%} of item texts are new (> retrain_threshold {config.retrain_threshold:.0%})"
            else:
                context.log.info(
                    f"{category}: keeping Word2Vec {sidecar['version']}: {unseen:.1%} of item texts are new"
                )
                per_category[category] = {
                    "retrained": False,
                    "version": sidecar["version"],
                    "new_text_share": round(unseen, 4),
                    **sidecar["describe"],
                }
                continue
        elif config.force_retrain:
            reason = "force_retrain"
        if int(texts["tokens"].list.len().sum() or 0) == 0:
            # The published 5-core files ship without metadata: no text at all is a normal state, not an error.
            context.log.warning(f"{category}: no item text to train Word2Vec on; text vectors will be empty")
            model_path.unlink(missing_ok=True)
            write_json({"options": fingerprint, "version": "none", "describe": {"vocabulary_size": 0}}, sidecar_path)
            write_parquet(texts.select("content_hash").unique(), trained_path)
            per_category[category] = {
                "retrained": False,
                "reason": "no item text",
                "version": "none",
                "vocabulary_size": 0,
            }
            continue
        context.log.info(f"{category}: training Word2Vec ({reason})")
        model = train_word2vec(texts["tokens"], _w2v_options(config), logger=context.log)
        save_model(model, model_path)
        version = hashlib.sha256((fingerprint + "".join(sorted(current))).encode()).hexdigest()[:16]
        write_parquet(texts.select("content_hash").unique(), trained_path)
        describe = describe_model(model)
        write_json({"options": fingerprint, "version": version, "describe": describe}, sidecar_path)
        per_category[category] = {
            "retrained": True,
            "reason": reason,
            "version": version,
            **describe,
            "path": dg.MetadataValue.path(str(model_path)),
        }
    return dg.MaterializeResult(metadata=merge_category_metadata(per_category))


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS,
    group_name=FEATURES,
    kinds={"numpy", "parquet"},
    code_version="1",
    deps=[word2vec_model],
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec("no_nan", asset="item_text_vectors"),
        dg.AssetCheckSpec(
            "coverage",
            asset="item_text_vectors",
            description="Share of items with a text vector above min_coverage.",
            blocking=False,
        ),
    ],
    description="Average (or TF-IDF weighted average) of each item's in-vocabulary Word2Vec vectors; zero vector + mask otherwise.",
)
def item_text_vectors(
    context: dg.AssetExecutionContext, config: TextVectorsConfig, lake: DataLake
) -> dg.MaterializeResult:
    layout = lake.layout
    per_category: dict[str, dict[str, Any]] = {}
    no_nan: dict[str, tuple[bool, str]] = {}
    coverage_ok: dict[str, tuple[bool, str]] = {}
    for category in context.partition_keys:
        config = step_config(context, config, lake, category)
        texts = read_artifact(
            layout.artifact(category, Artifact.ITEM_TEXT), columns=["item_id", "content_hash", "tokens"]
        )
        sidecar = json.loads(layout.artifact(category, Artifact.WORD2VEC_INFO).read_text())
        version = f"{sidecar['version']}:{config.weighting}"
        out_path = layout.artifact(category, Artifact.ITEM_TEXT_VECTORS)
        cached = pl.DataFrame()
        if (previous := read_cache(out_path, context.log)) is not None:
            cached = (
                previous.filter(pl.col("model_version") == version)
                .unique("content_hash")
                .select("content_hash", "vector", "has_vector")
            )
        # One vector per distinct text: items sharing a text (variants, relisted products) would otherwise be
        # vectorized twice and, worse, each joined to every duplicate row below.
        todo = texts.filter(~pl.col("content_hash").is_in(cached["content_hash"].implode())) if cached.height else texts
        todo = todo.unique("content_hash", keep="first", maintain_order=True)
        if sidecar["version"] == "none":
            todo = todo.head(0)
            cached = pl.DataFrame(
                schema={"content_hash": pl.String, "vector": pl.Array(pl.Float32, 1), "has_vector": pl.Boolean}
            )
        reused = texts.height - int(texts["content_hash"].is_in(todo["content_hash"].implode()).sum())
        context.log.info(f"{category}: {reused} item vectors reused, {todo.height} distinct texts to vectorize")
        if todo.height:
            model = load_model(layout.artifact(category, Artifact.WORD2VEC_MODEL))
            idf = None
            if config.weighting == "tfidf":
                idf = document_frequencies(texts["tokens"])
            vectors, mask = item_vectors(todo["tokens"], model, config.weighting, idf)
            fresh = vectors_frame(todo["content_hash"], vectors, mask).rename({"item_id": "content_hash"})
            cached = pl.concat([cached, fresh], how="vertical") if cached.height else fresh
        frame = (
            texts.select("item_id", "content_hash")
            .join(cached, on="content_hash", how="left")
            .with_columns(pl.lit(version).alias("model_version"))
        )
        write_parquet(frame, out_path)
        frame = frame.with_columns(pl.col("has_vector").fill_null(False))
        with_vector = frame.filter(pl.col("vector").is_not_null())
        matrix = (
            np.asarray(with_vector["vector"].to_numpy(), dtype=np.float32)
            if with_vector.height
            else np.zeros((0, 1), np.float32)
        )
        mask = with_vector["has_vector"].to_numpy() if with_vector.height else np.zeros(0, bool)
        coverage = float(frame["has_vector"].mean()) if frame.height else 0.0
        nan_rows = int(np.isnan(matrix).any(axis=1).sum()) if matrix.size else 0
        no_nan[category] = (nan_rows == 0, f"{nan_rows} rows with NaN")
        coverage_ok[category] = (
            coverage >= config.min_coverage,
            f"coverage {coverage:.1%} (min {config.min_coverage:.0%})",
        )
        per_category[category] = {
            "items": frame.height,
            "computed_now": todo.height,  # distinct texts vectorized in this run
            "reused": reused,  # items whose vector came from an earlier run
            "coverage": round(coverage, 4),
            "dimensions": int(matrix.shape[1]) if matrix.ndim == 2 else 0,
            "weighting": config.weighting,
            "nearest_neighbours": dg.MetadataValue.md(_neighbours_md(layout, category, with_vector, matrix, mask)),
        }
    return dg.MaterializeResult(
        metadata=merge_category_metadata(per_category),
        check_results=[
            combined_check("no_nan", no_nan, "item_text_vectors"),
            combined_check("coverage", coverage_ok, "item_text_vectors", dg.AssetCheckSeverity.WARN),
        ],
    )


def _neighbours_md(
    layout: DataLayout, category: str, frame: pl.DataFrame, matrix: np.ndarray, mask: np.ndarray, n_queries: int = 4
) -> str:
    """A few items with their nearest neighbours by text vector, titled, so a person can judge the vectors."""
    if frame.height < 2 or not mask.any():
        return "_no vectors_"
    titles = dict(read_artifact(layout.artifact(category, Artifact.ITEMS), columns=["item_id", "title"]).iter_rows())
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
