"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form item-item ranker.

On the binary user x item matrix X it solves min ||X - XB||^2 + lambda ||B||^2 subject to diag(B) = 0, whose
solution is B = I - P / diag(P) with P = (X^T X + lambda I)^-1 (each column j divided by P_jj). A user's scores
are their row of X times B. No iterations, no seeds, and on implicit-feedback ranking it is a strong baseline
that the neural models in the literature often fail to beat, so the comparison table needs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rec_pipeline.models.base import ModelNotApplicable
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.global_mean import GlobalMeanRecommender

WEIGHTS_FILE = "ease_weights.npy"
USER_ITEMS_FILE = "user_items.npz"
DEFAULT_L2 = 100.0
# Peak memory is two items x items float64 matrices (X^T X and its inverse): ~6.4 GB at 20k items, 0.4 GB at 5k.
DEFAULT_MAX_ITEMS = 20_000
_PEAK_BYTES_PER_CELL = 8 + 8


class EASERecommender(GlobalMeanRecommender):
    """Item-item weights B from one regularized inverse; scores = X_u B (X_u: the user's training items, 0/1).

    ``l2`` is Steck's lambda (he uses a few hundred on MovieLens/Netflix; larger shrinks towards popularity).
    ``max_items`` guards memory: the fit needs dense items x items matrices, so a larger catalogue raises
    ``ModelNotApplicable`` before allocating anything and the pipeline skips the model.

    A ranker, not a rating model: ``predict``/``score_users`` return the training mean rating (inherited from
    ``global_mean``); ``ranking_scores`` are the EASE scores. Users unseen in training score 0 everywhere, i.e.
    the seeded random order.
    """

    kind = "ease"

    def __init__(self, l2: float = DEFAULT_L2, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        super().__init__()
        if l2 <= 0:
            raise ValueError("l2 must be positive: X^T X alone is singular for any sparse catalogue")
        self.l2 = float(l2)
        self.max_items = int(max_items)
        self._weights: np.ndarray | None = None
        self._user_items: sp.csr_matrix | None = None

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2, "max_items": self.max_items}

    def fit(
        self, data: TrainingData, options: TrainOptions | None = None, logger: logging.Logger | None = None
    ) -> TrainingHistory:
        n_items = data.train["item_id"].n_unique()
        if n_items > self.max_items:
            gigabytes = _PEAK_BYTES_PER_CELL * n_items**2 / 1e9
            raise ModelNotApplicable(
                f"ease: {n_items:,} items exceed max_items={self.max_items:,}; the closed form needs dense items x "
                f"items matrices (~{gigabytes:,.1f} GB here). Raise max_items (model_params) if memory allows."
            )
        started = time.perf_counter()
        history = super().fit(data, options)
        users, items = self._vocab("users"), self._vocab("items")
        user_index = users.lookup(data.train["user_id"])
        item_index = items.lookup(data.train["item_id"]) - 1
        ones = np.ones(len(user_index), dtype=np.float32)
        # Row 0 is the unknown user (no items); duplicates of a pair collapse to 1, the matrix is binary.
        matrix = sp.csr_matrix((ones, (user_index, item_index)), shape=(users.size_with_unknown, len(items)))
        matrix.data[:] = 1.0
        self._user_items = matrix
        self._weights = ease_weights(matrix, self.l2)
        history.wall_seconds = time.perf_counter() - started
        history.examples_per_second = len(user_index) / max(history.wall_seconds, 1e-9)
        if logger is not None:
            logger.info(
                "ease: %d users x %d items, lambda %.1f, %.1fs", len(users), len(items), self.l2, history.wall_seconds
            )
        return history

    def _fitted(self) -> tuple[np.ndarray, sp.csr_matrix]:
        if self._weights is None or self._user_items is None:
            raise RuntimeError("EASERecommender is not fitted: call fit() or load() first")
        return self._weights, self._user_items

    def ranking_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        weights, user_items = self._fitted()
        rows = user_items[self._vocab("users").lookup(user_ids)]
        return np.asarray(rows @ weights, dtype=np.float32)

    def unknown_item_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        return np.zeros(len(user_ids))  # no co-occurrence with anything: a zero column of B

    def _save_state(self, directory: Path) -> None:
        super()._save_state(directory)
        weights, user_items = self._fitted()
        np.save(directory / WEIGHTS_FILE, weights)
        sp.save_npz(directory / USER_ITEMS_FILE, user_items)

    def _load_state(self, directory: Path) -> None:
        super()._load_state(directory)
        self._weights = np.load(directory / WEIGHTS_FILE)
        self._user_items = sp.csr_matrix(sp.load_npz(directory / USER_ITEMS_FILE))


def ease_weights(user_items: sp.spmatrix | np.ndarray, l2: float) -> np.ndarray:
    """B = I - P / diag(P), P = (X^T X + l2 I)^-1, computed in float64 and stored as float32 (diag(B) = 0)."""
    matrix = sp.csr_matrix(user_items, dtype=np.float64)
    gram = (matrix.T @ matrix).toarray()
    gram[np.diag_indices_from(gram)] += l2
    inverse = np.linalg.inv(gram)
    del gram
    inverse /= -np.diag(inverse).copy()[None, :]  # in place: no third items x items matrix
    np.fill_diagonal(inverse, 0.0)
    return inverse.astype(np.float32)
