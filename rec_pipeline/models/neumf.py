"""NeuMF (He et al. 2017): a GMF branch (element-wise product) fused with an MLP branch, for explicit ratings."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from rec_pipeline.models.anchors import anchor_outputs, anchor_rows, fitted_biases
from rec_pipeline.models.base import LatentFactors
from rec_pipeline.models.bias_terms import BiasTerms
from rec_pipeline.models.data import TrainingData, TrainOptions
from rec_pipeline.models.keras_base import PairwiseKerasRecommender, embed, id_inputs
from rec_pipeline.models.mf import DEFAULT_BIAS_L2
from rec_pipeline.models.ncf import DEFAULT_EMBEDDING_L2, SplitMLP, dropped_ids, mlp_tower, rating_head, split_mlp
from rec_pipeline.models.training import layer_dtype


class NeuMFRecommender(PairwiseKerasRecommender):
    """Separate embeddings per branch (as in the paper: the branches want different geometry); the GMF vector
    and the last MLP layer are concatenated into the rating layer. Trained from scratch, no pre-training.

    Anchored on the bias model (``rec_pipeline.models.anchors``): the output adds the ``biases`` model's fixed
    closed-form biases and learnt deviations from them, so NeuMF contains MF (GMF with a learnt weighting is MF's
    dot product, and the MLP's part of the rating layer can shrink to zero); without them the network had no
    per-user or per-item bias at all and lost to MF on validation on every real dump.

    Ranking: the GMF branch factorizes (``(p_gmf * w_gmf) . q_gmf``, one matrix product); the MLP branch runs per
    pair from precomputed first-layer halves (``SplitMLP``), as in NCF.
    """

    kind = "neumf"

    def __init__(
        self,
        hidden_units: tuple[int, ...] | list[int] = (64, 32, 16),
        embedding_l2: float | None = DEFAULT_EMBEDDING_L2,
        bias_l2: float | None = DEFAULT_BIAS_L2,
        anchor_biases: bool = True,
        anchor_reg: float = 5.0,
    ) -> None:
        super().__init__()
        self.hidden_units = tuple(int(units) for units in hidden_units)
        # Per-example L2 on the looked-up user/item rows (see layers.BatchRowL2); None: whole-table options.l2.
        self.embedding_l2 = None if embedding_l2 is None else float(embedding_l2)
        self.bias_l2 = None if bias_l2 is None else float(bias_l2)  # on the learnt deviations from the anchors
        self.anchor_biases = bool(anchor_biases)
        self.anchor_reg = float(anchor_reg)  # the bias model's user_reg and item_reg (its default)
        self._anchor: BiasTerms | None = None

    def get_config(self) -> dict[str, Any]:
        return {
            "hidden_units": list(self.hidden_units),
            "embedding_l2": self.embedding_l2,
            "bias_l2": self.bias_l2,
            "anchor_biases": self.anchor_biases,
            "anchor_reg": self.anchor_reg,
        }

    def _prepare(self, data: TrainingData) -> None:
        self._anchor = fitted_biases(data, self.anchor_reg) if self.anchor_biases else None

    def _build_network(self, options: TrainOptions, n_users: int, n_items: int) -> keras.Model:
        dtype = layer_dtype(options)
        dim = options.embedding_dim
        user_in, item_in = id_inputs()
        user, item = dropped_ids(user_in, item_in, options)
        gmf = keras.layers.Multiply(dtype=dtype, name="gmf")(
            [
                embed(user, n_users, dim, options, "gmf_user_embedding", dtype, self.embedding_l2),
                embed(item, n_items, dim, options, "gmf_item_embedding", dtype, self.embedding_l2),
            ]
        )
        mlp_input = keras.layers.Concatenate(dtype=dtype)(
            [
                embed(user, n_users, dim, options, "mlp_user_embedding", dtype, self.embedding_l2),
                embed(item, n_items, dim, options, "mlp_item_embedding", dtype, self.embedding_l2),
            ]
        )
        fused = keras.layers.Concatenate(dtype=dtype, name="fused")(
            [gmf, mlp_tower(mlp_input, self.hidden_units, options, dtype, "mlp")]
        )
        rating = rating_head(fused, self._global_mean)
        if self._anchor is None:
            return keras.Model({"user": user_in, "item": item_in}, rating, name="neumf")
        # Deviations from the fixed biases follow the id dropout (row 0 learns the unknown id); the fixed biases
        # are looked up by the real ids (row 0, an unknown id, holds zero).
        b_u = embed(user, n_users, 1, options, "user_bias", dtype, self.bias_l2, zeros=True)
        b_i = embed(item, n_items, 1, options, "item_bias", dtype, self.bias_l2, zeros=True)
        anchors, fill = anchor_outputs(user_in, item_in, n_users, n_items, self._anchor)
        summed = keras.layers.Add(dtype="float32", name="rating_with_biases")([rating, b_u, b_i, *anchors])
        network = keras.Model({"user": user_in, "item": item_in}, summed, name="neumf")
        fill()
        return network

    def _build_scorer(self) -> SplitMLP | None:
        network = self._fitted_network()
        gmf_users = np.asarray(network.get_layer("gmf_user_embedding").get_weights()[0], np.float32)
        gmf_items = np.asarray(network.get_layer("gmf_item_embedding").get_weights()[0], np.float32)
        head = np.asarray(network.get_layer("rating").get_weights()[0], np.float32)
        dim = gmf_users.shape[1]
        # rating = [gmf, mlp] . w + b (+ biases): the GMF part is (p * w_gmf) . q, a dot product of per-user/per-item
        # vectors; the learnt and fixed biases ride along with it.
        user_bias, item_bias = np.zeros(len(gmf_users), np.float32), np.zeros(len(gmf_items), np.float32)
        if (anchors := anchor_rows(network)) is not None:
            user_bias = anchors[0] + np.asarray(network.get_layer("user_bias").get_weights()[0], np.float32)[:, 0]
            item_bias = anchors[1] + np.asarray(network.get_layer("item_bias").get_weights()[0], np.float32)[:, 0]
        gmf = LatentFactors(gmf_users * head[:dim, 0], user_bias, gmf_items, item_bias)
        return split_mlp(
            network, "mlp_user_embedding", "mlp_item_embedding", len(self.hidden_units), head_skip=dim, extra=gmf
        )
