"""Biased matrix factorization fitted by alternating least squares (seed project 003's "MF by ALS").

Same model as ``mf`` (r = mu + b_u + b_i + p_u . q_i) and the same form of objective: squared error plus, per
rating, ``l2`` on the two factor rows and ``bias_l2`` on the two biases it uses (Zhou et al. 2008's
weighted-lambda ALS-WR; ``mf`` applies exactly this per-example penalty through ``layers.BatchRowL2``). Only the
optimizer differs: with the item side fixed, each user's [b_u, p_u] is one ridge regression with a closed-form
solution, and vice versa, so every half-sweep is exact and no learning rate or batch size is involved. That
makes it the reference the Adam-trained ``mf`` can be compared with on the same split (``l2=0.05`` gives
``mf``'s objective exactly).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rec_pipeline.models.base import Recommender, clip_ratings
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.global_mean import rmse
from rec_pipeline.models.vocabulary import IdVocabulary

FACTORS_FILE = "als_factors.npz"
# Four times ``mf``'s 0.05: ALS reaches the objective's exact minimum, where Adam stops early (an extra
# regularizer). At 0.05 the minimum overfits: on the generated seed datasets of bench/seeds.py (rating std ~1,
# 50-d) validation RMSE was 0.01-0.08 worse than at 0.2, and 0.2 also beat 0.1 on bench/quality.py-shaped data.
DEFAULT_L2 = 0.2
DEFAULT_BIAS_L2 = 0.001
# Per-block bytes of the rating-wise outer products behind the normal equations (~64 MB whatever n_factors is).
_BLOCK_BYTES = 1 << 26


@dataclass(frozen=True)
class Factors:
    """Row 0 of every table is the unknown user/item: zero factors and bias, so it falls back to mu + known bias."""

    mean: float
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray

    def predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        dots = np.einsum("ij,ij->i", self.user_factors[user_index], self.item_factors[item_index])
        return self.mean + self.user_bias[user_index] + self.item_bias[item_index] + dots

    def score(self, user_index: np.ndarray) -> np.ndarray:
        """Unclipped scores of every known item (columns 1..n of the item tables) for ``user_index``."""
        scores = self.user_factors[user_index] @ self.item_factors[1:].T
        scores += self.mean + self.user_bias[user_index][:, None] + self.item_bias[None, 1:]
        return scores


@dataclass(frozen=True)
class RatingRows:
    """Ratings grouped by row (users, or items): row ``r`` owns ``columns/values[indptr[r]:indptr[r + 1]]``.

    Built once per side by a stable sort; duplicate (row, column) pairs stay separate ratings, unlike a scipy
    COO->CSR conversion, which would add them up.
    """

    indptr: np.ndarray
    columns: np.ndarray
    order: np.ndarray  # position of each grouped rating in the original arrays

    @classmethod
    def group(cls, rows: np.ndarray, columns: np.ndarray, n_rows: int) -> RatingRows:
        order = np.argsort(rows, kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))]).astype(np.int64)
        return cls(indptr, columns[order], order)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def blocks(self, max_ratings: int) -> Iterator[tuple[int, int]]:
        """Consecutive row ranges holding at most ``max_ratings`` ratings (a heavier row forms a block alone)."""
        n_rows = len(self.indptr) - 1
        start = 0
        while start < n_rows:
            limit = np.searchsorted(self.indptr, self.indptr[start] + max_ratings, side="right") - 1
            stop = int(min(max(start + 1, limit), start + max_ratings, n_rows))
            yield start, stop
            start = stop


def solve_side(rows: RatingRows, targets: np.ndarray, other: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Each row's ridge solution w_r = (X_r^T X_r + n_r diag(penalty))^-1 X_r^T t_r, all rows of a block at once.

    ``other`` holds the fixed side's features per column (a leading 1 for the bias, then the factors), ``targets``
    the residual each rating leaves for this side (original rating order). Rows without ratings get zeros.
    """
    n_rows, width = len(rows.indptr) - 1, other.shape[1]
    counts = rows.counts
    grouped_targets = targets[rows.order]
    solution = np.zeros((n_rows, width))
    max_ratings = max(1, _BLOCK_BYTES // (8 * width * width))
    for start, stop in rows.blocks(max_ratings):
        lo, hi = rows.indptr[start], rows.indptr[stop]
        features = other[rows.columns[lo:hi]]
        weighted = features * grouped_targets[lo:hi, None]
        if stop - start == 1:
            gram = (features.T @ features)[None]
            rhs = weighted.sum(axis=0)[None]
        else:
            # Sum each row's outer products with one sparse "which row owns this rating" product.
            owner = sp.csr_matrix(
                (np.ones(hi - lo), np.arange(hi - lo), rows.indptr[start : stop + 1] - lo),
                shape=(stop - start, hi - lo),
            )
            outer = (features[:, :, None] * features[:, None, :]).reshape(hi - lo, width * width)
            gram = np.asarray(owner @ outer).reshape(stop - start, width, width)
            rhs = np.asarray(owner @ weighted)
        block_counts = counts[start:stop].astype(np.float64)
        gram = gram + block_counts[:, None, None] * np.diag(penalty)[None]
        empty = block_counts == 0
        gram[empty] = np.eye(width)
        solution[start:stop] = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
    return solution


class ALSMatrixFactorizationRecommender(Recommender):
    """``mf``'s model, fitted by alternating exact ridge regressions (``iterations`` user + item sweeps).

    ``n_factors`` plays ``TrainOptions.embedding_dim``'s role for ``mf`` (learning rate, batch size and epochs do
    not apply); ``TrainOptions.seed`` draws the initial item factors, ``N(0, init_std)``. With validation data
    the sweep with the lowest validation RMSE is kept, as the Keras models restore their best epoch.
    """

    kind = "mf_als"

    def __init__(
        self,
        n_factors: int = 32,
        l2: float = DEFAULT_L2,
        bias_l2: float = DEFAULT_BIAS_L2,
        iterations: int = 15,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if n_factors < 1 or iterations < 1:
            raise ValueError("n_factors and iterations must be positive")
        if l2 < 0 or bias_l2 < 0 or init_std <= 0:
            raise ValueError("l2 and bias_l2 must be >= 0 and init_std > 0")
        self.n_factors = int(n_factors)
        self.l2 = float(l2)
        self.bias_l2 = float(bias_l2)
        self.iterations = int(iterations)
        self.init_std = float(init_std)
        self._factors: Factors | None = None

    def get_config(self) -> dict[str, Any]:
        return {
            "n_factors": self.n_factors,
            "l2": self.l2,
            "bias_l2": self.bias_l2,
            "iterations": self.iterations,
            "init_std": self.init_std,
        }

    def fit(
        self, data: TrainingData, options: TrainOptions | None = None, logger: logging.Logger | None = None
    ) -> TrainingHistory:
        started = time.perf_counter()
        options = self._options = options or TrainOptions()
        users = self._users = IdVocabulary.from_column(data.train["user_id"])
        items = self._items = IdVocabulary.from_column(data.train["item_id"])
        user_index = users.lookup(data.train["user_id"])
        item_index = items.lookup(data.train["item_id"])
        ratings = data.train["rating"].to_numpy().astype(np.float64)
        mean = float(ratings.mean())
        by_user = RatingRows.group(user_index, item_index, users.size_with_unknown)
        by_item = RatingRows.group(item_index, user_index, items.size_with_unknown)
        penalty = np.array([self.bias_l2, *([self.l2] * self.n_factors)])

        rng = np.random.default_rng(options.seed)
        item_side = np.zeros((items.size_with_unknown, 1 + self.n_factors))
        item_side[1:, 1:] = rng.normal(0.0, self.init_std, size=(len(items), self.n_factors))
        user_side = np.zeros((users.size_with_unknown, 1 + self.n_factors))

        validation = None
        if data.has_validation:
            assert data.validation is not None
            validation = (
                users.lookup(data.validation["user_id"]),
                items.lookup(data.validation["item_id"]),
                data.validation["rating"].to_numpy(),
            )
        history = TrainingHistory()
        best: Factors | None = None
        for _ in range(self.iterations):
            # Features [1, factors]: the leading 1 carries this side's bias, so the fixed side's bias is subtracted.
            fixed_items = np.column_stack([np.ones(len(item_side)), item_side[:, 1:]])
            user_side = solve_side(by_user, ratings - mean - item_side[item_index, 0], fixed_items, penalty)
            fixed_users = np.column_stack([np.ones(len(user_side)), user_side[:, 1:]])
            item_side = solve_side(by_item, ratings - mean - user_side[user_index, 0], fixed_users, penalty)
            factors = Factors(
                mean,
                user_side[:, 1:].astype(np.float32),
                item_side[:, 1:].astype(np.float32),
                user_side[:, 0].astype(np.float32),
                item_side[:, 0].astype(np.float32),
            )
            history.rmse.append(rmse(factors.predict(user_index, item_index), ratings))
            history.loss.append(history.rmse[-1] ** 2)
            if validation is not None:
                history.val_rmse.append(
                    rmse(clip_ratings(factors.predict(validation[0], validation[1])), validation[2])
                )
                history.val_loss.append(history.val_rmse[-1] ** 2)
                if history.val_rmse[-1] <= min(history.val_rmse):
                    best, history.best_epoch = factors, len(history.val_rmse)
            else:
                best, history.best_epoch = factors, len(history.rmse)
        self._factors = best
        history.epochs_run = self.iterations
        history.wall_seconds = time.perf_counter() - started
        history.examples_per_second = len(ratings) * self.iterations / max(history.wall_seconds, 1e-9)
        if logger is not None:
            logger.info(
                "mf_als: %d factors, %d sweeps in %.1fs, train RMSE %.4f, best sweep %d",
                self.n_factors,
                self.iterations,
                history.wall_seconds,
                history.rmse[-1],
                history.best_epoch,
            )
        return history

    def _fitted(self) -> Factors:
        if self._factors is None:
            raise RuntimeError("ALSMatrixFactorizationRecommender is not fitted: call fit() or load() first")
        return self._factors

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        factors = self._fitted()
        return clip_ratings(
            factors.predict(self._vocab("users").lookup(user_ids), self._vocab("items").lookup(item_ids))
        )

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        return clip_ratings(self.ranking_scores(user_ids))

    def ranking_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        return self._fitted().score(self._vocab("users").lookup(user_ids))

    def unknown_item_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        """mu + b_u: an unseen item has no factors and no bias (unclipped, like ``ranking_scores``)."""
        user_index = self._vocab("users").lookup(user_ids)
        return self._fitted().predict(user_index, np.zeros_like(user_index)).astype(np.float64)

    def _save_state(self, directory: Path) -> None:
        factors = self._fitted()
        (directory / "state.json").write_text(json.dumps({"mean": factors.mean}))
        np.savez(
            directory / FACTORS_FILE,
            user_factors=factors.user_factors,
            item_factors=factors.item_factors,
            user_bias=factors.user_bias,
            item_bias=factors.item_bias,
        )

    def _load_state(self, directory: Path) -> None:
        mean = float(json.loads((directory / "state.json").read_text())["mean"])
        with np.load(directory / FACTORS_FILE) as arrays:
            self._factors = Factors(
                mean, arrays["user_factors"], arrays["item_factors"], arrays["user_bias"], arrays["item_bias"]
            )
