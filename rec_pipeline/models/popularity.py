"""Most-popular ranking: the non-personalized floor every ranker must beat on NDCG, not only on RMSE."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.global_mean import GlobalMeanRecommender

COUNTS_FILE = "popularity.npz"


class PopularityRecommender(GlobalMeanRecommender):
    """Ranks items by their number of training interactions; equal counts in the shared seeded random order.

    A ranker, not a rating model: ``predict``/``score_users`` return the training mean rating for every pair
    (inherited from ``global_mean``), so its rating columns repeat the global mean's. Only ``ranking_scores``
    (the counts, identical for every user) carries its signal. On implicit-feedback data the items a user will
    rate next are mostly popular ones, which is why this beats rating models on ranking metrics surprisingly often.
    """

    kind = "popularity"

    def __init__(self) -> None:
        super().__init__()
        self._counts: np.ndarray | None = None

    def fit(
        self, data: TrainingData, options: TrainOptions | None = None, logger: logging.Logger | None = None
    ) -> TrainingHistory:
        history = super().fit(data, options)
        items = self._vocab("items")
        index = items.lookup(data.train["item_id"])
        self._counts = np.bincount(index, minlength=items.size_with_unknown)[1:].astype(np.float64)
        if logger is not None:
            logger.info("popularity: %d items, top count %d", len(items), int(self._counts.max(initial=0)))
        return history

    def ranking_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        if self._counts is None:
            raise RuntimeError("PopularityRecommender is not fitted: call fit() or load() first")
        return np.broadcast_to(self._counts, (len(user_ids), len(self._counts)))

    def unknown_item_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        return np.zeros(len(user_ids))  # never interacted with: a count of 0

    def _save_state(self, directory: Path) -> None:
        super()._save_state(directory)
        assert self._counts is not None
        np.savez(directory / COUNTS_FILE, counts=self._counts)

    def _load_state(self, directory: Path) -> None:
        super()._load_state(directory)
        with np.load(directory / COUNTS_FILE) as arrays:
            self._counts = arrays["counts"]
