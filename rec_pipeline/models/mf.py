"""Biased matrix factorization (Koren, Bell & Volinsky 2009): r = mu + b_u + b_i + p_u . q_i."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from rec_pipeline.models.anchors import anchor_outputs, anchor_rows, fitted_biases
from rec_pipeline.models.base import LatentFactors
from rec_pipeline.models.bias_terms import BiasTerms
from rec_pipeline.models.data import TrainingData, TrainOptions
from rec_pipeline.models.keras_base import PairwiseKerasRecommender, embed, id_inputs
from rec_pipeline.models.layers import ApplyMask, GlobalBias, KnownMask
from rec_pipeline.models.training import layer_dtype

# Per-example L2 on the looked-up rows (rating^2 units, the scale of Koren's lambda); tuned on generated data
# with a known noise floor (bench/quality.py). Biases need far less shrinkage than the factors.
DEFAULT_EMBEDDING_L2 = 0.05
DEFAULT_BIAS_L2 = 0.001


class MatrixFactorizationRecommender(PairwiseKerasRecommender):
    """Trained with Adam on MSE + per-example L2 on the rows each rating uses (``embedding_l2`` on p/q,
    ``bias_l2`` on the biases; ``None`` falls back to Keras' whole-table ``TrainOptions.l2``). Unknown
    users/items contribute nothing, so the fallback is exactly mu + the known biases (the classic baseline
    estimate) rather than a learned "unknown" vector.

    Anchored on the bias model (``anchor_biases``, Koren's baseline predictors): the closed-form ridge biases of
    the ``biases`` model are fitted first and held fixed, and the network learns deviations from them (trainable
    biases and factors, both shrunk towards zero). With strong enough shrinkage MF *is* the bias model, so a
    search over its L2 can always fall back to it; without the anchor, per-rating L2 shrinks every user's bias
    by the same factor whatever their number of ratings, which no setting of it turns into the bias model's
    shrinkage (tuned MF lost to the bias model on validation by 0.3-0.5% RMSE on the generated sample).

    Scoring bypasses Keras: with the factors as numpy arrays (``LatentFactors``), ``ranking_scores`` (unclipped) is
    one matrix product per batch of users.
    """

    kind = "mf"
    default_learning_rate = 5e-3

    def __init__(
        self,
        embedding_l2: float | None = DEFAULT_EMBEDDING_L2,
        bias_l2: float | None = DEFAULT_BIAS_L2,
        anchor_biases: bool = True,
        anchor_reg: float = 5.0,
    ) -> None:
        super().__init__()
        self.embedding_l2 = None if embedding_l2 is None else float(embedding_l2)
        self.bias_l2 = None if bias_l2 is None else float(bias_l2)
        self.anchor_biases = bool(anchor_biases)
        self.anchor_reg = float(anchor_reg)  # the bias model's user_reg and item_reg (its default)
        self._anchor: BiasTerms | None = None

    def get_config(self) -> dict[str, Any]:
        return {
            "embedding_l2": self.embedding_l2,
            "bias_l2": self.bias_l2,
            "anchor_biases": self.anchor_biases,
            "anchor_reg": self.anchor_reg,
        }

    def _prepare(self, data: TrainingData) -> None:
        """The closed-form biases the network starts from and keeps (``rec_pipeline.models.anchors``)."""
        self._anchor = fitted_biases(data, self.anchor_reg) if self.anchor_biases else None

    def _build_network(self, options: TrainOptions, n_users: int, n_items: int) -> keras.Model:
        dtype = layer_dtype(options)
        dim = options.embedding_dim
        user, item = id_inputs()
        user_known, item_known = KnownMask(name="user_known")(user), KnownMask(name="item_known")(item)
        p = ApplyMask()([embed(user, n_users, dim, options, "user_embedding", dtype, self.embedding_l2), user_known])
        q = ApplyMask()([embed(item, n_items, dim, options, "item_embedding", dtype, self.embedding_l2), item_known])
        b_u = ApplyMask()([embed(user, n_users, 1, options, "user_bias", dtype, self.bias_l2, zeros=True), user_known])
        b_i = ApplyMask()([embed(item, n_items, 1, options, "item_bias", dtype, self.bias_l2, zeros=True), item_known])
        interaction = keras.layers.Dot(axes=1, dtype=dtype)([p, q])
        terms = [interaction, b_u, b_i]
        fill: Callable[[], None] | None = None
        if self._anchor is not None:
            anchors, fill = anchor_outputs(user, item, n_users, n_items, self._anchor)
            terms += anchors
        summed = keras.layers.Add(dtype="float32")(terms)  # float32 output under mixed precision
        offset = self._global_mean if self._anchor is None else self._anchor.mean
        rating = GlobalBias(offset, name="global_bias", dtype="float32")(summed)
        network = keras.Model({"user": user, "item": item}, rating, name="mf")
        if fill is not None:
            fill()
        return network

    def _build_scorer(self) -> LatentFactors:
        """The factors as numpy arrays: scoring is one matrix product, no Keras call."""
        network = self._fitted_network()
        tables = {}
        for name in ("user_embedding", "item_embedding", "user_bias", "item_bias"):
            table = np.array(network.get_layer(name).get_weights()[0], dtype=np.float32)
            table[0] = 0.0  # the unknown row is masked out in the network, so it must be here too
            tables[name] = table
        if (anchors := anchor_rows(network)) is not None:  # the fixed closed-form biases
            tables["user_bias"] += anchors[0][:, None]
            tables["item_bias"] += anchors[1][:, None]
        return LatentFactors(
            tables["user_embedding"],
            tables["user_bias"][:, 0],
            tables["item_embedding"],
            tables["item_bias"][:, 0],
            offset=float(network.get_layer("global_bias").get_weights()[0]),
        )
