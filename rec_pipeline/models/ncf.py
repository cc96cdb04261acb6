"""Neural collaborative filtering, MLP variant (He et al. 2017), regressing explicit ratings with MSE."""

from __future__ import annotations

from typing import Any

import keras

from rec_pipeline.models.data import TrainOptions
from rec_pipeline.models.keras_base import PairwiseKerasRecommender, embed, id_inputs
from rec_pipeline.models.layers import IdDropout
from rec_pipeline.models.training import layer_dtype

# Per-example row L2 did not help the MLP models on bench/quality.py (NCF 0.695 at 0.05 vs 0.689 with the
# whole-table options.l2), so they keep the table penalty unless asked: None selects it.
DEFAULT_EMBEDDING_L2: float | None = None


def mlp_tower(x: Any, hidden_units: tuple[int, ...], options: TrainOptions, dtype: str, prefix: str) -> Any:
    """ReLU layers with dropout after each; shared by NCF and NeuMF's MLP branch."""
    regularizer = keras.regularizers.L2(options.l2) if options.l2 > 0 else None
    for depth, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer, dtype=dtype,
                               name=f"{prefix}_dense_{depth}")(x)
        if options.dropout > 0:
            x = keras.layers.Dropout(options.dropout, seed=options.seed + depth, dtype=dtype,
                                     name=f"{prefix}_dropout_{depth}")(x)
    return x


def rating_head(x: Any, global_mean: float, name: str = "rating") -> Any:
    """Linear float32 output whose bias starts at the training mean (kept float32 under mixed precision)."""
    return keras.layers.Dense(1, dtype="float32", name=name,
                              bias_initializer=keras.initializers.Constant(global_mean))(x)


def dropped_ids(user: Any, item: Any, options: TrainOptions) -> tuple[Any, Any]:
    """Id-dropout on both inputs, so embedding row 0 learns to stand for unseen users/items."""
    return (IdDropout(options.id_dropout, seed=options.seed, name="user_id_dropout")(user),
            IdDropout(options.id_dropout, seed=options.seed + 1, name="item_id_dropout")(item))


class NCFRecommender(PairwiseKerasRecommender):
    """Concatenated user/item embeddings through an MLP with dropout into one rating."""

    kind = "ncf"

    def __init__(self, hidden_units: tuple[int, ...] | list[int] = (64, 32, 16),
                 embedding_l2: float | None = DEFAULT_EMBEDDING_L2) -> None:
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
