"""Seed project 000's hybrid network, kept as a model of its own so its published figures can be reproduced.

The seed (2018 AMAZON_FASHION, random hold-out; RMSE 0.7526, MAE 0.5157, Pearson 0.820 in ~10 epochs) wired four
branches side by side and let a small MLP merge them::

    MF       user(32), item(32) -> normalized dot (cosine)                                   -> 1
    NN       user(32) ++ item(32) -> Dense 16 relu -> Dropout 0.1                          -> 16
    content  title(64) -> Dense 64 relu ++ image(512) -> Dense 256 relu -> Dense 128 relu  -> 128
    merge    1 ++ 16 ++ 128 -> Dense 64 linear -> Dense 1

trained on the MAE with Adam at lr 0.01 and Keras 2's ``decay=1e-4`` (lr / (1 + decay * iterations), here the
equivalent ``InverseTimeDecay`` schedule). The project's own ``hybrid`` differs on purpose (content feeds the item
factors and bias, MSE, per-row L2); this one is the seed's shape, for comparison under the seed's protocol.

Differences from the seed, all forced by the pipeline's inputs or its interface:

- Content comes from the pipeline's vectors, looked up per item inside the model exactly as the ``hybrid`` does
  (an item-indexed constant table gathered per batch, standardized per column): the title tower reads the
  item's text vector (word2vec ``vector_size``, 64 by default; the demo uses 32), the image tower the image
  embedding (``projection_dim``, 64 by default, where the seed had a 512-d CNN vector). The Dense widths are the
  seed's whatever the input width is.
- A missing title or image contributes zeros (its tower's output times the presence mask), where the seed had a
  vector for every item.
- Unknown users and items (index 0, also used for items known only by their content) contribute zero embeddings
  to the MF and NN branches; ``TrainOptions.id_dropout`` trains that case as in the other pairwise models.
- The last Dense starts its bias at the training mean (the seed's started at zero); this only shortens the
  first epoch. ``TrainOptions.embedding_dim``, ``dropout`` and ``l2`` do not apply: the sizes and the 0.1
  dropout are this model's constructor arguments and the seed had no weight penalty.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from rec_pipeline.models.base import LatentFactors
from rec_pipeline.models.data import TrainOptions
from rec_pipeline.models.hybrid import HybridRecommender
from rec_pipeline.models.keras_base import embedding, id_inputs
from rec_pipeline.models.layers import ApplyMask, Cosine, KnownMask
from rec_pipeline.models.ncf import SplitMLP, dropped_ids, rating_head
from rec_pipeline.models.training import layer_dtype

SEED_LEARNING_RATE = 0.01
SEED_DECAY = 1e-4
SEED_LOSS = "mae"


def seed_learning_rate(learning_rate: float, decay: float) -> keras.optimizers.schedules.LearningRateSchedule:
    """Keras 2's ``Adam(lr, decay=d)``: lr / (1 + d * iterations), with iterations counted in optimizer steps.

    Keras 3 dropped the ``decay`` argument; ``InverseTimeDecay`` with ``decay_steps=1`` and no staircase is the
    same formula, so the seed's step sizes are reproduced exactly.
    """
    return keras.optimizers.schedules.InverseTimeDecay(learning_rate, decay_steps=1, decay_rate=decay)


class HybridSeed000Recommender(HybridRecommender):
    """The seed's four-branch network (module docstring) on the ``hybrid``'s content plumbing.

    It reuses the hybrid's item vocabulary (every item with content, rated or not), its standardized item-indexed
    content tables gathered per batch, and their save/load; ``text_units``, ``image_units`` and
    ``content_units`` keep the hybrid's meaning (the title, image and merged content Dense widths). The hybrid's
    L2 strengths and item dropout do not apply.
    """

    kind = "hybrid_seed000"
    default_learning_rate = SEED_LEARNING_RATE

    def __init__(
        self,
        embedding_dim: int = 32,
        nn_units: int = 16,
        nn_dropout: float = 0.1,
        text_units: int = 64,
        image_units: int = 256,
        content_units: int = 128,
        merge_units: int = 64,
        decay: float = SEED_DECAY,
    ) -> None:
        super().__init__(text_units=text_units, image_units=image_units, content_units=content_units, item_dropout=0.0)
        if not 0.0 <= nn_dropout < 1.0:
            raise ValueError("nn_dropout must lie in [0, 1)")
        if decay < 0:
            raise ValueError("decay must be >= 0")
        self.embedding_dim = int(embedding_dim)
        self.nn_units = int(nn_units)
        self.nn_dropout = float(nn_dropout)
        self.merge_units = int(merge_units)
        self.decay = float(decay)

    def get_config(self) -> dict[str, Any]:
        return {
            "embedding_dim": self.embedding_dim,
            "nn_units": self.nn_units,
            "nn_dropout": self.nn_dropout,
            "text_units": self.text_units,
            "image_units": self.image_units,
            "content_units": self.content_units,
            "merge_units": self.merge_units,
            "decay": self.decay,
        }

    # ----- training ---------------------------------------------------------------------------------------------
    loss = SEED_LOSS

    def _learning_rate(self, options: TrainOptions) -> tuple[TrainOptions, Any]:
        """The seed's decaying rate: the schedule becomes the default, an explicit rate in ``options`` its start."""
        schedule = seed_learning_rate(options.learning_rate_or(self.default_learning_rate), self.decay)
        return dataclasses.replace(options, learning_rate=None), schedule

    # ----- network ----------------------------------------------------------------------------------------------
    def _build_network(self, options: TrainOptions, n_users: int, n_items: int) -> keras.Model:
        assert self._tables is not None
        dtype = layer_dtype(options)
        dim = self.embedding_dim
        no_l2 = dataclasses.replace(options, l2=0.0)  # the seed put no penalty on its embeddings
        user_in, item_in = id_inputs()
        text = keras.Input(shape=(self._tables["text"].shape[1],), name="text")
        text_mask = keras.Input(shape=(1,), name="text_mask")
        image = keras.Input(shape=(self._tables["image"].shape[1],), name="image")
        image_mask = keras.Input(shape=(1,), name="image_mask")

        user, item = dropped_ids(user_in, item_in, options)
        user_known, item_known = KnownMask(name="user_known")(user), KnownMask(name="item_known")(item)

        def looked_up(ids: Any, known: Any, rows: int, name: str) -> Any:
            return ApplyMask(name=f"{name}_known")([embedding(rows, dim, no_l2, name, dtype)(ids), known])

        # The normalized dot product (the seed's Dot(normalize=True)), safe at the zero vectors of masked ids.
        mf = Cosine(dtype=dtype, name="mf_cosine")(
            [
                looked_up(user, user_known, n_users, "mf_user_embedding"),
                looked_up(item, item_known, n_items, "mf_item_embedding"),
            ]
        )

        nn = keras.layers.Concatenate(dtype=dtype, name="nn_concat")(
            [
                looked_up(user, user_known, n_users, "nn_user_embedding"),
                looked_up(item, item_known, n_items, "nn_item_embedding"),
            ]
        )
        nn = keras.layers.Dense(self.nn_units, activation="relu", dtype=dtype, name="nn_dense")(nn)
        nn = keras.layers.Dropout(self.nn_dropout, seed=options.seed + 2, dtype=dtype, name="nn_dropout")(nn)

        title = ApplyMask(name="title_branch")(
            [keras.layers.Dense(self.text_units, activation="relu", dtype=dtype, name="title_dense")(text), text_mask]
        )
        picture = ApplyMask(name="image_branch")(
            [
                keras.layers.Dense(self.image_units, activation="relu", dtype=dtype, name="image_dense")(image),
                image_mask,
            ]
        )
        content = keras.layers.Concatenate(dtype=dtype, name="content_concat")([title, picture])
        content = keras.layers.Dense(self.content_units, activation="relu", dtype=dtype, name="content_dense")(content)

        merged = keras.layers.Concatenate(dtype=dtype, name="merge_concat")([mf, nn, content])
        merged = keras.layers.Dense(self.merge_units, activation=None, dtype=dtype, name="merge_dense")(merged)
        rating = rating_head(merged, self._global_mean)
        inputs = {
            "user": user_in,
            "item": item_in,
            "text": text,
            "text_mask": text_mask,
            "image": image,
            "image_mask": image_mask,
        }
        return keras.Model(inputs, rating, name="hybrid_seed000")

    # ----- scoring ---------------------------------------------------------------------------------------------
    def _build_scorer(self) -> SplitMLP | None:  # type: ignore[override]  # the hybrid's is a LatentFactors
        """The seed's network split into what depends on the user, on the item, and on the pair.

        ``merge_dense`` is linear and so is the rating head, so the rating is one linear function of the three
        branches: ``w_mf cos(p_u, q_i) + w_nn . relu(W_u p'_u + W_i q'_i + b) + w_c . content(x_i) + b``. The
        cosine factorizes over unit vectors, the content term is a per-item constant (its towers run once per
        item, here), and only the 16-unit NN branch needs the pair: a ``SplitMLP`` with the rest as its ``extra``
        ``LatentFactors``. Ranking then costs ~100 multiply-adds per pair where the network as written costs
        ~60k (the image tower on every row). ``None`` (the forward pass per pair) if the network differs.
        """
        network = self._fitted_network()
        names = {layer.name for layer in network.layers}
        needed = {"mf_user_embedding", "mf_item_embedding", "nn_user_embedding", "nn_item_embedding", "nn_dense"}
        if not needed | {"content_dense", "merge_dense", "rating"} <= names:
            return None
        if network.get_layer("merge_dense").get_config()["activation"] != "linear":
            return None
        assert self._tables is not None

        def weights(name: str) -> list[np.ndarray]:
            return [np.asarray(array, dtype=np.float32) for array in network.get_layer(name).get_weights()]

        n_rows = self._vocab("items").size_with_unknown
        # What the network's "item" input receives per item row (the lookup's collaborative index: 0, "unknown",
        # for an item known only by its content), and which rows the known-masks keep.
        collaborative = np.where(self._tables["rated"], np.arange(n_rows), 0)
        item_known = (collaborative > 0).astype(np.float32)[:, None]

        def users_of(name: str) -> np.ndarray:
            table = weights(name)[0]
            table[0] = 0.0  # KnownMask: index 0 is the unknown user, whose embedding is masked to zero
            return table

        def items_of(name: str) -> np.ndarray:
            return weights(name)[0][collaborative] * item_known

        def unit(vectors: np.ndarray) -> np.ndarray:  # Cosine's normalization, zero vectors kept at zero
            floor = np.float32(keras.backend.epsilon() ** 2)
            return vectors / np.sqrt(np.maximum((vectors**2).sum(axis=1, keepdims=True), floor))

        merge_kernel, merge_bias = weights("merge_dense")
        head_kernel, head_bias = weights("rating")
        w = merge_kernel @ head_kernel  # [1 + nn_units + content_units, 1]: the linear merge and head in one
        offset = float((merge_bias @ head_kernel + head_bias)[0])
        w_mf, w_nn, w_content = w[0, 0], w[1 : 1 + self.nn_units], w[1 + self.nn_units :]

        (content,) = self._per_item_row([network.get_layer("content_dense").output], exclude=("user", "item"))
        nn_kernel, nn_bias = weights("nn_dense")
        dim = self.embedding_dim
        user_first = users_of("nn_user_embedding") @ nn_kernel[:dim]
        item_first = items_of("nn_item_embedding") @ nn_kernel[dim:] + nn_bias
        n_users = len(user_first)
        extra = LatentFactors(
            unit(users_of("mf_user_embedding")) * np.float32(w_mf),
            np.zeros(n_users, np.float32),
            unit(items_of("mf_item_embedding")),
            (content @ w_content)[:, 0],
            offset=offset,
        )
        return SplitMLP(user_first, item_first, "relu", [(w_nn, np.zeros(1, np.float32), "linear")], extra)
