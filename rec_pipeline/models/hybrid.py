"""Hybrid collaborative + content model: user/item embeddings, item text vectors and image embeddings.

Cold start: the item vocabulary covers every item with content, not only items rated in training. Items never
rated are fed to the network as the reserved unknown index 0, which zeroes their collaborative dot product and
item bias (``KnownMask``), leaving the content terms alone. During training a fraction ``item_dropout`` of rated
items is presented the same way, so the content path learns to predict a rating on its own; this is what makes
content-only scores for new items better than the global mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from rec_pipeline.models.base import LatentFactors
from rec_pipeline.models.data import TrainingData, TrainOptions
from rec_pipeline.models.keras_base import PairwiseKerasRecommender, embed, id_inputs
from rec_pipeline.models.layers import ApplyMask, GlobalBias, IdDropout, KnownMask, MaskedRows, StitchRows, TakeRows
from rec_pipeline.models.training import FeatureLookup, layer_dtype
from rec_pipeline.models.vocabulary import IdVocabulary

CONTENT_FILE = "content.npz"
# Per-example L2 on looked-up rows (layers.BatchRowL2), tuned with bench/quality.py like MF's.
DEFAULT_EMBEDDING_L2 = 0.05
DEFAULT_BIAS_L2 = 0.001
# Weight decay of the two content towers. One shared tower could not serve both: at 1e-3 it gave cold-item RMSE
# 0.72 but warm 0.679 (it memorizes warm items); at 0.05 warm 0.663 but cold 0.86, no better than MF's biases.
DEFAULT_CONTENT_L2 = 0.05
DEFAULT_COLD_CONTENT_L2 = 1e-3
# Items per forward pass when the content towers are run over the whole catalogue after fit and load.
_ITEM_BATCH = 1 << 13


def standardized(vectors: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance columns over the items that have a vector; absent rows stay zero.

    Text vectors (word2vec averages) and image embeddings (random-CNN projections) come on arbitrary, very
    different scales; without this one modality dominates the first Dense layer and Adam's early steps.
    """
    out = np.zeros_like(vectors, dtype=np.float32)
    if present.any():
        rows = vectors[present].astype(np.float64)
        mean, scale = rows.mean(axis=0), rows.std(axis=0)
        # Relative test: a column is constant only if it varies by float rounding around its mean; absolute
        # scale means nothing (the demo's random-CNN image embeddings are ~1e-10 yet separate styles cleanly).
        varies = scale > np.maximum(1e-6 * np.abs(mean), np.finfo(np.float32).tiny)
        out[present] = ((rows - mean) / np.where(varies, scale, 1.0)).astype(np.float32)
    return out


class HybridRecommender(PairwiseKerasRecommender):
    """Content-augmented biased MF: r = mu + b_u + (b_i + c_b(x_i)) + p_u . (q_i + C(x_i)).

    ``x_i`` is the item's text vector and image embedding (each standardized per column over the items that have
    one, then Dense(text_units) / Dense(image_units) and multiplied by its presence mask), merged through
    Dense(content_units); linear heads give the content bias ``c_b`` and the content factors ``C``. The free
    item terms ``q_i``/``b_i`` only model what content does not explain: they carry a per-example L2 penalty,
    so an item with few ratings stays close to its content estimate, and they are zero for never-rated items.
    This is the additive structure of SVDFeature / collective MF; it beats an MLP over concatenated branches
    here because the content-to-factor map is shared by every user and learnt from all ratings at once.
    """

    kind = "hybrid"
    default_learning_rate = 5e-3

    def __init__(
        self,
        text_units: int = 64,
        image_units: int = 64,
        content_units: int = 64,
        item_dropout: float = 0.15,
        embedding_l2: float | None = DEFAULT_EMBEDDING_L2,
        bias_l2: float | None = DEFAULT_BIAS_L2,
        content_l2: float = DEFAULT_CONTENT_L2,
        cold_content_l2: float = DEFAULT_COLD_CONTENT_L2,
    ) -> None:
        super().__init__()
        self.text_units = int(text_units)
        self.image_units = int(image_units)
        self.content_units = int(content_units)
        if not 0.0 <= item_dropout < 1.0:
            raise ValueError("item_dropout must lie in [0, 1)")
        self.item_dropout = float(item_dropout)
        self.embedding_l2 = None if embedding_l2 is None else float(embedding_l2)
        self.bias_l2 = None if bias_l2 is None else float(bias_l2)
        self.content_l2 = float(content_l2)
        self.cold_content_l2 = float(cold_content_l2)
        # Row-aligned with the item vocabulary, row 0 = unknown item (no content, not collaborative).
        self._tables: dict[str, np.ndarray] | None = None
        self._lookup: FeatureLookup | None = None

    def get_config(self) -> dict[str, Any]:
        return {
            "text_units": self.text_units,
            "image_units": self.image_units,
            "content_units": self.content_units,
            "item_dropout": self.item_dropout,
            "embedding_l2": self.embedding_l2,
            "bias_l2": self.bias_l2,
            "content_l2": self.content_l2,
            "cold_content_l2": self.cold_content_l2,
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

        self._set_tables(
            {
                "rated": rated,
                "text": with_unknown_row(standardized(aligned.text_vectors, aligned.text_mask)),
                "text_mask": with_unknown_row(aligned.text_mask).astype(np.float32)[:, None],
                "image": with_unknown_row(standardized(aligned.image_vectors, aligned.image_mask)),
                "image_mask": with_unknown_row(aligned.image_mask).astype(np.float32)[:, None],
            }
        )

    def _set_tables(self, tables: dict[str, np.ndarray]) -> None:
        self._tables = tables
        rows = np.arange(len(tables["rated"]), dtype=np.int32)
        # Per item index: the index the collaborative terms see (0 for a never-rated item) and its content.
        lookup_tables = {"item": np.where(tables["rated"], rows, 0).astype(np.int32)}
        lookup_tables.update({name: tables[name] for name in ("text", "text_mask", "image", "image_mask")})
        self._lookup = FeatureLookup("item", lookup_tables)

    def _input_lookup(self) -> FeatureLookup:
        if self._lookup is None:
            raise RuntimeError(f"{type(self).__name__} has no content tables: call fit() or load() first")
        return self._lookup

    # ----- network ---------------------------------------------------------------------------------------------
    def _build_network(self, options: TrainOptions, n_users: int, n_items: int) -> keras.Model:
        assert self._tables is not None
        dtype = layer_dtype(options)
        dim = options.embedding_dim
        user_in, item_in = id_inputs()
        text = keras.Input(shape=(self._tables["text"].shape[1],), name="text")
        text_mask = keras.Input(shape=(1,), name="text_mask")
        image = keras.Input(shape=(self._tables["image"].shape[1],), name="image")
        image_mask = keras.Input(shape=(1,), name="image_mask")

        user = IdDropout(options.id_dropout, seed=options.seed, name="user_id_dropout")(user_in)
        item = IdDropout(self.item_dropout, seed=options.seed + 1, name="item_id_dropout")(item_in)
        item_known = KnownMask(name="item_known")(item)
        p = embed(user, n_users, dim, options, "user_embedding", dtype, self.embedding_l2)
        b_u = embed(user, n_users, 1, options, "user_bias", dtype, self.bias_l2, zeros=True)
        # Random (not zero) init: with q = 0 the p_u gradients vanish and the factors take many epochs to start.
        q = ApplyMask()([embed(item, n_items, dim, options, "item_embedding", dtype, self.embedding_l2), item_known])
        b_i = ApplyMask()([embed(item, n_items, 1, options, "item_bias", dtype, self.bias_l2, zeros=True), item_known])

        # Each tower runs only on its own rows (rated items: warm; the rest: cold), then the rows are put back.
        content_inputs = (text, text_mask, image, image_mask)
        warm_rows = MaskedRows(name="warm_rows")(item_known)
        cold_rows = MaskedRows(known=False, name="cold_rows")(item_known)

        def rows_of(rows: Any, prefix: str) -> list[Any]:
            names = ("text", "text_mask", "image", "image_mask")
            return [
                TakeRows(name=f"{prefix}{name}_rows")([x, rows]) for name, x in zip(names, content_inputs, strict=True)
            ]

        warm_factors, warm_bias = self._content_tower(options, "", self.content_l2, *rows_of(warm_rows, "warm_"))
        cold_factors, cold_bias = self._content_tower(
            options, "cold_", self.cold_content_l2, *rows_of(cold_rows, "cold_")
        )
        content_factors = StitchRows(name="selected_content_factors")(
            [warm_factors, warm_rows, cold_factors, cold_rows]
        )
        content_bias = StitchRows(name="selected_content_bias")([warm_bias, warm_rows, cold_bias, cold_rows])

        item_factors = keras.layers.Add(dtype=dtype, name="item_factors")([q, content_factors])
        interaction = keras.layers.Dot(axes=1, dtype=dtype, name="interaction")([p, item_factors])
        summed = keras.layers.Add(dtype="float32")([interaction, b_u, b_i, content_bias])
        rating = GlobalBias(self._global_mean, name="global_bias", dtype="float32")(summed)
        inputs = {
            "user": user_in,
            "item": item_in,
            "text": text,
            "text_mask": text_mask,
            "image": image,
            "image_mask": image_mask,
        }
        return keras.Model(inputs, rating, name="hybrid")

    def _content_tower(
        self, options: TrainOptions, prefix: str, l2: float, text: Any, text_mask: Any, image: Any, image_mask: Any
    ) -> tuple[Any, Any]:
        """Content factors C(x) and bias c_b(x) from one tower of masked text/image branches.

        The hybrid builds two: one used for rated items (strong weight decay, so it cannot memorize each warm
        item's vector as an unpenalized per-item factor) and one for unrated items, learnt only from the
        item-dropout examples (light decay: it must carry the whole item effect on its own).
        """
        dtype = layer_dtype(options)
        strength = max(options.l2, l2)
        regularizer = keras.regularizers.L2(strength) if strength > 0 else None

        def dense(units: int, name: str, activation: str | None = "relu") -> keras.layers.Dense:
            return keras.layers.Dense(
                units, activation=activation, kernel_regularizer=regularizer, dtype=dtype, name=prefix + name
            )

        text_branch = ApplyMask(name=f"{prefix}text_branch")([dense(self.text_units, "text_dense")(text), text_mask])
        image_branch = ApplyMask(name=f"{prefix}image_branch")(
            [dense(self.image_units, "image_dense")(image), image_mask]
        )
        content = dense(self.content_units, "content")(
            keras.layers.Concatenate(dtype=dtype)([text_branch, image_branch, text_mask, image_mask])
        )
        if options.dropout > 0:
            content = keras.layers.Dropout(
                options.dropout, seed=options.seed + (3 if prefix else 2), dtype=dtype, name=f"{prefix}content_dropout"
            )(content)
        factors = dense(options.embedding_dim, "content_factors", activation=None)(content)
        return factors, dense(1, "content_bias", activation=None)(content)

    # ----- scoring ---------------------------------------------------------------------------------------------
    def _build_scorer(self) -> LatentFactors | None:
        """User vectors/biases from the tables; item factors ``q_i + C(x_i)`` and bias ``b_i + c_b(x_i)`` from one
        pass of the content towers over every item (row 0: the unknown item), so ranking is a matrix product.

        ``None`` (score per pair through the network) for a subclass whose network is not this factorization.
        """
        network = self._fitted_network()
        names = {layer.name for layer in network.layers}
        if not {"item_factors", "selected_content_bias", "item_bias", "user_embedding", "user_bias"} <= names:
            return None
        assert self._tables is not None
        n_rows = self._vocab("items").size_with_unknown
        collaborative = np.where(self._tables["rated"], np.arange(n_rows), 0).astype(np.int32)
        factors, content_bias = self._per_item_row(
            [network.get_layer("item_factors").output, network.get_layer("selected_content_bias").output],
            exclude=("user",),
        )
        content_bias = content_bias.reshape(-1)
        item_bias = np.asarray(network.get_layer("item_bias").get_weights()[0], np.float32)[:, 0]
        item_bias = np.where(collaborative > 0, item_bias[collaborative], 0.0) + content_bias
        return LatentFactors(
            np.asarray(network.get_layer("user_embedding").get_weights()[0], np.float32),
            np.asarray(network.get_layer("user_bias").get_weights()[0], np.float32)[:, 0],
            factors,
            item_bias,
            offset=float(network.get_layer("global_bias").get_weights()[0]),
        )

    def _per_item_row(self, outputs: list[Any], exclude: tuple[str, ...]) -> list[np.ndarray]:
        """``outputs`` (tensors of the fitted network) for every item row, row 0 the unknown item, computed from the
        network's inputs but ``exclude``, a batch of rows at a time: the item side a ranking scorer precomputes."""
        network = self._fitted_network()
        side_inputs = {tensor.name: tensor for tensor in network.inputs if tensor.name not in exclude}
        side = keras.Model(side_inputs, outputs)
        n_rows = self._vocab("items").size_with_unknown
        parts: list[list[np.ndarray]] = [[] for _ in outputs]
        for start in range(0, n_rows, _ITEM_BATCH):
            rows = np.arange(start, min(start + _ITEM_BATCH, n_rows), dtype=np.int32)
            looked_up = self._input_lookup()({"user": np.zeros_like(rows), "item": rows})
            result = side.predict_on_batch({name: looked_up[name] for name in side_inputs})
            for part, value in zip(parts, result if len(outputs) > 1 else [result], strict=True):
                part.append(np.asarray(value, np.float32))
        return [np.concatenate(part) for part in parts]

    # ----- persistence -------------------------------------------------------------------------------------------
    def _save_extra(self, directory: Path) -> None:
        assert self._tables is not None
        np.savez(directory / CONTENT_FILE, **self._tables)  # type: ignore[arg-type]  # numpy stubs: **arrays

    def _load_extra(self, directory: Path) -> None:
        with np.load(directory / CONTENT_FILE) as arrays:
            self._set_tables({name: arrays[name] for name in arrays.files})
