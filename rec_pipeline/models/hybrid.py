"""Hybrid collaborative + content model: user/item embeddings, item text vectors and image embeddings.

Cold start: the item vocabulary covers every item with content, not only items rated in training. Items never
rated are fed to the network as the reserved unknown index 0, which zeroes their collaborative dot product and
item bias (``KnownMask``) and gives the neural branch the shared "unknown item" embedding. During training a
fraction ``item_dropout`` of rated items is presented the same way, so the content path learns to predict a
rating on its own; this is what makes content-only scores for new items better than the global mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rec_pipeline.models.data import TrainingData, TrainOptions
from rec_pipeline.models.keras_base import PairwiseKerasRecommender, embedding, id_inputs
from rec_pipeline.models.layers import ApplyMask, GlobalBias, IdDropout, KnownMask
from rec_pipeline.models.training import layer_dtype
from rec_pipeline.models.vocabulary import IdVocabulary

CONTENT_FILE = "content.npz"


class HybridRecommender(PairwiseKerasRecommender):
    """Branches: normalized dot (collaborative), Dense(neural_units) over concatenated embeddings (neural),
    Dense(text_units) over text and Dense(image_units) over image (each multiplied by its presence mask),
    merged through Dense(content_units); everything merged through Dense(merge_units) into the rating, plus a
    global mean and user/item biases."""

    kind = "hybrid"

    def __init__(
        self,
        neural_units: int = 16,
        text_units: int = 64,
        image_units: int = 256,
        content_units: int = 128,
        merge_units: int = 64,
        item_dropout: float = 0.15,
    ) -> None:
        super().__init__()
        self.neural_units = int(neural_units)
        self.text_units = int(text_units)
        self.image_units = int(image_units)
        self.content_units = int(content_units)
        self.merge_units = int(merge_units)
        if not 0.0 <= item_dropout < 1.0:
            raise ValueError("item_dropout must lie in [0, 1)")
        self.item_dropout = float(item_dropout)
        # Row-aligned with the item vocabulary, row 0 = unknown item (no content, not collaborative).
        self._tables: dict[str, np.ndarray] | None = None
        self._tf_tables: dict[str, tf.Tensor] | None = None

    def get_config(self) -> dict[str, Any]:
        return {
            "neural_units": self.neural_units, "text_units": self.text_units, "image_units": self.image_units,
            "content_units": self.content_units, "merge_units": self.merge_units,
            "item_dropout": self.item_dropout,
        }

    # ----- data ------------------------------------------------------------------------------------------------
    def _item_vocabulary(self, data: TrainingData) -> IdVocabulary:
        if data.content is None:
            raise ValueError("the hybrid model needs TrainingData.content (item text and image vectors)")
        return IdVocabulary([*data.train["item_id"].unique().to_list(), *data.content.item_ids])

    def _prepare(self, data: TrainingData) -> None:
        assert data.content is not None
        items = self._vocab("items")
        aligned = data.content.aligned_to(items.ids)
        rated = np.zeros(items.size_with_unknown, dtype=bool)
        rated[items.lookup(data.train["item_id"].unique())] = True
        rated[0] = False

        def with_unknown_row(array: np.ndarray) -> np.ndarray:
            return np.concatenate([np.zeros((1, *array.shape[1:]), array.dtype), array])

        self._set_tables({
            "rated": rated,
            "text": with_unknown_row(aligned.text_vectors),
            "text_mask": with_unknown_row(aligned.text_mask).astype(np.float32)[:, None],
            "image": with_unknown_row(aligned.image_vectors),
            "image_mask": with_unknown_row(aligned.image_mask).astype(np.float32)[:, None],
        })

    def _set_tables(self, tables: dict[str, np.ndarray]) -> None:
        self._tables = tables
        self._tf_tables = {name: tf.constant(array) for name, array in tables.items()}

    def _network_inputs(self, features: dict[str, Any]) -> dict[str, Any]:
        assert self._tf_tables is not None
        tables = self._tf_tables
        item = tf.convert_to_tensor(features["item"], dtype=tf.int32)
        collaborative_item = tf.where(tf.gather(tables["rated"], item), item, tf.zeros_like(item))
        return {
            "user": features["user"],
            "item": collaborative_item,
            **{name: tf.gather(tables[name], item) for name in ("text", "text_mask", "image", "image_mask")},
        }

    # ----- network ---------------------------------------------------------------------------------------------
    def _build_network(self, options: TrainOptions, n_users: int, n_items: int) -> keras.Model:
        assert self._tables is not None
        dtype = layer_dtype(options)
        regularizer = keras.regularizers.L2(options.l2) if options.l2 > 0 else None

        def dense(units: int, name: str) -> keras.layers.Dense:
            return keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer, dtype=dtype,
                                      name=name)

        def dropout(x: Any, name: str, offset: int) -> Any:
            if options.dropout <= 0:
                return x
            return keras.layers.Dropout(options.dropout, seed=options.seed + offset, dtype=dtype, name=name)(x)

        user_in, item_in = id_inputs()
        text = keras.Input(shape=(self._tables["text"].shape[1],), name="text")
        text_mask = keras.Input(shape=(1,), name="text_mask")
        image = keras.Input(shape=(self._tables["image"].shape[1],), name="image")
        image_mask = keras.Input(shape=(1,), name="image_mask")

        user = IdDropout(options.id_dropout, seed=options.seed, name="user_id_dropout")(user_in)
        item = IdDropout(self.item_dropout, seed=options.seed + 1, name="item_id_dropout")(item_in)
        item_known = KnownMask(name="item_known")(item)
        p = embedding(n_users, options.embedding_dim, options, "user_embedding", dtype)(user)
        q = embedding(n_items, options.embedding_dim, options, "item_embedding", dtype)(item)

        collaborative = ApplyMask(name="collaborative")(
            [keras.layers.Dot(axes=1, normalize=True, dtype=dtype)([p, q]), item_known])
        neural = dropout(dense(self.neural_units, "neural")(keras.layers.Concatenate(dtype=dtype)([p, q])),
                         "neural_dropout", 1)
        text_branch = ApplyMask(name="text_branch")([dense(self.text_units, "text_dense")(text), text_mask])
        image_branch = ApplyMask(name="image_branch")([dense(self.image_units, "image_dense")(image), image_mask])
        content = dense(self.content_units, "content")(
            keras.layers.Concatenate(dtype=dtype)([text_branch, image_branch, text_mask, image_mask]))
        content = dropout(content, "content_dropout", 2)
        merged = dense(self.merge_units, "merge")(
            keras.layers.Concatenate(dtype=dtype)([collaborative, neural, content]))
        merged = dropout(merged, "merge_dropout", 3)
        interaction = keras.layers.Dense(1, dtype="float32", name="interaction")(merged)

        user_bias = embedding(n_users, 1, options, "user_bias", dtype, zeros=True)(user)
        item_bias = ApplyMask()([embedding(n_items, 1, options, "item_bias", dtype, zeros=True)(item), item_known])
        summed = keras.layers.Add(dtype="float32")([interaction, user_bias, item_bias])
        rating = GlobalBias(self._global_mean, name="global_bias", dtype="float32")(summed)
        inputs = {"user": user_in, "item": item_in, "text": text, "text_mask": text_mask, "image": image,
                  "image_mask": image_mask}
        return keras.Model(inputs, rating, name="hybrid")

    # ----- persistence -------------------------------------------------------------------------------------------
    def _save_extra(self, directory: Path) -> None:
        assert self._tables is not None
        np.savez(directory / CONTENT_FILE, **self._tables)

    def _load_extra(self, directory: Path) -> None:
        with np.load(directory / CONTENT_FILE) as arrays:
            self._set_tables({name: arrays[name] for name in arrays.files})
