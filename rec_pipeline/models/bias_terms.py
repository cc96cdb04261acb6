"""Closed-form regularized user/item biases, shared by the ``biases`` baseline and AutoRec's cold fallback."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BiasTerms:
    """r_hat(u, i) = mean + user_bias[u] + item_bias[i]; row 0 (the unknown id) holds a zero bias."""

    mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray

    def predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        return (self.mean + self.user_bias[user_index] + self.item_bias[item_index]).astype(np.float32)

    def score(self, user_index: np.ndarray) -> np.ndarray:
        """Scores for every known item (columns 1..n) of each user in ``user_index``."""
        return (self.mean + self.user_bias[user_index][:, None] + self.item_bias[None, 1:]).astype(np.float32)


def fit_bias_terms(
    user_index: np.ndarray,
    item_index: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    user_reg: float = 5.0,
    item_reg: float = 5.0,
    iterations: int = 10,
) -> list[BiasTerms]:
    """Alternating least squares on the bias-only model (Koren 2010, section 2.1); one BiasTerms per sweep.

    Each half-step is an exact ridge solution, so a handful of sweeps converges; returning every sweep lets the
    caller report a loss curve like the neural models do. ``n_users``/``n_items`` include the unknown row 0.
    """
    ratings = ratings.astype(np.float64)
    mean = float(ratings.mean())
    residual = ratings - mean
    user_count = np.bincount(user_index, minlength=n_users)
    item_count = np.bincount(item_index, minlength=n_items)
    user_bias = np.zeros(n_users)
    item_bias = np.zeros(n_items)
    sweeps: list[BiasTerms] = []
    for _ in range(max(1, iterations)):
        item_bias = np.bincount(item_index, residual - user_bias[user_index], n_items) / (item_count + item_reg)
        user_bias = np.bincount(user_index, residual - item_bias[item_index], n_users) / (user_count + user_reg)
        item_bias[0] = user_bias[0] = 0.0
        sweeps.append(BiasTerms(mean, user_bias.astype(np.float32), item_bias.astype(np.float32)))
    return sweeps
