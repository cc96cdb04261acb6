"""Small Keras layers the networks share, registered so ``.keras`` files load without this code's globals."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

PACKAGE = "rec_pipeline"


@keras.saving.register_keras_serializable(package=PACKAGE)
class IdDropout(keras.layers.Layer):
    """During training, replace an id by the reserved unknown index 0 with probability ``rate``.

    This trains embedding row 0 as "an average unseen user/item", so cold ids get a learned estimate instead
    of an untrained random vector; at inference it is the identity.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, ids: Any, training: bool | None = None) -> Any:
        if not training or self.rate <= 0.0:
            return ids
        keep = keras.random.uniform(ops.shape(ids), seed=self.seed_generator) >= self.rate
        return ops.where(keep, ids, ops.zeros_like(ids))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class KnownMask(keras.layers.Layer):
    """1.0 where an id is known (index > 0), else 0.0; shape [batch, 1] so it broadcasts over features."""

    def call(self, ids: Any) -> Any:
        return ops.cast(ops.expand_dims(ops.greater(ids, 0), -1), self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape, 1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ApplyMask(keras.layers.Layer):
    """``features * mask`` with the mask broadcast over the feature axis (zeroes a branch for missing inputs)."""

    def call(self, inputs: Any) -> Any:
        features, mask = inputs
        return features * ops.cast(ops.reshape(mask, (-1, 1)), features.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchRowL2(keras.layers.Layer):
    """Identity that adds ``rate * mean_over_batch(sum(x ** 2))`` to the training loss.

    Placed after an embedding lookup, this is the classic per-example MF regularizer (Koren 2009): each rating
    shrinks only the user and item rows it touches, so a row's total penalty grows with its number of ratings,
    exactly like its data term. A Keras ``embeddings_regularizer`` instead decays the *whole* table every step,
    which over-shrinks rarely rated rows and under-regularizes frequent ones; on generated data with a known
    noise floor that cost MF ~0.05 RMSE. The mean (not sum) keeps the strength independent of the batch size.
    """

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, rows: Any, training: bool | None = None) -> Any:
        if training and self.rate > 0.0:
            squared = ops.sum(ops.square(ops.cast(rows, "float32")), axis=-1)
            self.add_loss(self.rate * ops.mean(squared))
        return rows

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SelectByKnown(keras.layers.Layer):
    """``known * when_known + (1 - known) * when_unknown`` per row (``known`` from ``KnownMask``).

    Gradients reach only the branch that was selected, so each branch learns from its own examples.
    """

    def call(self, inputs: Any) -> Any:
        when_known, when_unknown, known = inputs
        known = ops.cast(ops.reshape(known, (-1, 1)), when_known.dtype)
        return known * when_known + (1.0 - known) * when_unknown

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]


@keras.saving.register_keras_serializable(package=PACKAGE)
class GlobalBias(keras.layers.Layer):
    """Adds one trainable scalar, initialised at the training mean so optimisation starts from the baseline."""

    def __init__(self, initial: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape: Any) -> None:
        self.bias = self.add_weight(name="bias", shape=(), initializer=keras.initializers.Constant(self.initial))

    def call(self, inputs: Any) -> Any:
        return inputs + ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "initial": self.initial}


@keras.saving.register_keras_serializable(package=PACKAGE)
def masked_mse(y_true: Any, y_pred: Any) -> Any:
    """MSE over observed entries only (0 = unobserved, valid because ratings are >= 1), as in AutoRec.

    Per-row values are rescaled so Keras' mean over the batch equals sum(err^2) / n_observed in that batch.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    mask = ops.cast(ops.greater(y_true, 0.0), "float32")
    per_row = ops.sum(mask * ops.square(y_true - y_pred), axis=-1)
    rows = ops.cast(ops.shape(y_true)[0], "float32")
    return per_row * rows / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedRootMeanSquaredError(keras.metrics.Metric):
    """RMSE over observed entries, accumulated exactly across batches (not a mean of batch RMSEs)."""

    def __init__(self, name: str = "rmse", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.squared_error = self.add_variable(shape=(), initializer="zeros", name="squared_error")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.cast(y_true, "float32")
        mask = ops.cast(ops.greater(y_true, 0.0), "float32")
        self.squared_error.assign_add(ops.sum(mask * ops.square(y_true - ops.cast(y_pred, "float32"))))
        self.count.assign_add(ops.sum(mask))

    def result(self) -> Any:
        return ops.sqrt(self.squared_error / ops.maximum(self.count, 1.0))

    def reset_state(self) -> None:
        self.squared_error.assign(0.0)
        self.count.assign(0.0)
