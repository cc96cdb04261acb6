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

# Full shuffles up to ~1M examples; beyond that a 1M-example buffer (tf.data keeps the buffer in memory).
_MAX_SHUFFLE_BUFFER = 1 << 20

DatasetPair = tuple[tf.data.Dataset, tf.data.Dataset | None]


def resolve_strategy(distribution: Distribution) -> tf.distribute.Strategy:
    """Map the option to a tf.distribute strategy; without GPUs every choice degrades to the default one."""
    gpus = tf.config.list_logical_devices("GPU")
    if distribution == "mirrored" and gpus:
        return tf.distribute.MirroredStrategy()
    if distribution == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.get_strategy()


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def layer_dtype(options: TrainOptions) -> str:
    """Per-layer dtype policy; passed to layers instead of setting Keras' global policy (no global state)."""
    return "mixed_float16" if options.mixed_precision else "float32"


def pair_dataset(
    features: dict[str, np.ndarray],
    targets: np.ndarray,
    batch_size: int,
    seed: int,
    shuffle: bool,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tf.data.Dataset:
    """(features, target) examples -> seeded shuffle -> batch -> optional per-batch transform -> prefetch.

    Transforms run per batch (not per example) so e.g. content lookups are one vectorized gather.
    """
    dataset = tf.data.Dataset.from_tensor_slices((features, targets))
    if shuffle:
        dataset = dataset.shuffle(min(len(targets), _MAX_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if transform is not None:
        dataset = dataset.map(lambda x, y: (transform(x), y), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


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
    default_learning_rate: float,
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
        optimizer: keras.optimizers.Optimizer = keras.optimizers.Adam(options.learning_rate_or(default_learning_rate))
        if options.mixed_precision:
            # float16 gradients underflow without loss scaling.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        network.compile(optimizer=optimizer, loss=loss, metrics=list(make_metrics()))

    monitor = options.early_stopping_monitor
    if validation is None:
        monitor = monitor.removeprefix("val_")
    callbacks: list[keras.callbacks.Callback] = []
    if options.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=options.early_stopping_patience,
                                                       restore_best_weights=True))
    if options.checkpoint_dir is not None:
        options.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.ModelCheckpoint(str(options.checkpoint_dir / f"{name}.best.weights.h5"),
                                                         monitor=monitor, save_best_only=True,
                                                         save_weights_only=True))
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
        logger.info("%s: %d training examples, %d replica(s), %d parameters", name, n_train,
                    strategy.num_replicas_in_sync, network.count_params())

    started = time.perf_counter()
    result = network.fit(train, validation_data=validation, epochs=options.epochs, callbacks=callbacks, shuffle=False,
                         verbose=options.verbose)
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
    )
    if logger is not None:
        logger.info("%s: %d epochs in %.1fs (%.0f examples/s), best epoch %d", name, epochs_run, wall,
                    history.examples_per_second, best)
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
        chunk: dict[str, Any] = {key: value[start:start + batch_size] for key, value in inputs.items()}
        if transform is not None:
            chunk = transform(chunk)
        outputs.append(np.asarray(network.predict_on_batch(chunk), dtype=np.float32).reshape(-1))
    return np.concatenate(outputs)
