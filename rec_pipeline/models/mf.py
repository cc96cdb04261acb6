"""Biased matrix factorization (Koren, Bell & Volinsky 2009): r = mu + b_u + b_i + p_u . q_i."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from rec_pipeline.models.base import clip_ratings
from rec_pipeline.models.data import TrainOptions
from rec_pipeline.models.keras_base import PairwiseKerasRecommender, embedding, id_inputs
from rec_pipeline.models.layers import ApplyMask, GlobalBias, KnownMask
from rec_pipeline.models.training import layer_dtype


class MatrixFactorizationRecommender(PairwiseKerasRecommender):
    """Trained with Adam on MSE + L2; unknown users/items contribute nothing, so the fallback is exactly
    mu + the known biases (the classic baseline estimate) rather than a learned "unknown" vector.

    Scoring bypasses Keras: with the factors as numpy arrays, ``score_users`` is one matrix product.
    """

    kind = "mf"
    default_learning_rate = 5e-3

    def __init__(self) -> None:
        super().__init__()
        self._factors: dict[str, np.ndarray] | None = None
        self._mean_weight: float = float("nan")

    def _build_network(self, options: TrainOptions, n_users: int, n_items: int) -> keras.Model:
        dtype = layer_dtype(options)
        user, item = id_inputs()
        user_known, item_known = KnownMask(name="user_known")(user), KnownMask(name="item_known")(item)
        p = ApplyMask()([embedding(n_users, options.embedding_dim, options, "user_embedding", dtype)(user), user_known])
        q = ApplyMask()([embedding(n_items, options.embedding_dim, options, "item_embedding", dtype)(item), item_known])
        b_u = ApplyMask()([embedding(n_users, 1, options, "user_bias", dtype, zeros=True)(user), user_known])
        b_i = ApplyMask()([embedding(n_items, 1, options, "item_bias", dtype, zeros=True)(item), item_known])
        interaction = keras.layers.Dot(axes=1, dtype=dtype)([p, q])
        summed = keras.layers.Add(dtype="float32")([interaction, b_u, b_i])  # float32 output under mixed precision
        rating = GlobalBias(self._global_mean, name="global_bias", dtype="float32")(summed)
        return keras.Model({"user": user, "item": item}, rating, name="mf")

    def _after_weights_ready(self) -> None:
        network = self._fitted_network()
        factors = {}
        for name in ("user_embedding", "item_embedding", "user_bias", "item_bias"):
            table = np.array(network.get_layer(name).get_weights()[0], dtype=np.float32)
            table[0] = 0.0  # the unknown row is masked out in the network, so it must be here too
            factors[name] = table
        factors["user_bias"] = factors["user_bias"][:, 0]
        factors["item_bias"] = factors["item_bias"][:, 0]
        self._factors = factors
        self._mean_weight = float(network.get_layer("global_bias").get_weights()[0])

    def _score_pairs(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        f = self._factors
        assert f is not None
        dots = np.einsum("ij,ij->i", f["user_embedding"][user_index], f["item_embedding"][item_index])
        return self._mean_weight + f["user_bias"][user_index] + f["item_bias"][item_index] + dots

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        self._fitted_network()
        f = self._factors
        assert f is not None
        user_index = self._vocab("users").lookup(user_ids)
        scores = f["user_embedding"][user_index] @ f["item_embedding"][1:].T
        scores += self._mean_weight + f["user_bias"][user_index][:, None] + f["item_bias"][None, 1:]
        return clip_ratings(scores)
