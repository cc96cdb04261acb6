"""AutoRec (Sedhain et al. 2015): an autoencoder over rows of the rating matrix, loss on observed cells only.

Item-based (I-AutoRec, the paper's better variant) by default: each item is a vector of its users' ratings,
reconstructed through two encoder and two decoder layers; the reconstruction at user u is the prediction.

Memory: nothing is ever dense over users x items, nor over a batch of rows x all columns. A batch enters as a
sparse tensor (its observed cells only: ``tf.SparseTensor`` on TensorFlow, ``BCOO`` on JAX) and the output
layer is evaluated only at the cells the loss needs (``ObservedCells``), so a step costs O(cells in the batch x
hidden units). What remains is linear in the number of input columns (users, item-based): per column and unit of
``hidden_units[0]``, the first and last layers' weights, Adam's two moments and the gradients of both (8 floats)
plus a training step's temporaries, 41-44 bytes measured; item-based at 1M users x 256 units a fit needs ~12 GB.
Per row, the code kept for scoring (``hidden_units[0]`` floats). So ``fit`` first estimates its peak from these
measured costs (``fit_gigabytes``) and refuses, raising ``ModelNotApplicable`` before allocating anything, above
``memory_budget_gb``; user-based, the same category's input columns are its 200k items (~5 GB). A fitted model
keeps the weights and row codes only, not the optimizer's state (``_without_training_state``).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import polars as pl
from keras import ops

from rec_pipeline.models.base import LatentFactors, ModelNotApplicable, Recommender, clip_ratings
from rec_pipeline.models.bias_terms import BiasTerms, fit_bias_terms
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.layers import PACKAGE
from rec_pipeline.models.training import ArrayBatches, DatasetPair, fit_network, layer_dtype, on_tensorflow
from rec_pipeline.models.vocabulary import IdVocabulary

NETWORK_FILE = "network.keras"
ARRAYS_FILE = "arrays.npz"
_CODE_LAYER = "decoder_hidden"
_OUTPUT_LAYER = "reconstruction"
# What ``fit`` adds to the process it runs in (its peak resident set over the one before), measured on TensorFlow
# in a child process per size, 1 epoch of batches of 1,024 rows with validation and checkpoints as in the pipeline:
# item-based at 50k, 100k and 200k users (input columns) x 256 units and 200k x 128, user-based at 100k and 300k
# users (rows), 5 and 20 ratings a user. Rounded up: 41-44 bytes per column and unit, 7 per row and unit, 28 per
# rating, 0.18 GB fixed; the estimate overshoots those fits by 5-21%.
_FIT_FIXED_BYTES = 0.2e9
_FIT_BYTES_PER_COLUMN_UNIT = 44
_FIT_BYTES_PER_ROW_UNIT = 8
_FIT_BYTES_PER_RATING = 30
# A fit's estimated peak over its process that ``fit`` refuses above: a pipeline step's own ~1 GB (imports, the
# TensorFlow runtime, the ratings) plus this stays under the 6 GB a step may spend of the 8 GB target.
DEFAULT_MEMORY_BUDGET_GB = 5.0


class SparseRows:
    """CSR rows of the rating matrix (``indptr``, ``columns`` int64, ``values`` float32); a batch of rows becomes a
    sparse tensor of the backend (``sparse``), or its cells (``cells``).

    Never densified: a dense batch of item rows over 1.9M users is 7.6 MB per row. On TensorFlow the training
    pipeline gathers the same arrays as ragged tensors inside ``tf.data`` (``tf_input.sparse_rows_dataset``).
    """

    def __init__(self, rows: np.ndarray, columns: np.ndarray, values: np.ndarray, n_rows: int, n_columns: int):
        order = np.lexsort((columns, rows))
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))]).astype(np.int64)
        self.n_columns = n_columns
        self.row_counts = np.diff(self.indptr)
        self.columns = columns[order].astype(np.int64, copy=False)
        self.values = values[order].astype(np.float32, copy=False)

    def cells(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position in ``rows``, column, rating) of every observed cell of ``rows``, row-major, int64/float32."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = self.row_counts[rows]
        total = int(counts.sum())
        positions = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
        first_cell = np.cumsum(counts) - counts
        flat = np.arange(total, dtype=np.int64) - np.repeat(first_cell, counts) + np.repeat(self.indptr[rows], counts)
        return positions, self.columns[flat], self.values[flat]

    def padded_bcoo(self, rows: np.ndarray) -> Any:
        """The ratings of ``rows`` as a JAX ``BCOO`` ``[len(rows), n_columns]`` whose number of stored cells is
        ``padded_size`` of the real one (the extra cells: value 0 at (0, 0), which changes no product)."""
        import jax.numpy as jnp
        from jax.experimental import sparse as jax_sparse

        positions, columns, values = self.cells(rows)
        size = padded_size(len(values))
        indices = np.zeros((size, 2), np.int32)
        indices[: len(values), 0], indices[: len(values), 1] = positions, columns
        padded = np.zeros(size, np.float32)
        padded[: len(values)] = values
        return jax_sparse.BCOO((jnp.asarray(padded), jnp.asarray(indices)), shape=(len(rows), self.n_columns))

    def sparse(self, rows: np.ndarray) -> Any:
        """The ratings of ``rows`` as the backend's ``[len(rows), n_columns]`` sparse tensor (row-major), for a
        network's ``predict_on_batch``."""
        if on_tensorflow():
            from rec_pipeline.models.tf_input import sparse_tensor

            return sparse_tensor(self, rows)
        if keras.backend.backend() == "jax":
            return self.padded_bcoo(rows)
        raise NotImplementedError(f"AutoRec needs sparse inputs: TensorFlow or JAX, not {keras.backend.backend()}")


def _without_training_state(network: keras.Model) -> keras.Model:
    """The trained layers in an uncompiled model, the optimizer's state (Adam's two moments: twice the weights, most
    of them per input column) freed: scoring and saving need the weights only.

    Letting go of the compiled model is not enough on TensorFlow: the traced training step is never garbage
    collected (Keras 3.15, TensorFlow 2.21: a compiled model's ``one_step_on_data`` graph outlives it, holding the
    variables it captured), so every fitted model kept its moments for the life of the process, a search's
    candidates all of them. Each optimizer variable is therefore emptied in place (a variable whose shape may
    change takes a 0-length value), which frees its buffer whoever holds the variable.
    """
    slim = keras.Model(network.input, network.output, name=network.name)
    optimizer = getattr(network, "optimizer", None)
    if on_tensorflow() and optimizer is not None:
        import tensorflow as tf

        for variable in optimizer.variables:
            tf.raw_ops.AssignVariableOp(resource=variable.value.handle, value=tf.zeros([0], variable.dtype))
    network.optimizer = None
    gc.collect()
    return slim


def padded_size(n: int) -> int:
    """The power of two (at least 256) that a batch of ``n`` cells is padded to on JAX.

    JAX compiles a training step per distinct input shape, and every batch of rows holds a different number of
    cells: unpadded, AutoRec recompiled at almost every step (6 minutes for the planted test data). Powers of two
    bound the shapes to a few dozen for at most twice the cells.
    """
    return max(256, 1 << max(0, n - 1).bit_length())


@keras.saving.register_keras_serializable(package=PACKAGE)
def observed_mse(y_true: Any, y_pred: Any) -> Any:
    """Mean squared error over the cells whose target is not NaN (NaN marks the padding cells on JAX)."""
    y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    observed = ops.logical_not(ops.isnan(y_true))
    error = ops.where(observed, ops.where(observed, y_true, 0.0) - y_pred, 0.0)
    return ops.sum(ops.square(error)) / ops.maximum(ops.sum(ops.cast(observed, "float32")), 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ObservedRMSE(keras.metrics.Metric):
    """Root mean squared error over the cells whose target is not NaN, accumulated over an epoch."""

    def __init__(self, name: str = "rmse", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
        observed = ops.logical_not(ops.isnan(y_true))
        error = ops.where(observed, ops.where(observed, y_true, 0.0) - y_pred, 0.0)
        self.total.assign_add(ops.sum(ops.square(error)))
        self.count.assign_add(ops.sum(ops.cast(observed, "float32")))

    def result(self) -> Any:
        return ops.sqrt(ops.divide_no_nan(self.total, self.count))

    def reset_state(self) -> None:
        self.total.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LeanL2(keras.regularizers.L2):
    """Keras' ``L2`` penalty, ``l2 x sum(w^2)``, whose gradient holds one weight-sized temporary on TensorFlow.

    AutoRec's outer kernels have a row per column of the rating matrix, so every temporary of their gradient is as
    large as the weights. ``sum(square(w))`` differentiates to a broadcast, ``2w`` and their product, three of
    them; ``tf.nn.l2_loss`` (``sum(w^2) / 2``) to one product (measured on a 200k x 256 kernel: 2 extra copies
    at the step's peak against 1). Other backends compile the penalty with the step (XLA fuses it).
    """

    def __call__(self, x: Any) -> Any:
        if on_tensorflow():
            import tensorflow as tf

            return (2.0 * self.l2) * tf.nn.l2_loss(x)
        return super().__call__(x)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ObservedCells(keras.layers.Layer):
    """The reconstruction layer (``Dense(n_columns)`` over the last decoder layer) evaluated only at given cells.

    Inputs: the decoder output ``[batch, units]`` and, per cell, its row position in the batch and its column;
    output: one float32 prediction per cell, ``code[row] . W[:, column] + bias[column]`` (``column_vectors``).

    ``column_major`` stores W transposed, ``kernel [n_columns, units]``, so a batch gathers rows of it: the
    gradient of a gather along the second axis is built transposed and transposed back, one more copy of the
    kernel per training step. Models saved before it have ``Dense``'s ``kernel [units, n_columns]`` (the default,
    so their configs load unchanged).
    """

    def __init__(
        self, n_columns: int, initial_bias: float = 0.0, l2: float = 0.0, column_major: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.n_columns = int(n_columns)
        self.initial_bias = float(initial_bias)
        self.l2 = float(l2)
        self.column_major = bool(column_major)

    def build(self, input_shape: Any) -> None:
        units = int(input_shape[0][-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.n_columns, units) if self.column_major else (units, self.n_columns),
            initializer="glorot_uniform",
            regularizer=LeanL2(self.l2) if self.l2 > 0 else None,
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.n_columns,), initializer=keras.initializers.Constant(self.initial_bias)
        )

    def call(self, inputs: Any) -> Any:
        codes, rows, columns = inputs
        codes = ops.cast(ops.take(codes, rows, axis=0), "float32")
        kernel = ops.cast(self.kernel, "float32")
        if self.column_major:
            weights = ops.take(kernel, columns, axis=0)
        else:
            weights = ops.transpose(ops.take(kernel, columns, axis=1))
        return ops.sum(codes * weights, axis=-1) + ops.take(ops.cast(self.bias, "float32"), columns)

    def column_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """W as float32 ``[n_columns, units]`` (one vector per column, what scoring multiplies the row codes by)
        and the bias ``[n_columns]``."""
        kernel, bias = (np.asarray(array, np.float32) for array in self.get_weights())
        return (kernel if self.column_major else kernel.T), bias

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (None,)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_columns": self.n_columns,
            "initial_bias": self.initial_bias,
            "l2": self.l2,
            "column_major": self.column_major,
        }


class AutoRecRecommender(Recommender):
    """Unseen users or items fall back to the regularized bias baseline (mean + b_u + b_i), since an
    autoencoder has no input row for them.

    After training, the decoder's last hidden layer is cached for every row ("row codes"); the prediction for
    (row r, column c) is then ``code[r] . W[:, c] + b[c]``: a ``LatentFactors`` (row codes on one side, output
    weights on the other), so scoring needs no forward pass.

    Training batches are sparse rows with the loss on their observed cells (module docstring); neither
    ``tf.distribute`` nor ``keras.distribution`` can split such a batch by row, so ``distribution="mirrored"``
    trains on one device. Sparse inputs need TensorFlow or JAX; on PyTorch ``fit`` raises ``ModelNotApplicable``.

    ``memory_budget_gb``: the most a fit may add to its process by the measured estimate (module docstring), in GB;
    above it ``fit`` raises ``ModelNotApplicable`` naming the fixes (``item_based``, ``hidden_units``, this).
    """

    kind = "autorec"
    default_learning_rate = 5e-3

    def __init__(
        self,
        hidden_units: tuple[int, int] | list[int] = (256, 64),
        item_based: bool = True,
        activation: str = "elu",
        memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
    ) -> None:
        super().__init__()
        if len(hidden_units) != 2:
            raise ValueError("AutoRec takes two hidden sizes: (outer, code)")
        if memory_budget_gb <= 0:
            raise ValueError("memory_budget_gb must be positive")
        self.hidden_units = (int(hidden_units[0]), int(hidden_units[1]))
        self.item_based = bool(item_based)
        self.activation = str(activation)
        self.memory_budget_gb = float(memory_budget_gb)
        self._network: keras.Model | None = None
        self._codes: np.ndarray | None = None
        self._biases: BiasTerms | None = None
        self._factors: LatentFactors | None = None

    def get_config(self) -> dict[str, Any]:
        return {
            "hidden_units": list(self.hidden_units),
            "item_based": self.item_based,
            "activation": self.activation,
            "memory_budget_gb": self.memory_budget_gb,
        }

    # ----- memory ----------------------------------------------------------------------------------------------
    def fit_gigabytes(self, n_users: int, n_items: int, n_ratings: int, item_based: bool | None = None) -> float:
        """Estimated peak that ``fit`` adds to its process, in GB (10^9 bytes), from the measured costs per input
        column, row and rating (module constants); ``item_based`` defaults to this model's orientation."""
        item_based = self.item_based if item_based is None else item_based
        n_rows, n_columns = (n_items, n_users) if item_based else (n_users, n_items)
        per_unit = _FIT_BYTES_PER_COLUMN_UNIT * (n_columns + 1) + _FIT_BYTES_PER_ROW_UNIT * (n_rows + 1)
        return (_FIT_FIXED_BYTES + self.hidden_units[0] * per_unit + _FIT_BYTES_PER_RATING * n_ratings) / 1e9

    def _check_memory(self, train: pl.DataFrame) -> None:
        """Raise ``ModelNotApplicable`` when the fit's estimate exceeds ``memory_budget_gb``, before allocating."""
        n_users, n_items = train["user_id"].n_unique(), train["item_id"].n_unique()
        estimate = self.fit_gigabytes(n_users, n_items, train.height)
        if estimate <= self.memory_budget_gb:
            return
        flipped = self.fit_gigabytes(n_users, n_items, train.height, item_based=not self.item_based)
        columns = f"{n_users:,} users" if self.item_based else f"{n_items:,} items"
        raise ModelNotApplicable(
            f"autorec: {columns} as input columns (item_based: {str(self.item_based).lower()}) at hidden_units[0]="
            f"{self.hidden_units[0]}: fit peak ~{estimate:,.1f} GB, over memory_budget_gb={self.memory_budget_gb:g}. "
            f"Set item_based: {str(not self.item_based).lower()} (~{flipped:,.1f} GB), smaller hidden_units, or a "
            f"larger memory_budget_gb in model_params if memory allows."
        )

    # ----- orientation -----------------------------------------------------------------------------------------
    def _rows_columns(self, user_index: np.ndarray, item_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (item_index, user_index) if self.item_based else (user_index, item_index)

    def _sparse(self, frame: pl.DataFrame, n_rows: int, n_columns: int) -> SparseRows:
        rows, columns = self._rows_columns(
            self._vocab("users").lookup(frame["user_id"]), self._vocab("items").lookup(frame["item_id"])
        )
        known = (rows > 0) & (columns > 0)  # validation cells of unseen ids belong to the bias fallback
        return SparseRows(rows[known], columns[known], frame["rating"].to_numpy()[known], n_rows, n_columns)

    # ----- fitting ---------------------------------------------------------------------------------------------
    def _build_network(self, options: TrainOptions, n_columns: int, mean: float) -> keras.Model:
        dtype = layer_dtype(options)
        regularizer = LeanL2(options.l2) if options.l2 > 0 else None
        outer, code = self.hidden_units

        def dense(units: int, name: str) -> keras.layers.Dense:
            return keras.layers.Dense(
                units, activation=self.activation, kernel_regularizer=regularizer, dtype=dtype, name=name
            )

        ratings = keras.Input(shape=(n_columns,), sparse=True, name="ratings")
        cell_rows = keras.Input(shape=(), dtype="int32", name="cell_rows")
        cell_columns = keras.Input(shape=(), dtype="int32", name="cell_columns")
        x = dense(code, "encoder_code")(dense(outer, "encoder_hidden")(ratings))
        if options.dropout > 0:
            x = keras.layers.Dropout(options.dropout, seed=options.seed, dtype=dtype, name="code_dropout")(x)
        x = dense(outer, _CODE_LAYER)(x)
        output = ObservedCells(
            n_columns, initial_bias=mean, l2=options.l2, column_major=True, dtype="float32", name=_OUTPUT_LAYER
        )([x, cell_rows, cell_columns])
        inputs = {"ratings": ratings, "cell_rows": cell_rows, "cell_columns": cell_columns}
        return keras.Model(inputs, output, name="autorec")

    def fit(
        self, data: TrainingData, options: TrainOptions | None = None, logger: logging.Logger | None = None
    ) -> TrainingHistory:
        if keras.backend.backend() not in ("tensorflow", "jax"):
            raise ModelNotApplicable(
                f"autorec trains on sparse row batches, which Keras supports on TensorFlow and JAX only, not on "
                f"{keras.backend.backend()} (set KERAS_BACKEND)"
            )
        self._check_memory(data.train)
        options = options or TrainOptions()
        self._options = options
        users = self._users = IdVocabulary.from_column(data.train["user_id"])
        items = self._items = IdVocabulary.from_column(data.train["item_id"])
        n_rows, n_columns = (items, users) if self.item_based else (users, items)
        n_rows_total, n_columns_total = n_rows.size_with_unknown, n_columns.size_with_unknown
        train = self._sparse(data.train, n_rows_total, n_columns_total)
        user_index, item_index = users.lookup(data.train["user_id"]), items.lookup(data.train["item_id"])
        self._biases = fit_bias_terms(
            user_index, item_index, data.train["rating"].to_numpy(), users.size_with_unknown, items.size_with_unknown
        )[-1]
        train_rows = np.arange(1, n_rows_total, dtype=np.int64)
        validation = None
        if data.has_validation and data.validation is not None:
            validation = self._sparse(data.validation, n_rows_total, n_columns_total)
            validation_rows = np.flatnonzero(validation.row_counts).astype(np.int64)

        def rows_dataset(rows: np.ndarray, batch_size: int, shuffle: bool, targets: SparseRows) -> Any:
            """Input: the rows' training ratings; target: ``targets``' cells of the same rows (observed only)."""
            if on_tensorflow():
                from rec_pipeline.models.tf_input import sparse_rows_dataset

                return sparse_rows_dataset(rows, batch_size, options.seed, shuffle, train, targets)

            def batch(positions: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
                # Padded to few distinct shapes (``padded_size``): extra target cells are NaN, which the loss and
                # metric skip (``observed_mse``, ``ObservedRMSE``), at row 0, column 0.
                batch_rows = rows[positions]
                cell_rows, cell_columns, values = targets.cells(batch_rows)
                size = padded_size(len(values))
                features = {
                    "ratings": train.padded_bcoo(batch_rows),
                    "cell_rows": np.zeros(size, np.int32),
                    "cell_columns": np.zeros(size, np.int32),
                }
                features["cell_rows"][: len(values)] = cell_rows
                features["cell_columns"][: len(values)] = cell_columns
                target = np.full(size, np.nan, np.float32)
                target[: len(values)] = values
                return features, target

            return ArrayBatches(len(rows), batch_size, options.seed, shuffle, batch)

        def make_datasets(batch_size: int) -> DatasetPair:
            train_ds = rows_dataset(train_rows, batch_size, True, train)
            val_ds = None
            if validation is not None and len(validation_rows):
                val_ds = rows_dataset(validation_rows, batch_size, False, validation)
            return train_ds, val_ds

        fit_options = options
        if options.distribution == "mirrored":
            fit_options = dataclasses.replace(options, distribution="one_device")
            if logger is not None:
                logger.warning("autorec: sparse row batches cannot be split across replicas; training on one device")
        # TensorFlow's batches hold the observed cells only; JAX's are padded with NaN targets, skipped by these.
        padded = not on_tensorflow()
        network, history = fit_network(
            self.kind,
            lambda: self._build_network(options, n_columns_total, self._biases.mean if self._biases else 3.0),
            make_datasets,
            len(train_rows),
            fit_options,
            self.default_learning_rate,
            loss=observed_mse if padded else "mse",
            make_metrics=lambda: [ObservedRMSE() if padded else keras.metrics.RootMeanSquaredError(name="rmse")],
            logger=logger,
        )
        self._network = _without_training_state(network)
        del network
        self._codes = self._row_codes(self._network, train, n_rows_total, options.batch_size)
        self._factors = None
        return history

    @staticmethod
    def _row_codes(network: keras.Model, rows: SparseRows, n_rows: int, batch_size: int) -> np.ndarray:
        """Last decoder hidden layer for every row: all that scoring needs besides the output layer."""
        ratings = next(tensor for tensor in network.inputs if tensor.name == "ratings")
        encoder = keras.Model(ratings, network.get_layer(_CODE_LAYER).output)
        step = max(batch_size, 1024)
        codes = np.empty((n_rows, int(encoder.output.shape[-1])), dtype=np.float32)  # filled in place: no 2nd copy
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            codes[start:stop] = np.asarray(encoder.predict_on_batch(rows.sparse(np.arange(start, stop))))
        return codes

    # ----- scoring ---------------------------------------------------------------------------------------------
    def _state(self) -> tuple[LatentFactors, BiasTerms]:
        """Row codes x output weights as ``LatentFactors`` over (user, item) rows, built once, and the fallback."""
        if self._network is None or self._codes is None or self._biases is None:
            raise RuntimeError("AutoRecRecommender is not fitted: call fit() or load() first")
        if self._factors is None:
            output_layer = self._network.get_layer(_OUTPUT_LAYER)
            assert isinstance(output_layer, ObservedCells)
            columns, bias = output_layer.column_vectors()
            codes = self._codes
            if self.item_based:  # rows are items: score(u, i) = code_i . W[:, u] + b_u
                self._factors = LatentFactors(columns, bias, codes, np.zeros(len(codes)))
            else:  # rows are users: score(u, i) = code_u . W[:, i] + b_i
                self._factors = LatentFactors(codes, np.zeros(len(codes)), columns, bias)
        return self._factors, self._biases

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        factors, biases = self._state()
        user_index = self._vocab("users").lookup(user_ids)
        item_index = self._vocab("items").lookup(item_ids)
        scores = biases.predict(user_index, item_index)
        known = np.flatnonzero((user_index > 0) & (item_index > 0))
        scores[known] = factors.pair_scores(user_index[known], item_index[known])
        return clip_ratings(scores)

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        return clip_ratings(self.ranking_scores(user_ids))

    def ranking_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        factors, biases = self._state()
        user_index = self._vocab("users").lookup(user_ids)
        known = user_index > 0
        if known.all():
            return factors.scores(user_index)
        scores = np.asarray(biases.score(user_index), dtype=np.float32)
        scores[known] = factors.scores(user_index[known])
        return scores

    def unknown_item_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        user_index = self._vocab("users").lookup(user_ids)
        return self._state()[1].predict(user_index, np.zeros_like(user_index)).astype(np.float64)

    # ----- persistence -------------------------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        # Not ``_state()``: saving needs no scoring cache (a copy of the output weights and one more per column).
        network, codes, biases = self._network, self._codes, self._biases
        if network is None or codes is None or biases is None:
            raise RuntimeError("AutoRecRecommender is not fitted: call fit() or load() first")
        network.save(directory / NETWORK_FILE)
        (directory / "state.json").write_text(json.dumps({"mean": biases.mean}))
        np.savez(directory / ARRAYS_FILE, row_codes=codes, user_bias=biases.user_bias, item_bias=biases.item_bias)

    def _load_state(self, directory: Path) -> None:
        mean = float(json.loads((directory / "state.json").read_text())["mean"])
        with np.load(directory / ARRAYS_FILE) as arrays:
            self._codes = arrays["row_codes"]
            self._biases = BiasTerms(mean, arrays["user_bias"], arrays["item_bias"])
        self._network = keras.saving.load_model(directory / NETWORK_FILE, compile=False)
        self._factors = None
