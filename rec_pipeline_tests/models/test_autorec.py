"""AutoRec's memory (issue 12): the guard that refuses a fit over its budget before allocating, what a fitted model
keeps, the cheaper L2 penalty and the output layer's two kernel layouts (models saved before still load)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from rec_pipeline.models import ModelNotApplicable, TrainOptions, create_model, load_model
from rec_pipeline.models.artifacts import MANIFEST
from rec_pipeline.models.autorec import DEFAULT_MEMORY_BUDGET_GB, AutoRecRecommender, LeanL2, ObservedCells
from rec_pipeline_tests.models.conftest import PlantedRatings

QUICK = TrainOptions(epochs=2, batch_size=32, learning_rate=1e-2)
# Issue 12's large category: 10M ratings by 1M users of 200k items.
LARGE = {"n_users": 1_000_000, "n_items": 200_000, "n_ratings": 10_000_000}


def test_the_fit_estimate_grows_with_the_input_columns_of_the_orientation() -> None:
    model = AutoRecRecommender()
    item_based = model.fit_gigabytes(**LARGE)  # a column per user
    user_based = model.fit_gigabytes(**LARGE, item_based=False)  # a column per item
    # The large category is refused item-based by default and fits user-based, the fix the refusal names.
    assert item_based > DEFAULT_MEMORY_BUDGET_GB > user_based
    assert AutoRecRecommender(hidden_units=(128, 32)).fit_gigabytes(**LARGE) < 0.6 * item_based


@pytest.mark.slow
def test_a_fit_over_the_memory_budget_is_refused_before_building_anything(planted: PlantedRatings) -> None:
    model = create_model("autorec", memory_budget_gb=1e-6)
    with pytest.raises(ModelNotApplicable) as refused:
        model.fit(planted.training_data(), QUICK)
    message = str(refused.value)
    n_users = planted.train["user_id"].n_unique()
    assert f"{n_users:,} users as input columns (item_based: true)" in message and "\n" not in message
    assert "fit peak ~" in message and "memory_budget_gb=1e-06" in message
    assert "item_based: false" in message and "hidden_units" in message and "model_params" in message
    assert model._network is None  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_fitted_model_keeps_its_weights_but_not_the_optimizer(planted: PlantedRatings) -> None:
    model = create_model("autorec", hidden_units=(8, 4))
    model.fit(planted.training_data(), QUICK)
    network = model._network  # type: ignore[attr-defined]
    assert not network.compiled and getattr(network, "optimizer", None) is None  # Adam's moments let go
    assert network.get_layer("reconstruction").kernel.shape == (planted.train["user_id"].n_unique() + 1, 8)


@pytest.mark.slow
def test_a_model_saved_before_the_memory_budget_loads_with_the_default(planted: PlantedRatings, tmp_path: Path) -> None:
    model = create_model("autorec", hidden_units=(8, 4), memory_budget_gb=2.5)
    model.fit(planted.training_data(), QUICK)
    model.save(tmp_path / "autorec")
    loaded = load_model(tmp_path / "autorec")
    assert loaded.get_config() == model.get_config()
    manifest = json.loads((tmp_path / "autorec" / MANIFEST).read_text())
    del manifest["config"]["memory_budget_gb"]
    (tmp_path / "autorec" / MANIFEST).write_text(json.dumps(manifest))
    older = load_model(tmp_path / "autorec")
    assert older.get_config()["memory_budget_gb"] == DEFAULT_MEMORY_BUDGET_GB
    users, items = planted.test["user_id"].to_list(), planted.test["item_id"].to_list()
    assert np.array_equal(older.predict(users, items), model.predict(users, items))


def _cells(layer: ObservedCells, codes: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(layer([codes, rows, columns])))


def test_both_kernel_layouts_score_the_same_and_the_old_config_keeps_the_old_one() -> None:
    rng = np.random.default_rng(0)
    n_columns, units = 7, 3
    codes = rng.normal(size=(4, units)).astype(np.float32)
    rows, columns = np.array([0, 1, 3, 3], np.int32), np.array([6, 0, 2, 6], np.int32)
    old_config = {"name": "reconstruction", "n_columns": n_columns, "initial_bias": 3.0, "l2": 0.0}
    old = ObservedCells.from_config(old_config)  # a model saved before ``column_major``
    new = ObservedCells(n_columns, initial_bias=3.0, column_major=True)
    old.build([(None, units), (None,), (None,)])
    new.build([(None, units), (None,), (None,)])
    assert not old.column_major and old.kernel.shape == (units, n_columns) and new.kernel.shape == (n_columns, units)
    kernel = rng.normal(size=(units, n_columns)).astype(np.float32)
    bias = rng.normal(size=n_columns).astype(np.float32)
    old.set_weights([kernel, bias])
    new.set_weights([kernel.T, bias])
    expected = np.einsum("ij,ij->i", codes[rows], kernel.T[columns]) + bias[columns]
    assert np.allclose(_cells(old, codes, rows, columns), expected, atol=1e-5)
    assert np.allclose(_cells(new, codes, rows, columns), expected, atol=1e-5)
    for layer in (old, new):
        vectors, column_bias = layer.column_vectors()
        assert np.array_equal(vectors, kernel.T) and np.array_equal(column_bias, bias)


def test_lean_l2_is_keras_l2_in_value_and_gradient() -> None:
    weights = keras.Variable(np.random.default_rng(1).normal(size=(50, 6)).astype(np.float32))
    lean, plain = LeanL2(0.01), keras.regularizers.L2(0.01)
    assert np.isclose(float(lean(weights)), float(plain(weights)), rtol=1e-5)
    assert lean.get_config() == plain.get_config()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gradients = []
        for penalty in (lean, plain):
            with tf.GradientTape() as tape:
                value = penalty(weights)
            gradients.append(tape.gradient(value, weights.value).numpy())
        assert np.allclose(gradients[0], gradients[1], rtol=1e-5)
