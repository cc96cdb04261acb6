"""The one training loop every Keras model goes through: seeds, tf.distribute, tf.data, callbacks, history.

Putting it in one place means early stopping, checkpointing, TensorBoard, mixed precision and multi-GPU behave
identically for MF, NCF, NeuMF, the hybrid and AutoRec.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rec_pipeline.models.data import Distribution, TrainingHistory, TrainOptions
from rec_pipeline.models.layers import PACKAGE

DatasetPair = tuple[tf.data.Dataset, tf.data.Dataset | None]


def resolve_strategy(distribution: Distribution) -> tf.distribute.Strategy:
    """Map the option to a tf.distribute strategy; without GPUs every choice degrades to the default one."""
    gpus = tf.config.list_logical_devices("GPU")
    if distribution == "mirrored" and gpus:
        return tf.distribute.MirroredStrategy()
    if distribution == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.get_strategy()


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, each variable updated by TensorFlow's fused ``ResourceApplyAdam`` kernel (same formula).

    Why: Keras 3 writes the update as ~12 element-wise ops, each a pass over the variable and its two moments.
    Embedding tables are updated densely every step (Adam decays every row's moments), so for MF at 100k users
    those passes were half of a training step; the fused kernel makes one. Other backends, and AMSGrad, fall
    back to Keras' own update.
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.amsgrad or keras.backend.backend() != "tensorflow":
            super().update_step(gradient, variable, learning_rate)
            return
        index = self._get_variable_index(variable)
        m, v = self._momentums[index].value, self._velocities[index].value
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)

        def constant(value: Any) -> tf.Tensor:
            return tf.cast(value, dtype)

        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=m.handle,
            v=v.handle,
            beta1_power=tf.pow(constant(self.beta_1), step),
            beta2_power=tf.pow(constant(self.beta_2), step),
            lr=constant(learning_rate),
            beta1=constant(self.beta_1),
            beta2=constant(self.beta_2),
            epsilon=constant(self.epsilon),
            grad=tf.convert_to_tensor(tf.cast(gradient, dtype)),
        )


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def layer_dtype(options: TrainOptions) -> str:
    """Per-layer dtype policy; passed to layers instead of setting Keras' global policy (no global state)."""
    return "mixed_float16" if options.mixed_precision else "float32"


def index_batches(n: int, batch_size: int, seed: int, shuffle: bool) -> tf.data.Dataset:
    """Batches of example indices (int64 vectors of ``batch_size``, the last one shorter), in a fresh seeded order
    every epoch when ``shuffle``.

    Why indices: a tf.data ``shuffle`` buffer moves every example through a queue one at a time and holds up to
    a million of them (~380 MB for MF's features), which cost MF 29% of its throughput. Here one stateless
    shuffle of ``n`` integers per epoch (a new key per iteration of the dataset, drawn from ``seed`` and the
    global seed, so runs repeat exactly) is cut into batches, and each batch of features is one vectorized
    gather (``pair_dataset``): the same scheme as Keras' own array pipeline.
    """
    n_full = n // batch_size

    def batches(order: tf.Tensor) -> tf.data.Dataset:
        full = tf.data.Dataset.from_tensor_slices(tf.reshape(order[: n_full * batch_size], [n_full, batch_size]))
        if n % batch_size:
            full = full.concatenate(tf.data.Dataset.from_tensors(order[n_full * batch_size :]))
        return full

    if not shuffle:
        return batches(tf.range(n, dtype=tf.int64))
    epoch_keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    seed_tensor = tf.constant(seed, tf.int64)
    return epoch_keys.flat_map(
        lambda key: batches(
            tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([key, seed_tensor]))
        )
    )


def pair_dataset(
    features: dict[str, np.ndarray],
    targets: np.ndarray,
    batch_size: int,
    seed: int,
    shuffle: bool,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tf.data.Dataset:
    """(features, target) batches gathered by ``index_batches`` -> optional per-batch transform -> prefetch.

    The arrays enter the pipeline as one dataset element repeated beside the index batches (as Keras does),
    not as constants captured in the map function, so their size never touches the 2 GB graph limit.
    Transforms run per batch (not per example) so e.g. content lookups are one vectorized gather.
    """
    arrays = ({name: tf.convert_to_tensor(values) for name, values in features.items()}, tf.convert_to_tensor(targets))
    indices = index_batches(len(targets), batch_size, seed, shuffle)
    dataset = tf.data.Dataset.zip((indices, tf.data.Dataset.from_tensors(arrays).repeat()))

    def gather(batch: tf.Tensor, data: tuple[dict[str, tf.Tensor], tf.Tensor]) -> tuple[dict[str, Any], tf.Tensor]:
        x = {name: tf.gather(values, batch) for name, values in data[0].items()}
        return (transform(x) if transform is not None else x), tf.gather(data[1], batch)

    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # A known length lets Keras count steps per epoch (flat_map hides it).
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(-(-len(targets) // batch_size)))
    options = tf.data.Options()
    # Static rewrites would serialize the pipeline graph (arrays included) for no gain on a gather-only pipeline.
    options.experimental_optimization.apply_default_optimizations = False
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


class _EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch, so throughput can be read per epoch (the first one also traces the graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


class _EpochLogger(keras.callbacks.Callback):
    """Routes per-epoch metrics to a logger (the Dagster run log) instead of stdout."""

    def __init__(self, logger: logging.Logger, name: str, epochs: int) -> None:
        super().__init__()
        self._logger = logger
        self._name = name
        self._epochs = epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        metrics = ", ".join(f"{key}={value:.4f}" for key, value in sorted((logs or {}).items()))
        self._logger.info("%s epoch %d/%d: %s", self._name, epoch + 1, self._epochs, metrics)


def fit_network(
    name: str,
    build: Callable[[], keras.Model],
    make_datasets: Callable[[int], DatasetPair],
    n_train: int,
    options: TrainOptions,
    default_learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    loss: Any = "mse",
    make_metrics: Callable[[], Sequence[Any]] = lambda: [keras.metrics.RootMeanSquaredError(name="rmse")],
    logger: logging.Logger | None = None,
) -> tuple[keras.Model, TrainingHistory]:
    """Build, compile and fit a network under the configured strategy; returns it with best weights restored.

    ``make_datasets(global_batch_size)`` is called after the strategy is known, because under MirroredStrategy
    each step's batch is split across replicas. Early stopping watches ``options.early_stopping_monitor``
    (validation loss by default, which includes the L2 penalty) and always restores the best epoch's weights.
    """
    keras.utils.set_random_seed(options.seed)
    strategy = resolve_strategy(options.distribution)
    train, validation = make_datasets(options.batch_size * strategy.num_replicas_in_sync)
    with strategy.scope():
        network = build()
        optimizer: keras.optimizers.Optimizer = FusedAdam(options.learning_rate_or(default_learning_rate))
        if options.mixed_precision:
            # float16 gradients underflow without loss scaling.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        network.compile(optimizer=optimizer, loss=loss, metrics=list(make_metrics()))

    monitor = options.early_stopping_monitor
    if validation is None:
        monitor = monitor.removeprefix("val_")
    callbacks: list[keras.callbacks.Callback] = []
    if options.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=options.early_stopping_patience, restore_best_weights=True
            )
        )
    if options.checkpoint_dir is not None:
        options.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(options.checkpoint_dir / f"{name}.best.weights.h5"),
                monitor=monitor,
                save_best_only=True,
                save_weights_only=True,
            )
        )
    if options.tensorboard_dir is not None:
        if tensorboard_available():
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(options.tensorboard_dir / name)))
        else:
            # tensorflow-cpu wheels do not always pull in tensorboard; losing curves must not lose the model.
            message = f"{name}: tensorboard_dir set but the tensorboard package is not installed; skipping it"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            if logger is not None:
                logger.warning(message)
    if logger is not None:
        callbacks.append(_EpochLogger(logger, name, options.epochs))
        logger.info(
            "%s: %d training examples, %d replica(s), %d parameters",
            name,
            n_train,
            strategy.num_replicas_in_sync,
            network.count_params(),
        )

    timer = _EpochTimer()
    callbacks.insert(0, timer)
    started = time.perf_counter()
    result = network.fit(
        train,
        validation_data=validation,
        epochs=options.epochs,
        callbacks=callbacks,
        shuffle=False,
        verbose=options.verbose,
    )
    wall = time.perf_counter() - started
    curves = {key: [float(value) for value in values] for key, values in result.history.items()}
    epochs_run = len(curves.get("loss", [])) or 1
    monitored = curves.get(monitor)
    best = int(np.nanargmin(monitored)) + 1 if monitored and options.early_stopping_patience > 0 else epochs_run
    history = TrainingHistory(
        loss=curves.get("loss", []),
        val_loss=curves.get("val_loss", []),
        rmse=curves.get("rmse", []),
        val_rmse=curves.get("val_rmse", []),
        best_epoch=best,
        epochs_run=epochs_run,
        examples_per_second=n_train * epochs_run / max(wall, 1e-9),
        wall_seconds=wall,
        epoch_seconds=timer.seconds,
    )
    if logger is not None:
        logger.info(
            "%s: %d epochs in %.1fs (%.0f examples/s), best epoch %d",
            name,
            epochs_run,
            wall,
            history.examples_per_second,
            best,
        )
    return network, history


def run_network(
    network: keras.Model,
    inputs: dict[str, np.ndarray],
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    batch_size: int = 1 << 16,
) -> np.ndarray:
    """Forward pass in fixed-size chunks, flattened to one float32 value per row.

    ``transform`` (e.g. content lookup) runs per chunk, so wide per-item features are never materialized for
    every scored pair at once.
    """
    total = int(next(iter(inputs.values())).shape[0])
    if total == 0:
        return np.zeros(0, dtype=np.float32)
    outputs = []
    for start in range(0, total, batch_size):
        chunk: dict[str, Any] = {key: value[start : start + batch_size] for key, value in inputs.items()}
        if transform is not None:
            chunk = transform(chunk)
        outputs.append(np.asarray(network.predict_on_batch(chunk), dtype=np.float32).reshape(-1))
    return np.concatenate(outputs)
