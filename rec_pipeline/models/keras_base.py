"""Shared machinery of the Keras models that map one (user, item) pair to one rating (MF, NCF, NeuMF, hybrid)."""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import polars as pl

from rec_pipeline.models.base import PairScorer, Recommender, clip_ratings
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.layers import BatchRowL2  # importing layers registers them before any load
from rec_pipeline.models.training import DatasetPair, FeatureLookup, fit_network, pair_dataset, run_network
from rec_pipeline.models.vocabulary import IdVocabulary

NETWORK_FILE = "network.keras"


class PairwiseKerasRecommender(Recommender):
    """Fits a Keras network with inputs ``user`` and ``item`` (int32 indices, 0 = unknown) and one rating out.

    Subclasses supply ``_build_network``; the hybrid also overrides the item vocabulary and ``_input_lookup``
    to attach content features per batch. Scoring goes through ``_build_scorer`` when a subclass provides one
    (user and item sides computed once, e.g. ``LatentFactors``); without one, every (user, item) pair runs the
    whole network, which is how the hybrid once took 33 minutes to rank 20k items for 100k users.
    """

    default_learning_rate: ClassVar[float] = 1e-3
    loss: ClassVar[Any] = "mse"  # what the network is compiled with; a model reproducing a paper may train on another

    def __init__(self) -> None:
        super().__init__()
        self._network: keras.Model | None = None
        self._global_mean: float = float("nan")
        self._scorer: PairScorer | None = None

    @abc.abstractmethod
    def _build_network(self, options: TrainOptions, n_users: int, n_items: int) -> keras.Model:
        """The network; ``n_users``/``n_items`` already count the reserved unknown row 0."""

    # ----- hooks -----------------------------------------------------------------------------------------------
    def _item_vocabulary(self, data: TrainingData) -> IdVocabulary:
        return IdVocabulary.from_column(data.train["item_id"])

    def _prepare(self, data: TrainingData) -> None:
        """Called after the vocabularies exist and before training (the hybrid aligns content here)."""

    def _input_lookup(self) -> FeatureLookup | None:
        """Table gathers that turn index features into network inputs, per batch: run inside the input pipeline
        (tf.data on TensorFlow) and at prediction. ``None``: the indices are the inputs."""
        return None

    def _after_weights_ready(self) -> None:
        """Called after fit and load, before ``_build_scorer``."""

    def _build_scorer(self) -> PairScorer | None:
        """Per-user and per-item arrays to score from without the network (called after fit and load); ``None``
        keeps the forward pass per pair."""
        return None

    def _weights_ready(self) -> None:
        self._after_weights_ready()
        self._scorer = self._build_scorer()

    def _save_extra(self, directory: Path) -> None:
        """Model-specific arrays beside the network."""

    def _load_extra(self, directory: Path) -> None:
        """Read what ``_save_extra`` wrote."""

    # ----- fitting ---------------------------------------------------------------------------------------------
    def fit(
        self, data: TrainingData, options: TrainOptions | None = None, logger: logging.Logger | None = None
    ) -> TrainingHistory:
        options = options or TrainOptions()
        self._options = options
        users = self._users = IdVocabulary.from_column(data.train["user_id"])
        items = self._items = self._item_vocabulary(data)
        self._global_mean = float(data.train["rating"].mean())  # type: ignore[arg-type]
        self._prepare(data)

        def indices(frame: pl.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
            features = {"user": users.lookup(frame["user_id"]), "item": items.lookup(frame["item_id"])}
            return features, frame["rating"].to_numpy().astype(np.float32)

        train_x, train_y = indices(data.train)
        validation = indices(data.validation) if data.has_validation and data.validation is not None else None

        lookup = self._input_lookup()

        def make_datasets(batch_size: int) -> DatasetPair:
            train = pair_dataset(train_x, train_y, batch_size, options.seed, True, lookup)
            val = None
            if validation is not None:
                # Larger batches for evaluation: no gradients, so only memory limits them.
                val = pair_dataset(validation[0], validation[1], batch_size * 4, options.seed, False, lookup)
            return train, val

        network, history = fit_network(
            self.kind,
            lambda: self._build_network(options, users.size_with_unknown, items.size_with_unknown),
            make_datasets,
            len(train_y),
            *self._learning_rate(options),
            loss=self.loss,
            logger=logger,
        )
        self._network = network
        self._weights_ready()
        return history

    def _learning_rate(self, options: TrainOptions) -> tuple[TrainOptions, Any]:
        """The options ``fit_network`` gets and the default rate it falls back to: a float, or a Keras schedule for
        a model whose published recipe decays its rate."""
        return options, self.default_learning_rate

    # ----- scoring ---------------------------------------------------------------------------------------------
    def _fitted_network(self) -> keras.Model:
        if self._network is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return self._network

    def _score_pairs(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        if self._scorer is not None:
            return self._scorer.pair_scores(user_index, item_index)
        return self._network_pair_scores(user_index, item_index)

    def _network_pair_scores(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """The network's own forward pass per pair: the reference every scorer must agree with."""
        return run_network(self._fitted_network(), {"user": user_index, "item": item_index}, self._input_lookup())

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        user_index = self._vocab("users").lookup(user_ids)
        item_index = self._vocab("items").lookup(item_ids)
        return clip_ratings(self._score_pairs(user_index, item_index))

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        return clip_ratings(self.ranking_scores(user_ids))

    def ranking_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        self._fitted_network()
        user_index = self._vocab("users").lookup(user_ids)
        if self._scorer is not None:
            return self._scorer.scores(user_index)
        n_items = len(self._vocab("items"))
        every_item = np.arange(1, n_items + 1, dtype=np.int32)
        scores = self._network_pair_scores(np.repeat(user_index, n_items), np.tile(every_item, len(user_index)))
        return scores.reshape(len(user_index), n_items)

    def ranking_pair_scores(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """``ranking_scores`` of aligned (user, item) pairs, unclipped: the sampled ranking protocol scores each
        case's positive and negatives with it, instead of whole rows (one MLP pass per pair for NCF/NeuMF)."""
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        return self._score_pairs(self._vocab("users").lookup(user_ids), self._vocab("items").lookup(item_ids))

    def unknown_item_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        """The network's answer for item index 0 (unclipped, like ``ranking_scores``)."""
        user_index = self._vocab("users").lookup(user_ids)
        if self._scorer is not None:
            return self._scorer.item_scores(user_index, 0).astype(np.float64)
        return self._score_pairs(user_index, np.zeros_like(user_index)).astype(np.float64)

    # ----- persistence -------------------------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        self._fitted_network().save(directory / NETWORK_FILE)
        (directory / "state.json").write_text(json.dumps({"global_mean": self._global_mean}))
        self._save_extra(directory)

    def _load_state(self, directory: Path) -> None:
        self._global_mean = float(json.loads((directory / "state.json").read_text())["global_mean"])
        self._load_extra(directory)
        self._network = keras.saving.load_model(directory / NETWORK_FILE, compile=False)
        self._weights_ready()


def id_inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The two index inputs every pairwise network starts from (names match the feature dict keys)."""
    return (keras.Input(shape=(), dtype="int32", name="user"), keras.Input(shape=(), dtype="int32", name="item"))


def embedding(
    rows: int, dim: int, options: TrainOptions, name: str, dtype: str, zeros: bool = False, table_l2: bool = True
) -> keras.layers.Embedding:
    """An embedding table (``zeros`` for bias tables, which should start at the baseline).

    ``table_l2`` adds ``options.l2`` as a whole-table Keras regularizer; models that regularize the looked-up
    rows instead (``embed`` with a ``row_l2``) switch it off so the two penalties do not stack.
    """
    return keras.layers.Embedding(
        rows,
        dim,
        name=name,
        dtype=dtype,
        embeddings_initializer="zeros" if zeros else keras.initializers.RandomNormal(stddev=0.05),
        embeddings_regularizer=keras.regularizers.L2(options.l2) if table_l2 and options.l2 > 0 else None,
    )


def embed(
    ids: Any,
    rows: int,
    dim: int,
    options: TrainOptions,
    name: str,
    dtype: str,
    row_l2: float | None,
    zeros: bool = False,
) -> Any:
    """Look ``ids`` up in a new table named ``name``, penalizing the rows used in each batch by ``row_l2``.

    ``row_l2=None`` keeps the legacy whole-table ``options.l2`` penalty (weight decay on every row, every step);
    a number switches to the per-example penalty of ``BatchRowL2`` (0 disables regularization of this table).
    """
    looked_up = embedding(rows, dim, options, name, dtype, zeros=zeros, table_l2=row_l2 is None)(ids)
    if row_l2 is None or row_l2 <= 0:
        return looked_up
    return BatchRowL2(row_l2, name=f"{name}_l2")(looked_up)
