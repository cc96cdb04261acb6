"""BatchRowL2: the per-example embedding penalty that replaced whole-table weight decay in MF and the hybrid."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from rec_pipeline.models import TrainOptions
from rec_pipeline.models.keras_base import embed
from rec_pipeline.models.layers import BatchRowL2, Cosine, MaskedRows, StitchRows, TakeRows


def test_penalty_is_rate_times_mean_row_square_norm_during_training_only() -> None:
    rows = np.array([[1.0, 2.0], [3.0, 0.0]], dtype=np.float32)  # squared norms 5 and 9 -> mean 7
    layer = BatchRowL2(0.1)
    out = layer(rows, training=True)
    assert np.array_equal(np.asarray(out), rows)
    assert len(layer.losses) == 1 and np.isclose(float(layer.losses[0]), 0.7)
    inference = BatchRowL2(0.1)
    inference(rows, training=False)
    assert inference.losses == []


def test_penalty_ignores_rows_outside_the_batch() -> None:
    # Only the looked-up rows are penalized: a huge unused row must not change the loss (it would under
    # a Keras embeddings_regularizer, which sums over the whole table).
    ids = keras.Input(shape=(), dtype="int32")
    model = keras.Model(ids, embed(ids, 3, 2, TrainOptions(l2=1e-4), "table", "float32", row_l2=1.0))
    table = model.get_layer("table")
    assert table.embeddings_regularizer is None
    table.set_weights([np.array([[1.0, 0.0], [0.0, 2.0], [100.0, 100.0]], dtype=np.float32)])
    model(np.array([0, 1], dtype=np.int32), training=True)
    assert np.isclose(float(sum(model.losses)), (1.0 + 4.0) / 2)


def test_row_l2_none_keeps_the_whole_table_penalty() -> None:
    ids = keras.Input(shape=(), dtype="int32")
    model = keras.Model(ids, embed(ids, 3, 2, TrainOptions(l2=1e-4), "table", "float32", row_l2=None))
    assert model.get_layer("table").embeddings_regularizer is not None


def test_penalty_survives_a_keras_save_and_load(tmp_path: Path) -> None:
    ids = keras.Input(shape=(), dtype="int32")
    model = keras.Model(ids, embed(ids, 3, 2, TrainOptions(), "table", "float32", row_l2=0.25))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert loaded.get_layer("table_l2").rate == 0.25


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses tf.GradientTape")
def test_select_by_known_routes_each_row_and_its_gradient_to_one_branch() -> None:
    import tensorflow as tf

    from rec_pipeline.models.layers import SelectByKnown

    when_known = tf.Variable([[1.0], [2.0]])
    when_unknown = tf.Variable([[10.0], [20.0]])
    known = tf.constant([[1.0], [0.0]])
    with tf.GradientTape() as tape:
        out = SelectByKnown()([when_known, when_unknown, known])
        total = tf.reduce_sum(out)
    assert np.array_equal(out.numpy(), [[1.0], [20.0]])
    grad_known, grad_unknown = tape.gradient(total, [when_known, when_unknown])
    assert np.array_equal(grad_known.numpy(), [[1.0], [0.0]]) and np.array_equal(grad_unknown.numpy(), [[0.0], [1.0]])


def test_cosine_gives_keras_normalized_dot_values_and_zero_for_a_zero_vector() -> None:
    a = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]], np.float32)
    b = np.array([[2.0, 1.0], [1.0, 1.0], [0.5, 4.0]], np.float32)
    ours = keras.ops.convert_to_numpy(Cosine()([a, b]))
    theirs = keras.ops.convert_to_numpy(keras.layers.Dot(axes=1, normalize=True)([a, b]))
    assert ours.shape == (3, 1) and np.allclose(ours, theirs, atol=1e-6) and ours[1, 0] == 0.0


def test_masked_rows_take_and_stitch_put_every_row_back_from_its_own_branch() -> None:
    features = np.arange(10, dtype=np.float32).reshape(5, 2)
    mask = np.array([[1.0], [0.0], [0.0], [1.0], [1.0]], np.float32)
    warm, cold = MaskedRows()(mask), MaskedRows(known=False)(mask)
    from_warm = TakeRows()([features, warm]) * 10.0
    from_cold = TakeRows()([features, cold]) * -1.0
    out = keras.ops.convert_to_numpy(StitchRows()([from_warm, warm, from_cold, cold]))
    assert np.array_equal(out, np.where(mask > 0, features * 10.0, -features))
