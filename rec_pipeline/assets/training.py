"""Training assets: one per model of the registry's catalogue (``rec_pipeline.models.registry.CATALOGUE``, the one
list of models), all behind the same ``Recommender`` interface.

Built by a factory so every model gets the same config, metadata (training curves, throughput, model path,
TensorBoard logs) and skip-if-unchanged behaviour (``rec_pipeline.incremental.reuse_record`` keyed by the inputs'
fingerprint); a model's inputs (``splits``, ``cold_items``, and the content features when its catalogue entry says
``content``) are its asset's inputs. Keras models (``keras`` in the catalogue) run in the ``gpu`` pool: TensorFlow
keeps device memory for its process's life, so at most one such step runs at a time (the default multiprocess
executor gives each step its own process, which frees the memory when the step ends). The rankers (``popularity``,
``ease``, ``two_tower``) sit beside the rating models, so one comparison table judges them all.

``cold_items`` holds a seeded share of the items with content out of every model's training (the item cold-start
protocol, ``rec_pipeline.evaluation.cold_items``); models train on the *warm* splits (``warm``), and
``model_metrics`` measures them on the held-out items' interactions.
"""

# No `from __future__ import annotations`: Dagster reads Config/resource types from the signature at runtime.
import dataclasses
import hashlib
import json
import shutil
from typing import Any, Literal

import dagster as dg
import polars as pl

from rec_pipeline.assets.factory import GPU_POOL, category_asset, materialized
from rec_pipeline.incremental import Record, reuse_record
from rec_pipeline.models.registry import CATALOGUE, CONTENT_MODELS, KERAS_MODELS, MODEL_NAMES, ModelSpec
from rec_pipeline.models.search import SEARCHABLE_MODELS, resolve_space, search
from rec_pipeline.paths import DataLayout
from rec_pipeline.plots import line_plot_md
from rec_pipeline.resources import Lake, step_config
from rec_pipeline.warehouse import Artifact, split_artifact
from rec_pipeline.warehouse_io import CategoryStore, Stored, Upstream, file_digest, stored

# The registry's lists (rec_pipeline.models.registry.CATALOGUE is the one list of models), importable from here too.
__all__ = ["CONTENT_MODELS", "KERAS_MODELS", "MODEL_NAMES"]

TRAINING = "training"
TRAINING_CODE_VERSION = "4"  # 3: trained on the warm splits (cold items held out); 4: tuned on validation
MODEL_INPUTS = ("splits", "cold_items")  # what every model reads; content models also read CONTENT_INPUTS
CONTENT_INPUTS = ("item_text_vectors", "image_embeddings")


class ColdItemsConfig(dg.Config):
    """The item cold-start hold-out: which items no model may train on."""

    cold_item_fraction: float = 0.1  # share of the rated items that have content (text or image), held out; 0: none
    seed: int = 42


def held_out_items(cold_items: Upstream) -> list[str]:
    """The held-out items of one category; none when ``cold_items`` has not run (e.g. a partial materialization)."""
    if not cold_items.exists(Artifact.COLD_ITEMS):
        return []
    return cold_items.read(Artifact.COLD_ITEMS)["item_id"].to_list()


def warm(splits: Upstream, cold_items: Upstream, name: str) -> pl.DataFrame:
    """Split ``name`` without the held-out cold items: what models train, and are normally evaluated, on."""
    from rec_pipeline.evaluation.cold_items import without_items

    return without_items(splits.read(split_artifact(name)), held_out_items(cold_items))


def cold_item_ids(layout: DataLayout, category: str) -> list[str]:
    """``held_out_items`` from a data root (scripts and benches, outside Dagster)."""
    return held_out_items(stored(layout, "cold_items")[category])


def warm_split(layout: DataLayout, category: str, name: str) -> pl.DataFrame:
    """``warm`` from a data root (scripts and benches, outside Dagster)."""
    return warm(stored(layout, "splits")[category], stored(layout, "cold_items")[category], name)


@category_asset(
    ins=["splits", "item_text_vectors", "image_embeddings"],
    eager=False,
    group_name=TRAINING,
    kinds={"polars", "parquet"},
    code_version="1",
    description="A seeded share (cold_item_fraction) of the items with content, held out of every model's training: "
    "their interactions (from all splits) are the cold set on which model_metrics reports rmse_cold and ndcg_cold@K.",
)
def cold_items(
    context: dg.AssetExecutionContext,
    config: ColdItemsConfig,
    splits: Stored,
    item_text_vectors: Stored,
    image_embeddings: Stored,
    lake: Lake,
) -> dg.MaterializeResult:
    from rec_pipeline.evaluation.cold_items import only_items, select_cold_items
    from rec_pipeline.item_content import load_item_content

    per_category: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    for category in context.partition_keys:
        cfg = step_config(context, config, lake, category)
        store = lake.category(category)
        interactions = pl.concat(
            [splits[category].read(split_artifact(name)) for name in ("train", "validation", "test")],
            how="vertical_relaxed",
        )
        content = load_item_content(item_text_vectors[category], image_embeddings[category])
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
        store.write(Artifact.COLD_ITEMS, pl.DataFrame({"item_id": held_out}, schema={"item_id": pl.String}))
        store.write(Artifact.COLD_INTERACTIONS, cold)
        fingerprints[category] = store.fingerprint("cold_items")
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
            "path": dg.MetadataValue.path(str(store.path(Artifact.COLD_INTERACTIONS))),
        }
    return materialized(context, per_category, fingerprints)


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
    distribution: Literal["default", "mirrored", "one_device"] = "default"  # mirrored: every local GPU
    # The Keras backend the models train on: set in the step process before Keras is imported (KERAS_BACKEND);
    # None: whatever KERAS_BACKEND says, TensorFlow when it is unset (the backend the pipeline is tuned for).
    backend: str | None = None  # tensorflow, jax or torch (checked by TrainOptions)
    # Large batches: scale the learning rate with the global batch (batch_size x replicas) from the batch the
    # defaults were tuned at: linear (lr x global/reference), sqrt, or none; optional cap and linear warm-up.
    learning_rate_scaling: Literal["none", "linear", "sqrt"] = "none"
    reference_batch_size: int = 256
    max_learning_rate: float | None = None
    warmup_steps: int = 0
    force: bool = False  # retrain even if data and settings are unchanged
    # Constructor arguments of this asset's model, e.g. {"l2": 300, "max_items": 30000} for model_ease.
    model_params: dict[str, Any] = {}
    # A seeded search on validation before the model is kept (Keras models but the frozen hybrid_seed000): the
    # values above are candidate 0, so tuning never keeps a worse model than the untuned one; about 3-4x the
    # training time. ``search_space`` overrides rec_pipeline.models.search.DEFAULT_SPACES[<model>], e.g.
    # {"embedding_dim": [16, 32], "learning_rate": [0.002, 0.005], "max_candidates": 3}; [] drops a parameter.
    search: bool = True
    search_space: dict[str, Any] = {}


def config_fields() -> frozenset[str]:
    """The settings of ``TrainingConfig``."""
    return frozenset(TrainingConfig.model_fields)


def _inputs_fingerprint(inputs: dict[str, Upstream], spec: ModelSpec, config: TrainingConfig) -> str:
    """Identity of what a model is trained from: split files, held-out items, content features, settings, code."""
    digest = hashlib.sha256()
    files = [inputs["splits"].path(split_artifact(s)) for s in ("train", "validation")]
    files.append(inputs["cold_items"].path(Artifact.COLD_ITEMS))
    if spec.content:
        files += [
            inputs["item_text_vectors"].path(Artifact.ITEM_TEXT_VECTORS),
            inputs["image_embeddings"].path(Artifact.IMAGE_EMBEDDINGS),
        ]
    for path in files:
        if path.exists():
            digest.update(bytes.fromhex(file_digest(path)))
    # Empty model_params left out, so adding the setting did not change (and retrain) every existing model.
    exclude = {"force"} if config.model_params else {"force", "model_params"}
    digest.update(json.dumps(config.model_dump(exclude=exclude), sort_keys=True).encode())
    digest.update(f"{spec.name}:{TRAINING_CODE_VERSION}".encode())
    return digest.hexdigest()[:16]


def train_one(
    store: CategoryStore, inputs: dict[str, Upstream], spec: ModelSpec, config: TrainingConfig, log: Any
) -> dict[str, Any]:
    """Fit ``spec``'s model on one category's warm splits (``inputs``: one ``Upstream`` per name of
    ``MODEL_INPUTS``, plus ``CONTENT_INPUTS`` for content models) and save it; returns the training summary (also
    saved as JSON)."""
    from rec_pipeline.item_content import empty_content, load_item_content
    from rec_pipeline.models import ModelNotApplicable, TrainingData, TrainOptions, create_model
    from rec_pipeline.models.artifacts import is_saved_model
    from rec_pipeline.models.backend import BackendMismatch, use_backend

    name, category = spec.name, store.category
    model_dir = store.model_dir(name)
    summary_path = store.training_summary(name)
    fingerprint = _inputs_fingerprint(inputs, spec, config)
    recorded = None
    if summary_path.exists() and is_saved_model(model_dir):
        previous = json.loads(summary_path.read_text())
        recorded = Record(previous.get("fingerprint"), previous)
    reused, _ = reuse_record(recorded, fingerprint, force=config.force)
    if reused is not None:
        log.info(f"{category}/{name}: data and settings unchanged since the last training: keeping the saved model")
        return {**reused.payload, "skipped_unchanged": True}
    splits, cold = inputs["splits"], inputs["cold_items"]
    train, validation = warm(splits, cold, "train"), warm(splits, cold, "validation")
    content = load_item_content(inputs["item_text_vectors"], inputs["image_embeddings"]) if spec.content else None
    if spec.content and content is None:
        log.warning(
            f"{category}/{name}: no item text vectors or image embeddings: the {name} model trains on ids alone"
        )
        content = empty_content(train["item_id"].unique().sort().to_list())
    # The options are built by field name: a setting is defined on TrainingConfig and TrainOptions with one
    # default (rec_pipeline_tests/test_settings_drift.py), never listed a third time here.
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainOptions) if f.name in config_fields()}
    try:
        options = TrainOptions(
            **shared,
            checkpoint_dir=store.scratch_dir("checkpoints", name),
            tensorboard_dir=store.scratch_dir("tensorboard", name) if spec.keras else None,
        )
        if spec.keras and options.backend is not None:
            use_backend(options.backend)
    except (ValueError, BackendMismatch) as exc:
        raise dg.Failure(description=f"{category}/model_{name}: {exc}") from exc
    data = TrainingData(train, validation, content)
    tuned: dict[str, Any] | None = None
    log.info(f"{category}/{name}: training on {train.height:,} ratings (validation {validation.height:,})")
    try:
        if config.search and name in SEARCHABLE_MODELS and data.has_validation:
            try:
                space = resolve_space(name, {name: config.search_space}, config.model_params)
            except ValueError as exc:
                raise dg.Failure(description=f"{category}/model_{name}: search_space: {exc}") from exc
            result = search(
                name,
                space,
                data,
                options,
                seed=config.seed,
                model_params=config.model_params,
                baseline=_contained_baseline(store, name, train, validation, log),
                logger=log,
            )
            model, history, tuned = result.model, result.history, result.to_dict()
        else:
            try:
                model = create_model(name, **config.model_params)
            except ValueError as exc:
                raise dg.Failure(description=f"{category}/model_{name}: {exc}") from exc
            history = model.fit(data, options, logger=log)
    except ModelNotApplicable as exc:
        # Skip, not fail: one model that cannot run on this catalogue must not stop the others. A model saved
        # from an earlier, smaller catalogue is removed so evaluation never scores it against the new splits.
        log.warning(f"{category}/{name}: skipped: {exc}")
        shutil.rmtree(model_dir, ignore_errors=True)
        skipped: dict[str, Any] = {
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
        store.write_training_summary(name, skipped)
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
        "search": tuned,
    }
    store.write_training_summary(name, summary)
    return summary


def _contained_baseline(
    store: CategoryStore, name: str, train: pl.DataFrame, validation: pl.DataFrame, log: Any
) -> float | None:
    """The validation objective of the model ``name`` contains (MF: biases; NeuMF, hybrid: MF), when it is saved.

    Best effort: models train in any order, so the contained one may not be there yet; ``model_metrics``'
    nesting check judges every pair on the same validation split in any case.
    """
    from rec_pipeline.models import load_model
    from rec_pipeline.models.artifacts import is_saved_model
    from rec_pipeline.models.search import CONTAINS, default_objective, validation_objective

    base = CONTAINS.get(name)
    if base is None or not is_saved_model(store.model_dir(base)):
        return None
    try:
        return validation_objective(load_model(store.model_dir(base)), train, validation, default_objective(name))
    except (ValueError, OSError) as exc:  # a model saved from other splits: no comparison rather than a failure
        log.warning(f"{store.category}/{name}: cannot score the contained {base} model on validation: {exc}")
        return None


def _search_metadata(tuned: dict[str, Any]) -> dict[str, Any]:
    """The chosen values, the objective, and the whole search table, for the asset's metadata."""
    from rec_pipeline.assets.metadata import md_table

    metadata: dict[str, Any] = {
        "search_chosen": dg.MetadataValue.json(tuned["chosen"]),
        f"search_best_{tuned['objective']}": tuned["best_value"],
        f"search_untuned_{tuned['objective']}": tuned["base_value"],
        "search_table": dg.MetadataValue.md(md_table(tuned["table"], tuned["columns"])),
        "search_seconds": tuned["seconds"],
    }
    if tuned.get("baseline"):
        metadata[f"search_not_worse_than_{tuned['baseline']}"] = bool(tuned["not_worse_than_baseline"])
    return metadata


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
    if summary.get("search"):
        metadata.update(_search_metadata(summary["search"]))
    return metadata


def build_model_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    """The asset ``model_<name>`` of one catalogue entry: its inputs, kinds and pool follow the entry's needs."""
    inputs = (*MODEL_INPUTS, *(CONTENT_INPUTS if spec.content else ()))

    @category_asset(
        name=spec.asset,
        ins=inputs,
        eager=False,
        group_name=TRAINING,
        kinds={"tensorflow", "keras"} if spec.keras else {"numpy"},
        code_version=TRAINING_CODE_VERSION,
        pool=GPU_POOL if spec.keras else None,
        description=f"The `{spec.name}` recommender trained on the training split without the cold items (early "
        "stopping on validation).",
    )
    def _model(
        context: dg.AssetExecutionContext, config: TrainingConfig, lake: Lake, **upstream: Stored
    ) -> dg.MaterializeResult:
        settings = lake.settings()
        per_category: dict[str, dict[str, Any]] = {}
        fingerprints: dict[str, str] = {}
        for category in context.partition_keys:
            store = lake.category(category)
            cfg = step_config(context, config, lake, category, settings)
            summary = train_one(store, {k: v[category] for k, v in upstream.items()}, spec, cfg, context.log)
            per_category[category] = _summary_metadata(summary)
            fingerprints[category] = store.fingerprint(spec.asset)
        return materialized(context, per_category, fingerprints)

    return _model


model_assets = [build_model_asset(spec) for spec in CATALOGUE]
