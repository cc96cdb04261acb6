"""Shipped presets (the seed projects' protocols): they load, every value is a real setting, and they pin the
filters, splits and networks the seeds published their figures under; seed 000's preset trains its network in
the pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from rec_pipeline.assets.evaluation import MetricsConfig, RecommendationsConfig
from rec_pipeline.assets.interactions import InteractionsConfig, SplitsConfig
from rec_pipeline.assets.training import ColdItemsConfig, TrainingConfig
from rec_pipeline.interactions.kcore import kcore
from rec_pipeline.interactions.splits import SplitOptions, split_interactions
from rec_pipeline.models.registry import MODEL_NAMES
from rec_pipeline.settings import SettingsError, load_preset, merge_config, parse_settings, preset_names

CONFIGS: dict[str, type[dg.Config]] = {
    "interactions": InteractionsConfig,
    "splits": SplitsConfig,
    "cold_items": ColdItemsConfig,
    "model_metrics": MetricsConfig,
    "recommendations": RecommendationsConfig,
    **{f"model_{name}": TrainingConfig for name in MODEL_NAMES},
}


def _effective(preset: str, op: str) -> dg.Config:
    config = CONFIGS[op]
    merged, _ = merge_config(config().model_dump(), load_preset(preset), op, None, {})
    return config(**merged)


def test_every_preset_names_real_assets_and_real_settings() -> None:
    assert preset_names() == ["seed000", "seed001", "seed002", "seed003", "seed004"]
    for name in preset_names():
        for op in load_preset(name).ops:
            assert op in CONFIGS, (name, op)
            _effective(name, op)  # raises on a misspelled setting


def test_seed_protocols_are_pinned() -> None:
    seed000 = _effective("seed000", "splits")
    assert (seed000.method, seed000.test_fraction, seed000.seed) == ("random_rows", 0.2, 0)  # a random hold-out
    seed000_training = _effective("seed000", "model_hybrid_seed000")
    assert (seed000_training.learning_rate, seed000_training.epochs) == (0.01, 10)  # Adam lr 0.01, ~10 epochs
    seed001 = (_effective("seed001", "interactions"), _effective("seed001", "splits"))
    assert (seed001[0].k, seed001[0].kcore_iterate) == (11, False)  # "> 10 ratings, one pass, not iterated"
    assert (seed001[1].method, seed001[1].test_fraction, seed001[1].seed) == (
        "random_rows",
        0.3,
        0,
    )  # random 70/30, seed 0
    for model in ("mf", "ncf", "hybrid"):  # MF, deep, hybrid: batch 1024, up to 50 epochs
        assert (_effective("seed001", f"model_{model}").batch_size, _effective("seed001", f"model_{model}").epochs) == (
            1024,
            50,
        )
    seed003 = (_effective("seed003", "interactions"), _effective("seed003", "splits"))
    assert (seed003[0].k, seed003[0].kcore_iterate) == (20, True)  # a 20-core
    assert (seed003[1].method, seed003[1].test_fraction, seed003[1].seed) == (
        "random_rows",
        0.2,
        42,
    )  # random 80/20, seed 42
    # MF by ALS and by SGD, on the seed's 50-d item embeddings.
    assert _effective("seed003", "model_mf_als").model_params == {"n_factors": 50}
    assert _effective("seed003", "model_mf").embedding_dim == 50
    assert (_effective("seed004", "model_metrics").cv_folds, _effective("seed004", "model_metrics").cv_models) == (
        5,
        ["ncf"],
    )
    assert (_effective("seed002", "recommendations").model, _effective("seed002", "recommendations").n) == (
        "autorec",
        10,
    )
    # No seed held items out of training: every preset turns the cold-item protocol off.
    assert all(_effective(name, "cold_items").cold_item_fraction == 0.0 for name in preset_names())


def _layers(network: Any) -> list[tuple[str, Any]]:
    return [(type(layer).__name__, getattr(layer, "units", getattr(layer, "rate", None))) for layer in network.layers]


def test_seed_networks_have_the_seeds_shapes() -> None:
    from rec_pipeline.models import MODELS, TrainOptions
    from rec_pipeline.models.mf import MatrixFactorizationRecommender
    from rec_pipeline.models.ncf import NCFRecommender

    options = TrainOptions(l2=0.0)
    # seed 001's MF: a dot of two embeddings (the project's adds biases and a global mean around it).
    mf = MatrixFactorizationRecommender()._build_network(options, 5, 5)
    assert [type(layer).__name__ for layer in mf.layers].count("Dot") == 1
    # seed 001's deep model and seed 004's network: concatenated embeddings, then Dense layers with dropout.
    ncf = _layers(NCFRecommender()._build_network(options, 5, 5))
    kinds = [kind for kind, _ in ncf]
    assert kinds.index("Concatenate") < kinds.index("Dense") and ("Dropout", 0.2) in ncf
    assert [units for kind, units in ncf if kind == "Dense"] == [64, 32, 16, 1]
    # seed 000's network is pinned layer by layer in rec_pipeline_tests/models/test_seed_models.py.
    assert "hybrid_seed000" in MODEL_NAMES and MODELS["hybrid_seed000"]().get_config()["nn_dropout"] == 0.1


def test_a_preset_sits_below_the_files_own_values(tmp_path: Path) -> None:
    settings = parse_settings(
        {"preset": "seed001", "ops": {"interactions": {"config": {"k": 3}}}}, tmp_path / "settings.yaml"
    )
    merged, _ = merge_config(InteractionsConfig().model_dump(), settings, "interactions", None, {})
    assert (merged["k"], merged["kcore_iterate"]) == (3, False)
    with pytest.raises(SettingsError, match="unknown preset 'seed999'; presets: seed000, seed001"):
        parse_settings({"preset": "seed999"}, tmp_path / "settings.yaml")


def test_the_one_pass_filter_is_not_a_kcore() -> None:
    # U1 has 2 ratings; once U1 goes, item B has 1: the one-pass filter keeps B's other rating, the k-core does not.
    rows = [("U0", "A"), ("U0", "B"), ("U2", "A"), ("U2", "C"), ("U1", "B"), ("U3", "C"), ("U3", "A")]
    frame = pl.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "item_id": [i for _, i in rows],
            "rating": [4.0] * len(rows),
            "timestamp": list(range(len(rows))),
        }
    )
    one_pass = kcore(frame, 2, iterate=False).frame
    assert sorted(zip(one_pass["user_id"], one_pass["item_id"], strict=True)) == [
        ("U0", "A"),
        ("U0", "B"),
        ("U2", "A"),
        ("U2", "C"),
        ("U3", "A"),
        ("U3", "C"),
    ]
    assert sorted(
        zip(*kcore(frame, 2).frame.select("user_id", "item_id").to_dict(as_series=False).values(), strict=True)
    ) == [
        ("U2", "A"),
        ("U2", "C"),
        ("U3", "A"),
        ("U3", "C"),
    ]


def test_random_rows_split_takes_the_stated_shares_of_all_rows() -> None:
    n = 1000
    frame = pl.DataFrame(
        {
            "user_id": [f"U{i % 50}" for i in range(n)],
            "item_id": [f"I{i % 40}" for i in range(n)],
            "rating": [3.0] * n,
            "timestamp": list(range(n)),
        }
    )
    parts = split_interactions(frame, SplitOptions("random_rows", validation_fraction=0.07, test_fraction=0.3, seed=0))
    assert parts.moved_to_train == 0
    assert (parts.test.height, parts.validation.height, parts.train.height) == (300, 70, 630)
    again = split_interactions(frame, SplitOptions("random_rows", validation_fraction=0.07, test_fraction=0.3, seed=0))
    assert again.test.equals(parts.test)


@pytest.mark.slow
def test_seed000_preset_trains_its_network_in_the_pipeline_and_model_metrics_reports_it(tmp_path: Path) -> None:
    from rec_pipeline.automation import MAIN_JOB_NAME
    from rec_pipeline.definitions import build_definitions
    from rec_pipeline.demo import demo_ops_config
    from rec_pipeline.models import load_model
    from rec_pipeline.paths import DataLayout
    from rec_pipeline.sample import SampleSpec, write_sample
    from rec_pipeline.settings import dump_settings

    category = "Seed_Fashion"
    write_sample(
        tmp_path, SampleSpec(category=category, n_users=150, n_items=30, n_reviews=2000, image_size=32, seed=5)
    )
    demo = demo_ops_config()
    ops = {name: demo[name] for name in ("word2vec_model", "item_images", "image_embeddings")}
    ops["image_embeddings"]["config"].update(image_size=32, projection_dim=16)
    ops["model_hybrid_seed000"] = {"config": {"epochs": 2}}  # below the preset's 10: the file's own values win
    (tmp_path / "settings.yaml").write_text(dump_settings({"preset": "seed000", "ops": ops}))
    defs = build_definitions(str(tmp_path))
    selection = dg.AssetSelection.assets("model_hybrid_seed000").upstream() | dg.AssetSelection.assets("model_metrics")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("category", [category])
        result = defs.resolve_job_def(MAIN_JOB_NAME).execute_in_process(
            partition_key=category,
            instance=instance,
            asset_selection=list(selection.resolve(defs.resolve_asset_graph())),
        )
    assert result.success
    layout = DataLayout(tmp_path)
    metrics = json.loads(layout.artifact(category, "metrics/metrics.json").read_text())
    assert set(metrics["models"]) == {"hybrid_seed000"}
    assert {"rmse", "mae", "pearson"} <= set(metrics["models"]["hybrid_seed000"]["metrics"])  # the seed's three figures
    options = load_model(layout.model_dir(category, "hybrid_seed000")).options
    assert options is not None and (options.learning_rate, options.epochs) == (0.01, 2)
    splits = {
        name: pl.read_parquet(layout.artifact(category, f"splits/{name}.parquet")).height
        for name in ("train", "validation", "test")
    }
    assert splits["test"] == pytest.approx(0.2 * sum(splits.values()), abs=1)  # random_rows, 20% of the rows
