"""Fixed closed-form biases that a Keras rating model learns on top of (Koren's baseline predictors).

A model anchored here fits the ``biases`` model first (same training split and vocabularies, so the same rows,
and the same sweep chosen on validation), keeps those biases as two non-trainable tables, and learns deviations
and interactions shrunk towards zero. Strong shrinkage then gives the bias model exactly, so a model that contains
the bias model (MF; NeuMF, which contains MF) can always fall back to it when tuned, instead of losing to it:
per-rating L2 on learnt biases shrinks every user's bias by the same factor whatever their number of ratings,
which no setting turns into the bias model's ridge shrinkage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from rec_pipeline.models.bias_terms import BiasTerms
from rec_pipeline.models.data import TrainingData

ANCHOR_LAYERS = ("user_anchor", "item_anchor")


def fitted_biases(data: TrainingData, reg: float) -> BiasTerms:
    """The ``biases`` model's mean and biases on ``data`` (rows: the vocabularies every model builds from train)."""
    from rec_pipeline.models.biases import BiasesRecommender

    baseline = BiasesRecommender(user_reg=reg, item_reg=reg)
    baseline.fit(data)
    return baseline.bias_terms()


def anchor_outputs(user: Any, item: Any, n_users: int, n_items: int, terms: BiasTerms) -> tuple[list[Any], Callable]:
    """The looked-up fixed user and item biases for the network, and a function that fills the tables once the
    network is built (an initializer would copy the arrays into the saved config)."""
    outputs, tables = [], []
    for ids, rows, name, values in (
        (user, n_users, "user_anchor", terms.user_bias),
        (item, n_items, "item_anchor", terms.item_bias),
    ):
        table = keras.layers.Embedding(rows, 1, name=name, embeddings_initializer="zeros", trainable=False)
        outputs.append(table(ids))
        tables.append((table, np.asarray(values, dtype=np.float32).reshape(-1, 1)))

    def fill() -> None:
        for table, values in tables:
            table.set_weights([values])

    return outputs, fill


def anchor_rows(network: keras.Model) -> tuple[np.ndarray, np.ndarray] | None:
    """The fixed user and item biases of a trained network (row 0, the unknown id, holds zero); ``None`` when it
    was trained without them."""
    names = {layer.name for layer in network.layers}
    if not all(name in names for name in ANCHOR_LAYERS):
        return None
    user, item = (np.asarray(network.get_layer(name).get_weights()[0], np.float32)[:, 0] for name in ANCHOR_LAYERS)
    return user, item
