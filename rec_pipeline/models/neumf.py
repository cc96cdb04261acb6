"""NeuMF (He et al. 2017): a GMF branch (element-wise product) fused with an MLP branch, for explicit ratings."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from rec_pipeline.models.base import LatentFactors
from rec_pipeline.models.data import TrainOptions
from rec_pipeline.models.keras_base import PairwiseKerasRecommender, embed, id_inputs
from rec_pipeline.models.ncf import DEFAULT_EMBEDDING_L2, SplitMLP, dropped_ids, mlp_tower, rating_head, split_mlp
from rec_pipeline.models.training import layer_dtype


class NeuMFRecommender(PairwiseKerasRecommender):
    """Separate embeddings per branch (as in the paper: the branches want different geometry); the GMF vector
    and the last MLP layer are concatenated into the rating layer. Trained from scratch, no pre-training.

    Ranking: the GMF branch factorizes (``(p_gmf * w_gmf) . q_gmf``, one matrix product); the MLP branch runs per
    pair from precomputed first-layer halves (``SplitMLP``), as in NCF.
    """

    kind = "neumf"

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
        return keras.Model({"user": user_in, "item": item_in}, rating_head(fused, self._global_mean), name="neumf")

    def _build_scorer(self) -> SplitMLP | None:
        network = self._fitted_network()
        gmf_users = np.asarray(network.get_layer("gmf_user_embedding").get_weights()[0], np.float32)
        gmf_items = np.asarray(network.get_layer("gmf_item_embedding").get_weights()[0], np.float32)
        head = np.asarray(network.get_layer("rating").get_weights()[0], np.float32)
        dim = gmf_users.shape[1]
        # rating = [gmf, mlp] . w + b: the GMF part is (p * w_gmf) . q, a dot product of per-user/per-item vectors.
        gmf = LatentFactors(gmf_users * head[:dim, 0], np.zeros(len(gmf_users)), gmf_items, np.zeros(len(gmf_items)))
        return split_mlp(
            network, "mlp_user_embedding", "mlp_item_embedding", len(self.hidden_units), head_skip=dim, extra=gmf
        )
