"""The floor every model must beat: predict the training mean rating for everything."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rec_pipeline.models.base import Recommender, clip_ratings
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.vocabulary import IdVocabulary


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    if len(actual) == 0:
        return float("nan")
    return float(np.sqrt(np.mean((np.asarray(predicted, np.float64) - np.asarray(actual, np.float64)) ** 2)))


class GlobalMeanRecommender(Recommender):
    """Constant prediction; every item ties, so it ranks in the shared seeded random order (a random recommender)."""

    kind = "global_mean"

    def __init__(self) -> None:
        super().__init__()
        self._mean: float = float("nan")

    def fit(
        self, data: TrainingData, options: TrainOptions | None = None, logger: logging.Logger | None = None
    ) -> TrainingHistory:
        started = time.perf_counter()
        self._options = options or TrainOptions()
        self._users = IdVocabulary.from_column(data.train["user_id"])
        self._items = IdVocabulary.from_column(data.train["item_id"])
        ratings = data.train["rating"].to_numpy()
        self._mean = float(ratings.mean())
        history = TrainingHistory(rmse=[rmse(np.full_like(ratings, self._mean), ratings)])
        history.loss = [history.rmse[0] ** 2]
        if data.has_validation:
            assert data.validation is not None
            val = data.validation["rating"].to_numpy()
            history.val_rmse = [rmse(np.full_like(val, self._mean), val)]
            history.val_loss = [history.val_rmse[0] ** 2]
        history.wall_seconds = time.perf_counter() - started
        history.examples_per_second = len(ratings) / max(history.wall_seconds, 1e-9)
        if logger is not None:
            logger.info("global_mean: mean rating %.4f over %d ratings", self._mean, len(ratings))
        return history

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        self._vocab("items")
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        return clip_ratings(np.full(len(user_ids), self._mean))

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        return clip_ratings(np.full((len(user_ids), len(self._vocab("items"))), self._mean))

    def _save_state(self, directory: Path) -> None:
        (directory / "state.json").write_text(json.dumps({"mean": self._mean}))

    def _load_state(self, directory: Path) -> None:
        self._mean = float(json.loads((directory / "state.json").read_text())["mean"])
