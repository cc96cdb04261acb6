"""Small Keras layers the networks share, registered so ``.keras`` files load without this code's globals."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

PACKAGE = "rec_pipeline"


def static_positions() -> bool:
    """Whether ``MaskedRows`` must return one position per batch row (JAX compiles for static shapes only)."""
    return keras.backend.backend() == "jax"


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

    Gradients reach only the branch that was selected, so each branch learns from its own examples. Hybrid
    networks saved before ``MaskedRows``/``StitchRows`` (which skip the unselected branch's work) use it.
    """

    def call(self, inputs: Any) -> Any:
        when_known, when_unknown, known = inputs
        known = ops.cast(ops.reshape(known, (-1, 1)), when_known.dtype)
        return known * when_known + (1.0 - known) * when_unknown

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedRows(keras.layers.Layer):
    """Positions (int32, shape ``[n]``) of the batch rows whose mask (``KnownMask``, ``[batch, 1]``) is 1, or 0
    with ``known=False``.

    With ``TakeRows`` and ``StitchRows`` a branch runs only on the rows that use it: the hybrid's warm content
    tower on rated items, its cold tower on the rest, instead of both on every row with one result discarded.

    On JAX, whose compiled steps need static shapes, the positions keep the batch's shape instead: ``i`` for a
    selected row, ``-1`` for the others (``static_positions``). Both branches then run on every row and
    ``StitchRows`` picks each row's result, with the same values and gradients (a row's gradient still reaches
    only its own branch), just without the saving.
    """

    def __init__(self, known: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.known = bool(known)

    def call(self, mask: Any) -> Any:
        flags = ops.greater(ops.reshape(ops.cast(mask, "float32"), (-1,)), 0.5)
        if not self.known:
            flags = ops.logical_not(flags)
        if static_positions():
            positions = ops.arange(ops.shape(flags)[0], dtype="int32")
            return ops.where(flags, positions, ops.full_like(positions, -1))
        return ops.cast(ops.where(flags)[0], "int32")

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (None,)

    def compute_output_spec(self, mask: Any) -> Any:
        return keras.KerasTensor((None,), dtype="int32")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "known": self.known}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TakeRows(keras.layers.Layer):
    """``features[rows]``: the rows picked by ``MaskedRows``."""

    def call(self, inputs: Any) -> Any:
        features, rows = inputs
        if static_positions():  # -1 marks an unselected row (MaskedRows); its result is discarded
            rows = ops.maximum(rows, 0)
        return ops.take(features, rows, axis=0)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (None, *input_shape[0][1:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class StitchRows(keras.layers.Layer):
    """Inverse of two ``TakeRows``: rows ``a`` (at positions ``rows_a``) and ``b`` (at ``rows_b``), which together
    cover the batch once, back in batch order. Each row's gradient reaches only the branch that produced it."""

    def call(self, inputs: Any) -> Any:
        a, rows_a, b, rows_b = inputs
        if static_positions():  # both hold every row, in batch order; rows_a >= 0 marks a's rows
            selected = ops.reshape(ops.greater_equal(rows_a, 0), (-1, *([1] * (len(a.shape) - 1))))
            return ops.where(selected, a, ops.cast(b, a.dtype))
        order = ops.argsort(ops.concatenate([rows_a, rows_b], axis=0))
        return ops.take(ops.concatenate([a, ops.cast(b, a.dtype)], axis=0), order, axis=0)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (None, *input_shape[0][1:])


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
class Cosine(keras.layers.Layer):
    """Cosine similarity of two ``[batch, d]`` inputs as ``[batch, 1]``: ``Dot(axes=1, normalize=True)``'s values,
    computed in float32, with a finite gradient at zero vectors.

    Keras normalizes by ``x * min(rsqrt(|x|^2), 1 / eps)``; at a zero vector (an id masked to "unknown") the
    gradient of that ``rsqrt`` is infinite and the chain rule gives ``0 * inf = NaN``, which JAX propagates into
    every weight. Clamping the squared norm first (``rsqrt(max(|x|^2, eps^2))``) gives the same values and a zero
    gradient there.
    """

    def call(self, inputs: Any) -> Any:
        a, b = (ops.cast(x, "float32") for x in inputs)
        floor = keras.backend.epsilon() ** 2

        def unit(x: Any) -> Any:
            return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), floor))

        return ops.cast(ops.sum(unit(a) * unit(b), axis=-1, keepdims=True), self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0][0], 1)
