"""Neural collaborative filtering, MLP variant (He et al. 2017), regressing explicit ratings with MSE."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from rec_pipeline.models.base import LatentFactors
from rec_pipeline.models.data import TrainOptions
from rec_pipeline.models.keras_base import PairwiseKerasRecommender, embed, id_inputs
from rec_pipeline.models.layers import IdDropout
from rec_pipeline.models.training import layer_dtype

# Per-example row L2 did not help the MLP models on bench/quality.py (NCF 0.695 at 0.05 vs 0.689 with the
# whole-table options.l2), so they keep the table penalty unless asked: None selects it.
DEFAULT_EMBEDDING_L2: float | None = None
# (user, item) pairs per MLP chunk when ranking: ~32 MB of first-layer activations at 64 units.
_PAIRS_PER_CHUNK = 1 << 17
_ACTIVATIONS = ("relu", "linear")


@dataclass(frozen=True)
class SplitMLP:
    """Scores of an MLP over ``[user embedding, item embedding]`` (NCF, NeuMF's MLP branch), with the first layer
    split by input: ``W1 [p; q] + b1 = (p W1_user) + (q W1_item + b1)``.

    Both halves are computed once per user and per item (``user_first``, ``item_first``, rows as in the
    vocabularies), so per (user, item) pair only an add and the layers after the first remain: on the default
    (64, 32, 16) tower that removes 60% of the multiply-adds of a forward pass, and no embedding lookup or Keras
    call is made per pair. What remains cannot be factorized: ranking costs ~2.6k multiply-adds per pair against
    MF's 34, ~20x MF's time in bench/evaluation.py. ``layers`` are the (kernel, bias, activation) after the first
    (the last is the 1-wide rating head); ``extra`` adds a factorized term (NeuMF's GMF branch). The tail runs in
    ``keras.ops`` on the backend, a chunk at a time (numpy's OpenBLAS threads contend with TensorFlow's, and the
    element-wise steps would run on one core).
    """

    user_first: np.ndarray
    item_first: np.ndarray
    first_activation: str
    layers: list[tuple[np.ndarray, np.ndarray, str]]
    extra: LatentFactors | None = None
    _items: Any = field(init=False, repr=False)
    _tail_layers: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_items", ops.convert_to_tensor(np.asarray(self.item_first[1:], dtype=np.float32)))
        layers = [
            (ops.convert_to_tensor(np.asarray(kernel, np.float32)), ops.convert_to_tensor(np.asarray(bias, np.float32)))
            for kernel, bias, _ in self.layers
        ]
        object.__setattr__(self, "_tail_layers", layers)

    def _tail(self, first: Any) -> Any:
        x = ops.relu(first) if self.first_activation == "relu" else first
        for (kernel, bias), (_, _, activation) in zip(self._tail_layers, self.layers, strict=True):
            x = ops.matmul(x, kernel) + bias
            if activation == "relu":
                x = ops.relu(x)
        return x

    def _grid(self, users: np.ndarray) -> np.ndarray:
        """Scores ``[len(users), n_items]`` from the users' first-layer halves."""
        width = int(self._items.shape[1])
        first = ops.reshape(ops.expand_dims(ops.convert_to_tensor(users), 1) + self._items[None, :, :], (-1, width))
        return np.asarray(ops.convert_to_numpy(ops.reshape(self._tail(first), (len(users), -1))), np.float32)

    def _pairs(self, first: np.ndarray) -> np.ndarray:
        return np.asarray(
            ops.convert_to_numpy(ops.reshape(self._tail(ops.convert_to_tensor(first)), (-1,))), np.float32
        )

    @property
    def n_items(self) -> int:
        return int(self.item_first.shape[0]) - 1

    def scores(self, user_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index)
        out = np.empty((len(user_index), self.n_items), dtype=np.float32)
        step = max(1, _PAIRS_PER_CHUNK // max(self.n_items, 1))
        for start in range(0, len(user_index), step):
            out[start : start + step] = self._grid(self.user_first[user_index[start : start + step]])
        if self.extra is not None:
            out += self.extra.scores(user_index)
        return out

    def pair_scores(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        user_index, item_index = np.asarray(user_index), np.asarray(item_index)
        out = np.empty(len(user_index), dtype=np.float32)
        for start in range(0, len(user_index), _PAIRS_PER_CHUNK):
            stop = start + _PAIRS_PER_CHUNK
            out[start:stop] = self._pairs(
                self.user_first[user_index[start:stop]] + self.item_first[item_index[start:stop]]
            )
        if self.extra is not None:
            out += self.extra.pair_scores(user_index, item_index)
        return out

    def item_scores(self, user_index: np.ndarray, item_row: int) -> np.ndarray:
        user_index = np.asarray(user_index)
        return self.pair_scores(user_index, np.full(len(user_index), item_row))


def split_mlp(
    network: keras.Model,
    user_table: str,
    item_table: str,
    n_hidden: int,
    head_skip: int = 0,
    extra: LatentFactors | None = None,
) -> SplitMLP | None:
    """``SplitMLP`` from a trained network whose MLP is ``mlp_dense_0..n-1`` then ``rating``; ``head_skip`` head
    rows belong to another branch (NeuMF's GMF). ``None`` if an activation is not one numpy reproduces here."""

    def weights(name: str) -> list[np.ndarray]:
        return [np.asarray(array, dtype=np.float32) for array in network.get_layer(name).get_weights()]

    users, items = weights(user_table)[0], weights(item_table)[0]
    chain = []
    for depth in range(n_hidden):
        kernel, bias = weights(f"mlp_dense_{depth}")
        chain.append((kernel, bias, str(network.get_layer(f"mlp_dense_{depth}").get_config()["activation"])))
    head_kernel, head_bias = weights("rating")
    chain.append((head_kernel[head_skip:], head_bias, str(network.get_layer("rating").get_config()["activation"])))
    if any(activation not in _ACTIVATIONS for _, _, activation in chain):
        return None
    (kernel, bias, activation), rest = chain[0], chain[1:]
    dim = users.shape[1]
    user_first = np.asarray(ops.convert_to_numpy(ops.matmul(users, kernel[:dim])), np.float32)
    item_first = np.asarray(ops.convert_to_numpy(ops.matmul(items, kernel[dim:]) + bias), np.float32)
    return SplitMLP(user_first, item_first, activation, rest, extra)


def mlp_tower(x: Any, hidden_units: tuple[int, ...], options: TrainOptions, dtype: str, prefix: str) -> Any:
    """ReLU layers with dropout after each; shared by NCF and NeuMF's MLP branch."""
    regularizer = keras.regularizers.L2(options.l2) if options.l2 > 0 else None
    for depth, units in enumerate(hidden_units):
        x = keras.layers.Dense(
            units, activation="relu", kernel_regularizer=regularizer, dtype=dtype, name=f"{prefix}_dense_{depth}"
        )(x)
        if options.dropout > 0:
            x = keras.layers.Dropout(
                options.dropout, seed=options.seed + depth, dtype=dtype, name=f"{prefix}_dropout_{depth}"
            )(x)
    return x


def rating_head(x: Any, global_mean: float, name: str = "rating") -> Any:
    """Linear float32 output whose bias starts at the training mean (kept float32 under mixed precision)."""
    return keras.layers.Dense(1, dtype="float32", name=name, bias_initializer=keras.initializers.Constant(global_mean))(
        x
    )


def dropped_ids(user: Any, item: Any, options: TrainOptions) -> tuple[Any, Any]:
    """Id-dropout on both inputs, so embedding row 0 learns to stand for unseen users/items."""
    return (
        IdDropout(options.id_dropout, seed=options.seed, name="user_id_dropout")(user),
        IdDropout(options.id_dropout, seed=options.seed + 1, name="item_id_dropout")(item),
    )


class NCFRecommender(PairwiseKerasRecommender):
    """Concatenated user/item embeddings through an MLP with dropout into one rating.

    Not factorizable: ranking runs the MLP per (user, item) pair, from first-layer halves precomputed per user
    and per item (``SplitMLP``).
    """

    kind = "ncf"

    def __init__(
        self,
        hidden_units: tuple[int, ...] | list[int] = (64, 32, 16),
        embedding_l2: float | None = DEFAULT_EMBEDDING_L2,
    ) -> None:
        super().__init__()
        self.hidden_units = tuple(int(units) for units in hidden_units)
        # Per-example L2 on the looked-up user/item rows (see layers.BatchRowL2); None: whole-table options.l2.
        self.embedding_l2 = None if embedding_l2 is None else float(embedding_l2)

    def get_config(self) -> dict[str, Any]:
        return {"hidden_units": list(self.hidden_units), "embedding_l2": self.embedding_l2}

    def _build_network(self, options: TrainOptions, n_users: int, n_items: int) -> keras.Model:
        dtype = layer_dtype(options)
        user_in, item_in = id_inputs()
        user, item = dropped_ids(user_in, item_in, options)
        p = embed(user, n_users, options.embedding_dim, options, "user_embedding", dtype, self.embedding_l2)
        q = embed(item, n_items, options.embedding_dim, options, "item_embedding", dtype, self.embedding_l2)
        x = keras.layers.Concatenate(dtype=dtype)([p, q])
        rating = rating_head(mlp_tower(x, self.hidden_units, options, dtype, "mlp"), self._global_mean)
        return keras.Model({"user": user_in, "item": item_in}, rating, name="ncf")

    def _build_scorer(self) -> SplitMLP | None:
        return split_mlp(self._fitted_network(), "user_embedding", "item_embedding", len(self.hidden_units))
