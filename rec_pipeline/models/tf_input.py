"""The TensorFlow-only half of training: ``tf.data`` input pipelines, ``tf.distribute`` strategies and the fused
Adam kernel. Imported only when Keras runs on TensorFlow (``training.on_tensorflow()``), so a JAX or PyTorch
process never loads TensorFlow for training (nor lets it reserve GPU memory).

The pipelines here and ``training.ArrayBatches`` (every other backend) produce the same batches: a fresh seeded
permutation of the example indices per epoch, cut into batches, each batch of features one vectorized gather.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from rec_pipeline.models.data import Distribution

if TYPE_CHECKING:
    from rec_pipeline.models.autorec import SparseRows
    from rec_pipeline.models.training import FeatureLookup


def resolve_strategy(distribution: Distribution) -> tf.distribute.Strategy:
    """Map the option to a tf.distribute strategy; without GPUs every choice degrades to the default one."""
    gpus = tf.config.list_logical_devices("GPU")
    if distribution == "mirrored" and gpus:
        return tf.distribute.MirroredStrategy()
    if distribution == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.get_strategy()


def fused_adam_update(optimizer: Any, gradient: Any, variable: Any, learning_rate: Any) -> None:
    """One Adam step of ``variable`` by TensorFlow's fused ``ResourceApplyAdam`` kernel (``training.FusedAdam``)."""
    index = optimizer._get_variable_index(variable)
    m, v = optimizer._momentums[index].value, optimizer._velocities[index].value
    dtype = variable.dtype
    step = tf.cast(optimizer.iterations + 1, dtype)

    def constant(value: Any) -> tf.Tensor:
        return tf.cast(value, dtype)

    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle,
        m=m.handle,
        v=v.handle,
        beta1_power=tf.pow(constant(optimizer.beta_1), step),
        beta2_power=tf.pow(constant(optimizer.beta_2), step),
        lr=constant(learning_rate),
        beta1=constant(optimizer.beta_1),
        beta2=constant(optimizer.beta_2),
        epsilon=constant(optimizer.epsilon),
        grad=tf.convert_to_tensor(tf.cast(gradient, dtype)),
    )


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


def _finish(dataset: tf.data.Dataset, n: int, batch_size: int) -> tf.data.Dataset:
    # A known length lets Keras count steps per epoch (flat_map hides it).
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
    options = tf.data.Options()
    # Static rewrites would serialize the pipeline graph (arrays included) for no gain on a gather-only pipeline.
    options.experimental_optimization.apply_default_optimizations = False
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def pair_dataset(
    features: dict[str, np.ndarray],
    targets: np.ndarray,
    batch_size: int,
    seed: int,
    shuffle: bool,
    lookup: FeatureLookup | None = None,
) -> tf.data.Dataset:
    """(features, target) batches gathered by ``index_batches`` -> optional per-batch table lookup -> prefetch.

    The arrays enter the pipeline as one dataset element repeated beside the index batches (as Keras does),
    not as constants captured in the map function, so their size never touches the 2 GB graph limit.
    The lookup (e.g. the hybrid's content tables) runs per batch, not per example: one vectorized gather.
    """
    arrays = ({name: tf.convert_to_tensor(values) for name, values in features.items()}, tf.convert_to_tensor(targets))
    indices = index_batches(len(targets), batch_size, seed, shuffle)
    dataset = tf.data.Dataset.zip((indices, tf.data.Dataset.from_tensors(arrays).repeat()))
    tables = {name: tf.convert_to_tensor(table) for name, table in lookup.tables.items()} if lookup else {}

    def gather(batch: tf.Tensor, data: tuple[dict[str, tf.Tensor], tf.Tensor]) -> tuple[dict[str, Any], tf.Tensor]:
        x = {name: tf.gather(values, batch) for name, values in data[0].items()}
        if lookup is not None:
            key = x[lookup.key]
            x = {**x, **{name: tf.gather(table, key) for name, table in tables.items()}}
        return x, tf.gather(data[1], batch)

    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _finish(dataset, len(targets), batch_size)


def sparse_rows_dataset(
    rows: np.ndarray, batch_size: int, seed: int, shuffle: bool, inputs: SparseRows, targets: SparseRows
) -> tf.data.Dataset:
    """AutoRec's batches: ``inputs``' rows as a ``tf.SparseTensor`` ("ratings") and, as the target, ``targets``'
    observed cells of the same rows ("cell_rows", "cell_columns" and the ratings), gathered from ragged tables."""
    table = tf.constant(rows)
    input_tables, target_tables = _ragged(inputs), _ragged(targets)
    n_columns = tf.constant(inputs.n_columns, tf.int64)

    def cells(ragged: tuple[tf.RaggedTensor, tf.RaggedTensor], batch_rows: tf.Tensor) -> tuple[tf.Tensor, ...]:
        columns = tf.gather(ragged[0], batch_rows)
        return columns.value_rowids(), columns.flat_values, tf.gather(ragged[1], batch_rows).flat_values

    def batch(positions: tf.Tensor) -> tuple[dict[str, Any], tf.Tensor]:
        batch_rows = tf.gather(table, positions)
        input_positions, input_columns, input_values = cells(input_tables, batch_rows)
        shape = tf.stack([tf.shape(batch_rows, out_type=tf.int64)[0], n_columns])
        ratings = tf.SparseTensor(tf.stack([input_positions, input_columns], axis=1), input_values, shape)
        cell_rows, cell_columns, values = cells(target_tables, batch_rows)
        features = {
            "ratings": ratings,
            "cell_rows": tf.cast(cell_rows, tf.int32),
            "cell_columns": tf.cast(cell_columns, tf.int32),
        }
        return features, values

    dataset = index_batches(len(rows), batch_size, seed, shuffle).map(
        batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return dataset.apply(tf.data.experimental.assert_cardinality(-(-len(rows) // batch_size))).prefetch(
        tf.data.AUTOTUNE
    )


def _ragged(rows: SparseRows) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    return (
        tf.RaggedTensor.from_row_splits(rows.columns, rows.indptr),
        tf.RaggedTensor.from_row_splits(rows.values, rows.indptr),
    )


def sparse_tensor(rows: SparseRows, row_index: np.ndarray) -> tf.SparseTensor:
    """``rows``' rows ``row_index`` as a ``[len(row_index), n_columns]`` ``tf.SparseTensor`` (for prediction)."""
    positions, columns, values = rows.cells(row_index)
    return tf.SparseTensor(
        np.stack([positions, columns], axis=1), values, np.array([len(row_index), rows.n_columns], np.int64)
    )
