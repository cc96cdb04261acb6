"""Baseline predictor mean + b_u + b_i with ridge-regularized biases, fitted in closed form."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rec_pipeline.models.base import Recommender, clip_ratings
from rec_pipeline.models.bias_terms import BiasTerms, fit_bias_terms
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.global_mean import rmse
from rec_pipeline.models.vocabulary import IdVocabulary


class BiasesRecommender(Recommender):
    """User + item biases by alternating least squares; unseen users/items contribute a zero bias.

    No gradient descent: each sweep is exact, so ``TrainOptions.epochs``/learning rate do not apply; the
    regularization strengths are in rating units (Koren uses 10-25 on Netflix).
    """

    kind = "biases"

    def __init__(self, user_reg: float = 5.0, item_reg: float = 5.0, iterations: int = 10) -> None:
        super().__init__()
        self.user_reg = float(user_reg)
        self.item_reg = float(item_reg)
        self.iterations = int(iterations)
        self._terms: BiasTerms | None = None

    def get_config(self) -> dict[str, Any]:
        return {"user_reg": self.user_reg, "item_reg": self.item_reg, "iterations": self.iterations}

    def fit(
        self, data: TrainingData, options: TrainOptions | None = None, logger: logging.Logger | None = None
    ) -> TrainingHistory:
        started = time.perf_counter()
        self._options = options or TrainOptions()
        users = self._users = IdVocabulary.from_column(data.train["user_id"])
        items = self._items = IdVocabulary.from_column(data.train["item_id"])
        user_index = users.lookup(data.train["user_id"])
        item_index = items.lookup(data.train["item_id"])
        ratings = data.train["rating"].to_numpy()
        sweeps = fit_bias_terms(
            user_index,
            item_index,
            ratings,
            users.size_with_unknown,
            items.size_with_unknown,
            self.user_reg,
            self.item_reg,
            self.iterations,
        )
        history = TrainingHistory()
        history.rmse = [rmse(terms.predict(user_index, item_index), ratings) for terms in sweeps]
        history.loss = [value**2 for value in history.rmse]
        chosen = len(sweeps) - 1
        if data.has_validation:
            assert data.validation is not None
            val_users = users.lookup(data.validation["user_id"])
            val_items = items.lookup(data.validation["item_id"])
            val = data.validation["rating"].to_numpy()
            history.val_rmse = [rmse(clip_ratings(t.predict(val_users, val_items)), val) for t in sweeps]
            history.val_loss = [value**2 for value in history.val_rmse]
            chosen = int(np.argmin(history.val_rmse))
        self._terms = sweeps[chosen]
        history.best_epoch = chosen + 1
        history.epochs_run = len(sweeps)
        history.wall_seconds = time.perf_counter() - started
        history.examples_per_second = len(ratings) * len(sweeps) / max(history.wall_seconds, 1e-9)
        if logger is not None:
            logger.info(
                "biases: %d sweeps, train RMSE %.4f, best sweep %d", len(sweeps), history.rmse[-1], history.best_epoch
            )
        return history

    def bias_terms(self) -> BiasTerms:
        """The fitted mean and biases (rows: this model's vocabularies, row 0 the unknown id)."""
        return self._fitted_terms()

    def _fitted_terms(self) -> BiasTerms:
        if self._terms is None:
            raise RuntimeError("BiasesRecommender is not fitted: call fit() or load() first")
        return self._terms

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        terms = self._fitted_terms()
        return clip_ratings(terms.predict(self._vocab("users").lookup(user_ids), self._vocab("items").lookup(item_ids)))

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        return clip_ratings(self.ranking_scores(user_ids))

    def ranking_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        return self._fitted_terms().score(self._vocab("users").lookup(user_ids))

    def unknown_item_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        user_index = self._vocab("users").lookup(user_ids)
        return self._fitted_terms().predict(user_index, np.zeros_like(user_index)).astype(np.float64)

    def _save_state(self, directory: Path) -> None:
        terms = self._fitted_terms()
        (directory / "state.json").write_text(json.dumps({"mean": terms.mean}))
        np.savez(directory / "biases.npz", user_bias=terms.user_bias, item_bias=terms.item_bias)

    def _load_state(self, directory: Path) -> None:
        mean = float(json.loads((directory / "state.json").read_text())["mean"])
        with np.load(directory / "biases.npz") as arrays:
            self._terms = BiasTerms(mean, arrays["user_bias"], arrays["item_bias"])
