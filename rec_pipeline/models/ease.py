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
from scipy.linalg import lapack

from rec_pipeline.models.base import ModelNotApplicable
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.global_mean import GlobalMeanRecommender

WEIGHTS_FILE = "ease_weights.npy"
USER_ITEMS_FILE = "user_items.npz"
DEFAULT_L2 = 100.0
# The fit's peak above the process it runs in, per cell of items x items (``ease_weights``: one float32 matrix
# plus blocks), measured in a child process per size (VmHWM): 4.9 bytes at 8k and 16k items, 4.5 at 30k, against
# 33 at 4k and 8k for the float64 ``inv`` before. The cap stays where it was, at 20k items (a ~2 GB fit, a 1.6 GB
# saved B that the scoring steps load): memory would allow 30k (5.3 GB fit), but the two cubic LAPACK passes take
# minutes there (20 min at 30k on 2 loaded cores, 91 s at 16k), and B's size is paid again by every scoring step.
DEFAULT_MAX_ITEMS = 20_000
_PEAK_BYTES_PER_CELL = 5
# Rows per block where the fit copies or multiplies part of the items x items matrix.
_MIN_BLOCK_ROWS = 1024


class EASERecommender(GlobalMeanRecommender):
    """Item-item weights B from one regularized inverse; scores = X_u B (X_u: the user's training items, 0/1).

    ``l2`` is Steck's lambda (he uses a few hundred on MovieLens/Netflix; larger shrinks towards popularity).
    ``max_items`` guards memory: the fit needs a dense items x items matrix (and so does scoring: B is dense), so
    a larger catalogue raises ``ModelNotApplicable`` before allocating anything and the pipeline skips the model.

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
                f"ease: {n_items:,} items exceed max_items={self.max_items:,}; the closed form needs a dense items x "
                f"items matrix (fit peak ~{gigabytes:,.1f} GB here). Raise max_items (model_params) if memory allows."
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
    """B = I - P / diag(P), P = (X^T X + l2 I)^-1, as float32 (diag(B) = 0), computed in one items x items buffer.

    The Gram matrix is built in float32 a block of rows at a time (its entries are co-occurrence counts, exact in
    float32 up to 2^24 users), inverted in place by Cholesky (it is symmetric positive definite: LAPACK's
    ``spotrf``/``spotri`` on the Fortran view of the same memory), mirrored to the other triangle and scaled into B
    in place. So the one dense matrix alive is the result: ~4 bytes a cell plus small blocks, where the float64
    ``inv`` it replaces held three (33 bytes a cell measured). Rankings match the float64 formula to float32
    rounding (``rec_pipeline_tests/models/test_rankers.py``).
    """
    matrix = sp.csr_matrix(user_items, dtype=np.float32)
    weights = _gram(matrix)
    weights.flat[:: len(weights) + 1] += np.float32(l2)
    # C order seen as Fortran order is the transpose, i.e. the same symmetric matrix: LAPACK works on it in place,
    # on its Fortran lower triangle (the C upper one).
    factor, info = lapack.spotrf(weights.T, lower=True, overwrite_a=True, clean=False)
    if info == 0:
        _, info = lapack.spotri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"ease: X^T X + {l2:g} I is not positive definite in float32 (LAPACK info {info})")
    _mirror_upper_triangle(weights)
    diagonal = np.diag(weights).copy()
    weights /= -diagonal[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def _gram(matrix: sp.csr_matrix) -> np.ndarray:
    """Dense float32 X^T X, written a block of rows at a time: each block's sparse product is at most 1/16 of
    the rows (~0.5 bytes a cell of the result), never a whole sparse items x items matrix beside the dense one."""
    n_items = matrix.shape[1]
    gram = np.empty((n_items, n_items), dtype=np.float32)
    by_item = sp.csr_matrix(matrix.T)
    step = max(_MIN_BLOCK_ROWS, -(-n_items // 16))
    for start in range(0, n_items, step):
        stop = min(start + step, n_items)
        (by_item[start:stop] @ matrix).toarray(out=gram[start:stop])
    return gram


def _mirror_upper_triangle(square: np.ndarray) -> None:
    """Copy the upper triangle of a C-order square matrix onto its lower one, in place, a block at a time."""
    n = len(square)
    for start in range(0, n, _MIN_BLOCK_ROWS):
        stop = min(start + _MIN_BLOCK_ROWS, n)
        diagonal = square[start:stop, start:stop]
        below = np.tri(stop - start, k=-1, dtype=bool)
        diagonal[below] = diagonal.T[below]
        square[stop:, start:stop] = square[start:stop, stop:].T
