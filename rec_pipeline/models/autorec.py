"""AutoRec (Sedhain et al. 2015): an autoencoder over rows of the rating matrix, loss on observed cells only.

Item-based (I-AutoRec, the paper's better variant) by default: each item is a vector of its users' ratings,
reconstructed through two encoder and two decoder layers; the reconstruction at user u is the prediction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import polars as pl
import tensorflow as tf

from rec_pipeline.models.base import Recommender, clip_ratings
from rec_pipeline.models.bias_terms import BiasTerms, fit_bias_terms
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.layers import MaskedRootMeanSquaredError, masked_mse
from rec_pipeline.models.training import DatasetPair, fit_network, layer_dtype
from rec_pipeline.models.vocabulary import IdVocabulary

NETWORK_FILE = "network.keras"
ARRAYS_FILE = "arrays.npz"
_CODE_LAYER = "decoder_hidden"
_OUTPUT_LAYER = "reconstruction"


class SparseRows:
    """CSR rows of the rating matrix kept as ragged tensors, densified one batch at a time.

    The dense matrix (items x users) would not fit for real catalogues; a batch of rows always does.
    """

    def __init__(self, rows: np.ndarray, columns: np.ndarray, values: np.ndarray, n_rows: int, n_columns: int):
        order = np.lexsort((columns, rows))
        splits = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))]).astype(np.int64)
        self.n_columns = n_columns
        self.row_counts = np.diff(splits)
        self._columns = tf.RaggedTensor.from_row_splits(columns[order].astype(np.int64), splits)
        self._values = tf.RaggedTensor.from_row_splits(values[order].astype(np.float32), splits)

    def dense(self, rows: Any) -> tf.Tensor:
        """Dense float32 [len(rows), n_columns] with 0 for unobserved cells (ratings are >= 1)."""
        rows = tf.cast(rows, tf.int64)
        columns = tf.gather(self._columns, rows)
        values = tf.gather(self._values, rows)
        positions = tf.stack([columns.value_rowids(), columns.flat_values], axis=1)
        shape = tf.stack([tf.shape(rows, out_type=tf.int64)[0], tf.constant(self.n_columns, tf.int64)])
        return tf.scatter_nd(positions, values.flat_values, shape)


class AutoRecRecommender(Recommender):
    """Unseen users or items fall back to the regularized bias baseline (mean + b_u + b_i), since an
    autoencoder has no input row for them.

    After training, the decoder's last hidden layer is cached for every row ("row codes"); the prediction for
    (row r, column c) is then ``code[r] . W[:, c] + b[c]``, so scoring needs no forward pass.
    """

    kind = "autorec"
    default_learning_rate = 5e-3

    def __init__(self, hidden_units: tuple[int, int] | list[int] = (256, 64), item_based: bool = True,
                 activation: str = "elu") -> None:
        super().__init__()
        if len(hidden_units) != 2:
            raise ValueError("AutoRec takes two hidden sizes: (outer, code)")
        self.hidden_units = (int(hidden_units[0]), int(hidden_units[1]))
        self.item_based = bool(item_based)
        self.activation = str(activation)
        self._network: keras.Model | None = None
        self._codes: np.ndarray | None = None
        self._biases: BiasTerms | None = None

    def get_config(self) -> dict[str, Any]:
        return {"hidden_units": list(self.hidden_units), "item_based": self.item_based,
                "activation": self.activation}

    # ----- orientation -----------------------------------------------------------------------------------------
    def _rows_columns(self, user_index: np.ndarray, item_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (item_index, user_index) if self.item_based else (user_index, item_index)

    def _sparse(self, frame: pl.DataFrame, n_rows: int, n_columns: int) -> SparseRows:
        rows, columns = self._rows_columns(self._vocab("users").lookup(frame["user_id"]),
                                           self._vocab("items").lookup(frame["item_id"]))
        known = (rows > 0) & (columns > 0)  # validation cells of unseen ids belong to the bias fallback
        return SparseRows(rows[known], columns[known], frame["rating"].to_numpy()[known], n_rows, n_columns)

    # ----- fitting ---------------------------------------------------------------------------------------------
    def _build_network(self, options: TrainOptions, n_columns: int, mean: float) -> keras.Model:
        dtype = layer_dtype(options)
        regularizer = keras.regularizers.L2(options.l2) if options.l2 > 0 else None
        outer, code = self.hidden_units

        def dense(units: int, name: str) -> keras.layers.Dense:
            return keras.layers.Dense(units, activation=self.activation, kernel_regularizer=regularizer,
                                      dtype=dtype, name=name)

        ratings = keras.Input(shape=(n_columns,), name="ratings")
        x = dense(code, "encoder_code")(dense(outer, "encoder_hidden")(ratings))
        if options.dropout > 0:
            x = keras.layers.Dropout(options.dropout, seed=options.seed, dtype=dtype, name="code_dropout")(x)
        x = dense(outer, _CODE_LAYER)(x)
        output = keras.layers.Dense(n_columns, dtype="float32", kernel_regularizer=regularizer, name=_OUTPUT_LAYER,
                                    bias_initializer=keras.initializers.Constant(mean))(x)
        return keras.Model(ratings, output, name="autorec")

    def fit(self, data: TrainingData, options: TrainOptions | None = None,
            logger: logging.Logger | None = None) -> TrainingHistory:
        options = options or TrainOptions()
        self._options = options
        users = self._users = IdVocabulary.from_column(data.train["user_id"])
        items = self._items = IdVocabulary.from_column(data.train["item_id"])
        n_rows, n_columns = ((items, users) if self.item_based else (users, items))
        n_rows_total, n_columns_total = n_rows.size_with_unknown, n_columns.size_with_unknown
        train = self._sparse(data.train, n_rows_total, n_columns_total)
        user_index, item_index = users.lookup(data.train["user_id"]), items.lookup(data.train["item_id"])
        self._biases = fit_bias_terms(user_index, item_index, data.train["rating"].to_numpy(),
                                      users.size_with_unknown, items.size_with_unknown)[-1]
        train_rows = np.arange(1, n_rows_total, dtype=np.int64)
        validation = None
        if data.has_validation and data.validation is not None:
            validation = self._sparse(data.validation, n_rows_total, n_columns_total)
            validation_rows = np.flatnonzero(validation.row_counts).astype(np.int64)

        def make_datasets(batch_size: int) -> DatasetPair:
            train_ds = (tf.data.Dataset.from_tensor_slices(train_rows)
                        .shuffle(len(train_rows), seed=options.seed, reshuffle_each_iteration=True)
                        .batch(batch_size)
                        .map(lambda rows: (train.dense(rows), train.dense(rows)), num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True)
                        .prefetch(tf.data.AUTOTUNE))
            val_ds = None
            if validation is not None and len(validation_rows):
                # Input: the row's training ratings; target: its held-out ratings (observed cells only).
                val_ds = (tf.data.Dataset.from_tensor_slices(validation_rows)
                          .batch(batch_size)
                          .map(lambda rows: (train.dense(rows), validation.dense(rows)))
                          .prefetch(tf.data.AUTOTUNE))
            return train_ds, val_ds

        network, history = fit_network(
            self.kind,
            lambda: self._build_network(options, n_columns_total, self._biases.mean if self._biases else 3.0),
            make_datasets,
            len(train_rows),
            options,
            self.default_learning_rate,
            loss=masked_mse,
            make_metrics=lambda: [MaskedRootMeanSquaredError(name="rmse")],
            logger=logger,
        )
        self._network = network
        self._codes = self._row_codes(network, train, n_rows_total, options.batch_size)
        return history

    @staticmethod
    def _row_codes(network: keras.Model, rows: SparseRows, n_rows: int, batch_size: int) -> np.ndarray:
        """Last decoder hidden layer for every row: all that scoring needs besides the output layer."""
        encoder = keras.Model(network.inputs, network.get_layer(_CODE_LAYER).output)
        step = max(batch_size, 1024)
        chunks = [np.asarray(encoder.predict_on_batch(rows.dense(np.arange(start, min(start + step, n_rows)))),
                             dtype=np.float32)
                  for start in range(0, n_rows, step)]
        return np.concatenate(chunks)

    # ----- scoring ---------------------------------------------------------------------------------------------
    def _state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, BiasTerms]:
        if self._network is None or self._codes is None or self._biases is None:
            raise RuntimeError("AutoRecRecommender is not fitted: call fit() or load() first")
        kernel, bias = self._network.get_layer(_OUTPUT_LAYER).get_weights()
        return self._codes, np.asarray(kernel, np.float32), np.asarray(bias, np.float32), self._biases

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        codes, kernel, bias, biases = self._state()
        user_index = self._vocab("users").lookup(user_ids)
        item_index = self._vocab("items").lookup(item_ids)
        rows, columns = self._rows_columns(user_index, item_index)
        scores = biases.predict(user_index, item_index)
        known = np.flatnonzero((rows > 0) & (columns > 0))
        for start in range(0, len(known), 1 << 16):
            part = known[start:start + (1 << 16)]
            scores[part] = np.einsum("ij,ji->i", codes[rows[part]], kernel[:, columns[part]]) + bias[columns[part]]
        return clip_ratings(scores)

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        return clip_ratings(self.ranking_scores(user_ids))

    def ranking_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        codes, kernel, bias, biases = self._state()
        user_index = self._vocab("users").lookup(user_ids)
        scores = biases.score(user_index)
        known = np.flatnonzero(user_index > 0)
        if self.item_based:
            scores[known] = (codes[1:] @ kernel[:, user_index[known]] + bias[user_index[known]]).T
        else:
            scores[known] = codes[user_index[known]] @ kernel[:, 1:] + bias[None, 1:]
        return scores

    def unknown_item_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        user_index = self._vocab("users").lookup(user_ids)
        return self._state()[3].predict(user_index, np.zeros_like(user_index)).astype(np.float64)

    # ----- persistence -------------------------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        codes, _, _, biases = self._state()
        assert self._network is not None
        self._network.save(directory / NETWORK_FILE)
        (directory / "state.json").write_text(json.dumps({"mean": biases.mean}))
        np.savez(directory / ARRAYS_FILE, row_codes=codes, user_bias=biases.user_bias, item_bias=biases.item_bias)

    def _load_state(self, directory: Path) -> None:
        mean = float(json.loads((directory / "state.json").read_text())["mean"])
        with np.load(directory / ARRAYS_FILE) as arrays:
            self._codes = arrays["row_codes"]
            self._biases = BiasTerms(mean, arrays["user_bias"], arrays["item_bias"])
        self._network = keras.saving.load_model(directory / NETWORK_FILE, compile=False)
