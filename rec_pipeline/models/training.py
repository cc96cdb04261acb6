"""The one training loop every Keras model goes through: seeds, device placement, input batches, callbacks,
history, on any Keras backend.

Putting it in one place means early stopping, checkpointing, TensorBoard, mixed precision and multi-GPU behave
identically for MF, NCF, NeuMF, the hybrid and AutoRec. Backend-specific parts: on TensorFlow (the default)
batches come from ``tf.data`` pipelines, devices from ``tf.distribute`` and Adam steps from a fused kernel
(``tf_input``, imported only there); on JAX and PyTorch batches come from ``ArrayBatches`` (a
``keras.utils.PyDataset`` with the same seeded per-epoch shuffle and batched gathers) and ``distribution=
"mirrored"`` means ``keras.distribution.DataParallel`` over the local accelerators (JAX only).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from rec_pipeline.models.backend import check_backend
from rec_pipeline.models.data import Distribution, TrainingHistory, TrainOptions
from rec_pipeline.models.layers import PACKAGE

# (training batches, validation batches or None): ``tf.data.Dataset``s on TensorFlow, ``ArrayBatches`` elsewhere.
DatasetPair = tuple[Any, Any | None]


def on_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


@dataclass(frozen=True)
class Placement:
    """Where a network trains: the scope to build (and fit) it in and how many replicas split each batch."""

    scope: Callable[[], contextlib.AbstractContextManager[Any]]
    replicas: int
    description: str


def resolve_placement(distribution: Distribution, logger: logging.Logger | None = None) -> Placement:
    """The option on this backend: ``tf.distribute`` on TensorFlow (``mirrored``: ``MirroredStrategy`` over the
    GPUs); on JAX ``mirrored`` is ``keras.distribution.DataParallel`` over the local GPUs (over the CPU devices
    when there are no GPUs but several CPU devices, e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=2``);
    everything else, and PyTorch (no Keras distribution API), trains on the default device."""
    if on_tensorflow():
        from rec_pipeline.models.tf_input import resolve_strategy

        strategy = resolve_strategy(distribution)
        replicas = int(strategy.num_replicas_in_sync)
        return Placement(strategy.scope, replicas, f"{type(strategy).__name__} x{replicas}")
    if distribution == "mirrored" and keras.backend.backend() == "jax":
        devices = keras.distribution.list_devices()  # the accelerators, or the CPU devices when there are none
        if len(devices) > 1:
            data_parallel = keras.distribution.DataParallel(devices=devices)
            return Placement(data_parallel.scope, len(devices), f"DataParallel x{len(devices)}")
    elif distribution == "mirrored" and logger is not None:
        logger.warning("distribution='mirrored' needs TensorFlow or JAX; training on one device")
    return Placement(contextlib.nullcontext, 1, f"{keras.backend.backend()} default device")


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, each variable updated by TensorFlow's fused ``ResourceApplyAdam`` kernel (same formula).

    Why: Keras 3 writes the update as ~12 element-wise ops, each a pass over the variable and its two moments.
    Embedding tables are updated densely every step (Adam decays every row's moments), so for MF at 100k users
    those passes were half of a training step; the fused kernel makes one. Other backends (where XLA fuses the
    element-wise ops itself), and AMSGrad, fall back to Keras' own update.
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.amsgrad or not on_tensorflow():
            super().update_step(gradient, variable, learning_rate)
            return
        from rec_pipeline.models.tf_input import fused_adam_update

        fused_adam_update(self, gradient, variable, learning_rate)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScaledLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """``min(factor * base(step), cap) * min(1, (step + 1) / warmup_steps)``: a base rate (a number or a schedule)
    scaled for the batch size, capped, with a linear warm-up (``TrainOptions.learning_rate_scaling``)."""

    def __init__(
        self, base: Any, factor: float = 1.0, warmup_steps: int = 0, cap: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(base, dict):
            base = keras.optimizers.schedules.deserialize(base)
        self.base = base
        self.factor = float(factor)
        self.warmup_steps = int(warmup_steps)
        self.cap = None if cap is None else float(cap)

    def __call__(self, step: Any) -> Any:
        step = keras.ops.cast(step, "float32")
        base = self.base(step) if callable(self.base) else self.base
        rate = keras.ops.cast(base, "float32") * self.factor
        if self.cap is not None:
            rate = keras.ops.minimum(rate, self.cap)
        if self.warmup_steps > 0:
            rate = rate * keras.ops.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
        return rate

    def get_config(self) -> dict[str, Any]:
        base = self.base
        if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
            base = keras.optimizers.schedules.serialize(base)
        return {"base": base, "factor": self.factor, "warmup_steps": self.warmup_steps, "cap": self.cap}


def training_learning_rate(
    options: TrainOptions,
    default: float | keras.optimizers.schedules.LearningRateSchedule,
    global_batch_size: int,
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The rate the optimizer gets: ``options.learning_rate`` or ``default``, scaled to ``global_batch_size`` by
    ``options.learning_rate_scaling`` (capped at ``max_learning_rate``), warmed up over ``warmup_steps``.

    Without scaling or warm-up the base comes back unchanged (a plain number stays a number)."""
    base = default if options.learning_rate is None else float(options.learning_rate)
    if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
        if options.learning_rate_scaling == "none" and options.warmup_steps == 0:
            return base
        cap = options.max_learning_rate if options.learning_rate_scaling != "none" else None
        return ScaledLearningRate(base, options.learning_rate_factor(global_batch_size), options.warmup_steps, cap)
    rate = options.scaled_learning_rate(float(base), global_batch_size)
    if options.warmup_steps == 0:
        return rate
    return ScaledLearningRate(rate, 1.0, options.warmup_steps)


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def layer_dtype(options: TrainOptions) -> str:
    """Per-layer dtype policy; passed to layers instead of setting Keras' global policy (no global state)."""
    return "mixed_float16" if options.mixed_precision else "float32"


@dataclass(frozen=True)
class FeatureLookup:
    """A per-batch feature transform made of table gathers: ``out[name] = tables[name][features[key]]`` for every
    table (replacing a feature of that name), the other features unchanged.

    Declarative so that each input pipeline runs it its own way: ``tf.gather`` inside ``tf.data`` on TensorFlow,
    numpy (``__call__``) in ``ArrayBatches`` and at prediction. The hybrid looks up its content per item this way.
    """

    key: str
    tables: dict[str, np.ndarray] = field(default_factory=dict)

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        index = np.asarray(features[self.key])
        looked_up = {name: np.take(table, index, axis=0) for name, table in self.tables.items()}
        return {**features, **looked_up}


class ArrayBatches(keras.utils.PyDataset):
    """Batches for the backends without ``tf.data``: per epoch a fresh permutation of ``n`` example indices drawn
    from ``(seed, epoch)`` (so runs repeat exactly), cut into ``batch_size`` slices (the last one shorter), each
    turned into one batch by ``make_batch(indices)`` (batched gathers).

    ``multiple_of`` trims the last batch to a multiple of it (``keras.distribution`` splits every batch evenly
    over the devices): fewer than ``multiple_of`` examples per epoch are left out, different ones every epoch.

    Batches are built in the training thread (no worker pool): a gather per batch costs microseconds, far less
    than a training step, and one thread keeps the order deterministic.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        shuffle: bool,
        make_batch: Callable[[np.ndarray], Any],
        multiple_of: int = 1,
    ) -> None:
        super().__init__()
        if n < 1 or batch_size < 1 or multiple_of < 1:
            raise ValueError("ArrayBatches needs at least one example, a positive batch size and multiple_of")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.make_batch = make_batch
        self.multiple_of = int(multiple_of)
        self.epoch = 0
        self._order: np.ndarray | None = None

    def _last_size(self) -> int:
        """Size of the last, shorter batch (0: none)."""
        rest = self.n % self.batch_size
        return rest - rest % self.multiple_of

    def __len__(self) -> int:
        return self.n // self.batch_size + (1 if self._last_size() else 0)

    def order(self) -> np.ndarray:
        """This epoch's example order (int64)."""
        if self._order is None:
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            else:
                self._order = np.arange(self.n, dtype=np.int64)
        return self._order

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.batch_size
        stop = start + (self.batch_size if index < self.n // self.batch_size else self._last_size())
        return self.make_batch(self.order()[start:stop])

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = None

    def __iter__(self) -> Iterator[Any]:
        """One epoch (for inspection and tests; Keras indexes the batches itself)."""
        for index in range(len(self)):
            yield self[index]
        self.on_epoch_end()


def pair_dataset(
    features: dict[str, np.ndarray],
    targets: np.ndarray,
    batch_size: int,
    seed: int,
    shuffle: bool,
    lookup: FeatureLookup | None = None,
) -> Any:
    """(features, target) batches in a seeded per-epoch order, ``lookup`` applied per batch: a ``tf.data``
    pipeline on TensorFlow (``tf_input.pair_dataset``), ``ArrayBatches`` elsewhere."""
    if on_tensorflow():
        from rec_pipeline.models.tf_input import pair_dataset as tf_pair_dataset

        return tf_pair_dataset(features, targets, batch_size, seed, shuffle, lookup)

    def make_batch(indices: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        x = {name: values[indices] for name, values in features.items()}
        return (lookup(x) if lookup is not None else x), targets[indices]

    return ArrayBatches(len(targets), batch_size, seed, shuffle, make_batch)


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
    """Build, compile and fit a network on the configured devices; returns it with best weights restored.

    ``make_datasets(global_batch_size)`` is called after the placement is known, because data-parallel training
    (MirroredStrategy, keras.distribution.DataParallel) splits each step's batch across replicas: ``batch_size``
    is per replica, and the learning rate is scaled to the global batch (``TrainOptions.learning_rate_scaling``).
    Early stopping watches ``options.early_stopping_monitor`` (validation loss by default, which includes the L2
    penalty) and always restores the best epoch's weights. ``options.backend``, when set, must be the backend
    Keras runs (``backend.check_backend``).
    """
    if options.backend is not None:
        check_backend(options.backend)
    keras.utils.set_random_seed(options.seed)
    placement = resolve_placement(options.distribution, logger)
    global_batch_size = options.batch_size * placement.replicas
    train, validation = make_datasets(global_batch_size)
    if placement.replicas > 1:
        # keras.distribution shards every batch evenly over the devices, the last, shorter one included.
        for batches in (train, validation):
            if isinstance(batches, ArrayBatches):
                batches.multiple_of = placement.replicas
    learning_rate = training_learning_rate(options, default_learning_rate, global_batch_size)
    with placement.scope():
        network = build()
        optimizer: keras.optimizers.Optimizer = FusedAdam(learning_rate)
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
            "%s: %d training examples, %s, batch %d, learning rate %s, %d parameters",
            name,
            n_train,
            placement.description,
            global_batch_size,
            learning_rate if isinstance(learning_rate, float) else type(learning_rate).__name__,
            network.count_params(),
        )

    timer = _EpochTimer()
    callbacks.insert(0, timer)
    started = time.perf_counter()
    # keras.distribution shards each batch only inside its scope; tf.distribute needs it only to build and compile.
    with contextlib.nullcontext() if on_tensorflow() else placement.scope():
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

    ``transform`` (e.g. a ``FeatureLookup`` of content) runs per chunk, so wide per-item features are never
    materialized for every scored pair at once.
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
