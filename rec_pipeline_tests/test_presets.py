"""Shipped presets (the seed projects' protocols): they load, every value is a real setting, and they pin the
filters and splits the seeds published their figures under."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rec_pipeline.assets.evaluation import MetricsConfig, RecommendationsConfig
from rec_pipeline.assets.interactions import InteractionsConfig, SplitsConfig
from rec_pipeline.assets.training import MODEL_NAMES, TrainingConfig
from rec_pipeline.interactions.kcore import kcore
from rec_pipeline.interactions.splits import SplitOptions, split_interactions
from rec_pipeline.settings import SettingsError, load_preset, merge_config, parse_settings, preset_names

CONFIGS: dict[str, type[dg.Config]] = {
    "interactions": InteractionsConfig, "splits": SplitsConfig, "model_metrics": MetricsConfig,
    "recommendations": RecommendationsConfig, **{f"model_{name}": TrainingConfig for name in MODEL_NAMES},
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
    seed001 = (_effective("seed001", "interactions"), _effective("seed001", "splits"))
    assert (seed001[0].k, seed001[0].kcore_iterate) == (11, False)  # "> 10 ratings, one pass, not iterated"
    assert (seed001[1].method, seed001[1].test_fraction, seed001[1].seed) == ("random_rows", 0.3, 0)  # random 70/30, seed 0
    assert _effective("seed001", "model_mf").batch_size == 1024 and _effective("seed001", "model_hybrid").epochs == 50
    seed003 = (_effective("seed003", "interactions"), _effective("seed003", "splits"))
    assert (seed003[0].k, seed003[0].kcore_iterate) == (20, True)  # a 20-core
    assert (seed003[1].method, seed003[1].test_fraction, seed003[1].seed) == ("random_rows", 0.2, 42)  # random 80/20, seed 42
    assert _effective("seed000", "model_hybrid").learning_rate == 0.01
    assert (_effective("seed004", "model_metrics").cv_folds, _effective("seed004", "model_metrics").cv_models) == (5, ["ncf"])
    assert (_effective("seed002", "recommendations").model, _effective("seed002", "recommendations").n) == ("autorec", 10)


def test_a_preset_sits_below_the_files_own_values(tmp_path: Path) -> None:
    settings = parse_settings({"preset": "seed001", "ops": {"interactions": {"config": {"k": 3}}}}, tmp_path / "settings.yaml")
    merged, _ = merge_config(InteractionsConfig().model_dump(), settings, "interactions", None, {})
    assert (merged["k"], merged["kcore_iterate"]) == (3, False)
    with pytest.raises(SettingsError, match="unknown preset 'seed999'; presets: seed000, seed001"):
        parse_settings({"preset": "seed999"}, tmp_path / "settings.yaml")


def test_the_one_pass_filter_is_not_a_kcore() -> None:
    # U1 has 2 ratings; once U1 goes, item B has 1: the one-pass filter keeps B's other rating, the k-core does not.
    rows = [("U0", "A"), ("U0", "B"), ("U2", "A"), ("U2", "C"), ("U1", "B"), ("U3", "C"), ("U3", "A")]
    frame = pl.DataFrame({"user_id": [u for u, _ in rows], "item_id": [i for _, i in rows], "rating": [4.0] * len(rows), "timestamp": list(range(len(rows)))})
    one_pass = kcore(frame, 2, iterate=False).frame
    assert sorted(zip(one_pass["user_id"], one_pass["item_id"])) == [("U0", "A"), ("U0", "B"), ("U2", "A"), ("U2", "C"), ("U3", "A"), ("U3", "C")]
    assert sorted(zip(*kcore(frame, 2).frame.select("user_id", "item_id").to_dict(as_series=False).values())) == [
        ("U2", "A"), ("U2", "C"), ("U3", "A"), ("U3", "C")]


def test_random_rows_split_takes_the_stated_shares_of_all_rows() -> None:
    n = 1000
    frame = pl.DataFrame({"user_id": [f"U{i % 50}" for i in range(n)], "item_id": [f"I{i % 40}" for i in range(n)],
                          "rating": [3.0] * n, "timestamp": list(range(n))})
    parts = split_interactions(frame, SplitOptions("random_rows", validation_fraction=0.07, test_fraction=0.3, seed=0))
    assert parts.moved_to_train == 0
    assert (parts.test.height, parts.validation.height, parts.train.height) == (300, 70, 630)
    again = split_interactions(frame, SplitOptions("random_rows", validation_fraction=0.07, test_fraction=0.3, seed=0))
    assert again.test.equals(parts.test)
