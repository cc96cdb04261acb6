"""Training assets: one per model, all behind the same ``Recommender`` interface.

Built by a factory so every model gets the same config, metadata (training curves, throughput, model path,
TensorBoard logs) and skip-if-unchanged behaviour. Keras models run in the ``gpu`` pool: TensorFlow keeps device
memory for its process's life, so at most one such step runs at a time (the default multiprocess executor
gives each step its own process, which frees the memory when the step ends). The rankers (``popularity``,
``ease``) are closed-form numpy models beside the rating models, so one comparison table judges them all.
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
from rec_pipeline.atomic import write_json
from rec_pipeline.paths import DataLayout
from rec_pipeline.plots import line_plot_md
from rec_pipeline.resources import DataLake, step_config

TRAINING = "training"
MODEL_NAMES = ("global_mean", "popularity", "biases", "ease", "mf", "ncf", "neumf", "hybrid", "autorec")
KERAS_MODELS = frozenset({"mf", "ncf", "neumf", "hybrid", "autorec"})
CONTENT_MODELS = frozenset({"hybrid"})
TRAINING_CODE_VERSION = "2"


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
    """Identity of what a model is trained from: split files, content features (hybrid), settings, code."""
    digest = hashlib.sha256()
    files = [layout.artifact(category, f"splits/{s}.parquet") for s in ("train", "validation")]
    if name in CONTENT_MODELS:
        files += [layout.artifact(category, "item_text_vectors.parquet"), layout.artifact(category, "image_embeddings.parquet")]
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

    model_dir = model_artifact_dir(layout, category, name)
    summary_path = model_dir.parent / f"{name}.training.json"
    fingerprint = _inputs_fingerprint(layout, category, name, config)
    if not config.force and summary_path.exists() and (model_dir / "model.json").exists():
        previous = json.loads(summary_path.read_text())
        if previous.get("fingerprint") == fingerprint:
            log.info(f"{category}/{name}: data and settings unchanged since the last training: keeping the saved model")
            return {**previous, "skipped_unchanged": True}
    train = pl.read_parquet(layout.artifact(category, "splits/train.parquet"))
    validation = pl.read_parquet(layout.artifact(category, "splits/validation.parquet"))
    content = load_item_content(layout, category) if name in CONTENT_MODELS else None
    if name in CONTENT_MODELS and content is None:
        log.warning(f"{category}/{name}: no item text vectors or image embeddings: the hybrid trains on ids alone")
        content = empty_content(train["item_id"].unique().sort().to_list())
    options = TrainOptions(
        epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate, embedding_dim=config.embedding_dim,
        l2=config.l2, dropout=config.dropout, early_stopping_patience=config.early_stopping_patience, seed=config.seed,
        mixed_precision=config.mixed_precision, distribution=config.distribution,
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
        skipped = {"model": name, "fingerprint": fingerprint, "skipped_reason": str(exc), "history": {}, "best_val_rmse": None,
                   "train_rows": train.height, "validation_rows": validation.height, "path": str(model_dir), "skipped_unchanged": False}
        write_json(skipped, summary_path)
        return skipped
    model.save(model_dir)
    summary = {"model": name, "fingerprint": fingerprint, "history": history.to_dict(), "best_val_rmse": history.best_val_rmse,
               "train_rows": train.height, "validation_rows": validation.height, "path": str(model_dir),
               "tensorboard_dir": str(options.tensorboard_dir) if options.tensorboard_dir else None, "skipped_unchanged": False}
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
        metadata["training_curves"] = dg.MetadataValue.md(line_plot_md({k: v for k, v in curves.items() if v}, f"{summary['model']} training", "epoch", "MSE loss"))
    if summary.get("tensorboard_dir"):
        metadata["tensorboard_logs"] = dg.MetadataValue.path(summary["tensorboard_dir"])
    return metadata


def build_model_asset(name: str) -> dg.AssetsDefinition:
    deps: list[str] = ["splits"]
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
        description=f"The `{name}` recommender trained on the training split (early stopping on validation).",
    )
    def _model(context: dg.AssetExecutionContext, config: TrainingConfig, lake: DataLake) -> dg.MaterializeResult:
        settings = lake.settings()
        per_category = {
            c: _summary_metadata(train_one(lake.layout, c, name, step_config(context, config, lake, c, settings), context.log))
            for c in context.partition_keys
        }
        return dg.MaterializeResult(metadata=merge_category_metadata(per_category))

    return _model


model_assets = [build_model_asset(name) for name in MODEL_NAMES]
