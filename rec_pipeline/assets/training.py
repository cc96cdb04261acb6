"""Training assets: one per model, all behind the same ``Recommender`` interface.

Built by a factory so every model gets the same config, metadata (training curves, throughput, model path,
TensorBoard logs) and skip-if-unchanged behaviour. Keras models run in the ``gpu`` pool: TensorFlow keeps device
memory for its process's life, so at most one such step runs at a time (the default multiprocess executor
gives each step its own process, which frees the memory when the step ends). The rankers (``popularity``,
``ease``, ``two_tower``) sit beside the rating models, so one comparison table judges them all.

``cold_items`` holds a seeded share of the items with content out of every model's training (the item cold-start
protocol, ``rec_pipeline.evaluation.cold_items``); models train on the *warm* splits (``warm_split``), and
``model_metrics`` measures them on the held-out items' interactions.
"""

# No `from __future__ import annotations`: Dagster reads Config/resource types from the signature at runtime.
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import polars as pl

from rec_pipeline.assets.metadata import merge_category_metadata
from rec_pipeline.assets.partitions import CATEGORY_PARTITIONS
from rec_pipeline.atomic import write_json, write_parquet
from rec_pipeline.paths import DataLayout
from rec_pipeline.plots import line_plot_md
from rec_pipeline.resources import DataLake, step_config
from rec_pipeline.warehouse import Artifact, split_artifact

TRAINING = "training"
MODEL_NAMES = (
    "global_mean",
    "popularity",
    "biases",
    "ease",
    "mf",
    "mf_als",
    "ncf",
    "neumf",
    "hybrid",
    "hybrid_seed000",
    "autorec",
    "two_tower",
)
KERAS_MODELS = frozenset({"mf", "ncf", "neumf", "hybrid", "hybrid_seed000", "autorec", "two_tower"})
CONTENT_MODELS = frozenset({"hybrid", "hybrid_seed000", "two_tower"})
TRAINING_CODE_VERSION = "3"  # 3: trained on the warm splits (cold items held out)


class ColdItemsConfig(dg.Config):
    """The item cold-start hold-out: which items no model may train on."""

    cold_item_fraction: float = 0.1  # share of the rated items that have content (text or image), held out; 0: none
    seed: int = 42


def cold_item_ids(layout: DataLayout, category: str) -> list[str]:
    """The held-out items of the category; none when ``cold_items`` has not run (e.g. a partial materialization)."""
    path = layout.artifact(category, Artifact.COLD_ITEMS)
    return pl.read_parquet(path)["item_id"].to_list() if path.exists() else []


def warm_split(layout: DataLayout, category: str, name: str) -> pl.DataFrame:
    """``splits/<name>.parquet`` without the held-out cold items: what models train, and are normally evaluated, on."""
    from rec_pipeline.evaluation.cold_items import without_items

    return without_items(
        pl.read_parquet(layout.artifact(category, split_artifact(name))), cold_item_ids(layout, category)
    )


@dg.asset(
    partitions_def=CATEGORY_PARTITIONS,
    group_name=TRAINING,
    kinds={"polars", "parquet"},
    code_version="1",
    deps=["splits", "item_text_vectors", "image_embeddings"],
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="A seeded share (cold_item_fraction) of the items with content, held out of every model's training: their "
    "interactions (from all splits) are the cold set on which model_metrics reports rmse_cold and ndcg_cold@K.",
)
def cold_items(context: dg.AssetExecutionContext, config: ColdItemsConfig, lake: DataLake) -> dg.MaterializeResult:
    from rec_pipeline.evaluation.cold_items import only_items, select_cold_items
    from rec_pipeline.item_content import load_item_content

    layout = lake.layout
    per_category: dict[str, dict[str, Any]] = {}
    for category in context.partition_keys:
        cfg = step_config(context, config, lake, category)
        interactions = pl.concat(
            [
                pl.read_parquet(layout.artifact(category, split_artifact(name)))
                for name in ("train", "validation", "test")
            ],
            how="vertical_relaxed",
        )
        content = load_item_content(layout, category)
        with_content = (
            []
            if content is None
            else [
                item
                for item, text, image in zip(content.item_ids, content.text_mask, content.image_mask, strict=True)
                if text or image
            ]
        )
        held_out = select_cold_items(interactions, with_content, cfg.cold_item_fraction, cfg.seed)
        cold = only_items(interactions, held_out)
        held_out_frame = pl.DataFrame({"item_id": held_out}, schema={"item_id": pl.String})
        write_parquet(held_out_frame, layout.artifact(category, Artifact.COLD_ITEMS))
        write_parquet(cold, layout.artifact(category, Artifact.COLD_INTERACTIONS))
        n_items = interactions["item_id"].n_unique()
        context.log.info(
            f"{category}: {len(held_out):,} of {len(with_content):,} items with content held out of training "
            f"({cold.height:,} of {interactions.height:,} interactions)"
        )
        per_category[category] = {
            "cold_items": len(held_out),
            "items_with_content": len(with_content),
            "items": n_items,
            "cold_interactions": cold.height,
            "cold_share_of_interactions": round(cold.height / max(1, interactions.height), 4),
            "cold_item_fraction": cfg.cold_item_fraction,
            "path": dg.MetadataValue.path(str(layout.artifact(category, Artifact.COLD_INTERACTIONS))),
        }
    return dg.MaterializeResult(metadata=merge_category_metadata(per_category))


class TrainingConfig(dg.Config):
    """Hyper-parameters shared by the models (model-specific sizes keep their documented defaults)."""

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float | None = None  # None: the model's own default
    embedding_dim: int = 32
    l2: float = 1e-4
    dropout: float = 0.2
    early_stopping_patience: int = 3
    seed: int = 42
    mixed_precision: bool = False
    distribution: Literal["default", "mirrored", "one_device"] = "default"
    force: bool = False  # retrain even if data and settings are unchanged
    # Constructor arguments of this asset's model, e.g. {"l2": 300, "max_items": 30000} for model_ease.
    model_params: dict[str, Any] = {}


def model_artifact_dir(layout: DataLayout, category: str, name: str) -> Path:
    return layout.model_dir(category, name)


def _inputs_fingerprint(layout: DataLayout, category: str, name: str, config: TrainingConfig) -> str:
    """Identity of what a model is trained from: split files, held-out items, content features, settings, code."""
    digest = hashlib.sha256()
    files = [layout.artifact(category, split_artifact(s)) for s in ("train", "validation")]
    files.append(layout.artifact(category, Artifact.COLD_ITEMS))
    if name in CONTENT_MODELS:
        files += [
            layout.artifact(category, Artifact.ITEM_TEXT_VECTORS),
            layout.artifact(category, Artifact.IMAGE_EMBEDDINGS),
        ]
    for path in files:
        if path.exists():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    # Empty model_params left out, so adding the setting did not change (and retrain) every existing model.
    exclude = {"force"} if config.model_params else {"force", "model_params"}
    digest.update(json.dumps(config.model_dump(exclude=exclude), sort_keys=True).encode())
    digest.update(f"{name}:{TRAINING_CODE_VERSION}".encode())
    return digest.hexdigest()[:16]


def train_one(layout: DataLayout, category: str, name: str, config: TrainingConfig, log: Any) -> dict[str, Any]:
    """Fit ``name`` on the category's splits and save it; returns the training summary (also saved as JSON)."""
    from rec_pipeline.item_content import empty_content, load_item_content
    from rec_pipeline.models import ModelNotApplicable, TrainingData, TrainOptions, create_model
    from rec_pipeline.models.artifacts import is_saved_model

    model_dir = model_artifact_dir(layout, category, name)
    summary_path = layout.training_summary(category, name)
    fingerprint = _inputs_fingerprint(layout, category, name, config)
    if not config.force and summary_path.exists() and is_saved_model(model_dir):
        previous = json.loads(summary_path.read_text())
        if previous.get("fingerprint") == fingerprint:
            log.info(f"{category}/{name}: data and settings unchanged since the last training: keeping the saved model")
            return {**previous, "skipped_unchanged": True}
    train, validation = warm_split(layout, category, "train"), warm_split(layout, category, "validation")
    content = load_item_content(layout, category) if name in CONTENT_MODELS else None
    if name in CONTENT_MODELS and content is None:
        log.warning(
            f"{category}/{name}: no item text vectors or image embeddings: the {name} model trains on ids alone"
        )
        content = empty_content(train["item_id"].unique().sort().to_list())
    options = TrainOptions(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        embedding_dim=config.embedding_dim,
        l2=config.l2,
        dropout=config.dropout,
        early_stopping_patience=config.early_stopping_patience,
        seed=config.seed,
        mixed_precision=config.mixed_precision,
        distribution=config.distribution,
        checkpoint_dir=layout.category_dir(category) / "checkpoints" / name,
        tensorboard_dir=layout.category_dir(category) / "tensorboard" / name if name in KERAS_MODELS else None,
    )
    try:
        model = create_model(name, **config.model_params)
    except ValueError as exc:
        raise dg.Failure(description=f"{category}/model_{name}: {exc}") from exc
    log.info(f"{category}/{name}: training on {train.height:,} ratings (validation {validation.height:,})")
    try:
        history = model.fit(TrainingData(train, validation, content), options, logger=log)
    except ModelNotApplicable as exc:
        # Skip, not fail: one model that cannot run on this catalogue must not stop the others. A model saved
        # from an earlier, smaller catalogue is removed so evaluation never scores it against the new splits.
        log.warning(f"{category}/{name}: skipped: {exc}")
        shutil.rmtree(model_dir, ignore_errors=True)
        skipped = {
            "model": name,
            "fingerprint": fingerprint,
            "skipped_reason": str(exc),
            "history": {},
            "best_val_rmse": None,
            "train_rows": train.height,
            "validation_rows": validation.height,
            "path": str(model_dir),
            "skipped_unchanged": False,
        }
        write_json(skipped, summary_path)
        return skipped
    model.save(model_dir)
    summary = {
        "model": name,
        "fingerprint": fingerprint,
        "history": history.to_dict(),
        "best_val_rmse": history.best_val_rmse,
        "train_rows": train.height,
        "validation_rows": validation.height,
        "path": str(model_dir),
        "tensorboard_dir": str(options.tensorboard_dir) if options.tensorboard_dir else None,
        "skipped_unchanged": False,
    }
    write_json(summary, summary_path)
    return summary


def _summary_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    if summary.get("skipped_reason"):
        return {"skipped": dg.MetadataValue.text(summary["skipped_reason"]), "train_rows": summary["train_rows"]}
    history = summary["history"]
    curves = {k: [v for v in history.get(k, []) if v is not None] for k in ("loss", "val_loss")}
    metadata: dict[str, Any] = {
        "best_val_rmse": summary["best_val_rmse"] if summary["best_val_rmse"] is not None else "n/a",
        "best_epoch": history.get("best_epoch"),
        "epochs_run": history.get("epochs_run"),
        "examples_per_second": round(float(history.get("examples_per_second") or 0.0), 1),
        "wall_seconds": round(float(history.get("wall_seconds") or 0.0), 2),
        "train_rows": summary["train_rows"],
        "skipped_unchanged": summary.get("skipped_unchanged", False),
        "model_path": dg.MetadataValue.path(summary["path"]),
    }
    if any(len(v) > 1 for v in curves.values()):
        loss_name = "sampled-softmax loss" if summary["model"] == "two_tower" else "MSE loss"
        plotted = {k: v for k, v in curves.items() if v}
        metadata["training_curves"] = dg.MetadataValue.md(
            line_plot_md(plotted, f"{summary['model']} training", "epoch", loss_name)
        )
    if summary.get("tensorboard_dir"):
        metadata["tensorboard_logs"] = dg.MetadataValue.path(summary["tensorboard_dir"])
    return metadata


def build_model_asset(name: str) -> dg.AssetsDefinition:
    deps: list[str] = ["splits", "cold_items"]
    if name in CONTENT_MODELS:
        deps += ["item_text_vectors", "image_embeddings"]

    @dg.asset(
        name=f"model_{name}",
        partitions_def=CATEGORY_PARTITIONS,
        group_name=TRAINING,
        kinds={"tensorflow", "keras"} if name in KERAS_MODELS else {"numpy"},
        code_version=TRAINING_CODE_VERSION,
        deps=deps,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="gpu" if name in KERAS_MODELS else None,
        description=f"The `{name}` recommender trained on the training split without the cold items (early stopping on "
        "validation).",
    )
    def _model(context: dg.AssetExecutionContext, config: TrainingConfig, lake: DataLake) -> dg.MaterializeResult:
        settings = lake.settings()
        per_category = {
            c: _summary_metadata(
                train_one(lake.layout, c, name, step_config(context, config, lake, c, settings), context.log)
            )
            for c in context.partition_keys
        }
        return dg.MaterializeResult(metadata=merge_category_metadata(per_category))

    return _model


model_assets = [build_model_asset(name) for name in MODEL_NAMES]
