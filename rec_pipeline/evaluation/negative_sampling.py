"""Uniform sampling of unrated items for the sampled ranking protocol, vectorized over many test cases."""

from __future__ import annotations

import numpy as np

# Draw this many candidates per wanted negative: with a pool at least half the catalogue (the fast path's
# condition) the chance of too few survivors is negligible, and rows that still fall short are redrawn exactly.
_OVERSAMPLE = 3


def sample_unrated(
    rng: np.random.Generator, rated: np.ndarray, case_rows: np.ndarray, n_negatives: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each case, ``n_negatives`` distinct columns ``c`` with ``rated[case_rows[i], c]`` False.

    Returns ``(columns, valid)``, both ``[n_cases, n_negatives]``; ``valid`` is False in padding slots when a
    user has fewer unrated items than ``n_negatives`` (then every unrated item is used). Sampling is uniform
    without replacement. Most cases use rejection sampling (O(n_negatives) per case, independent of catalogue
    size); users who rated much of a small catalogue fall back to random sort keys over the whole row.
    """
    rated = np.asarray(rated, dtype=bool)
    case_rows = np.asarray(case_rows, dtype=np.int64)
    n_cases, n_items = case_rows.size, rated.shape[1]
    columns = np.zeros((n_cases, n_negatives), dtype=np.int64)
    valid = np.zeros((n_cases, n_negatives), dtype=bool)
    if n_cases == 0 or n_negatives == 0 or n_items == 0:
        return columns, valid
    pool = n_items - rated.sum(axis=1)[case_rows]
    fast = pool >= max(2 * n_negatives, n_items // 2)
    slow = np.flatnonzero(~fast)
    fast_cases = np.flatnonzero(fast)
    if fast_cases.size:
        drawn, ok = _rejection_sample(rng, rated, case_rows[fast_cases], n_negatives)
        columns[fast_cases], valid[fast_cases] = drawn, ok
        short = fast_cases[~ok.all(axis=1)]
        slow = np.union1d(slow, short)
    if slow.size:
        columns[slow], valid[slow] = _sort_key_sample(rng, rated, case_rows[slow], n_negatives)
    return columns, valid


def _rejection_sample(
    rng: np.random.Generator, rated: np.ndarray, rows: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    n_items = rated.shape[1]
    draws = rng.integers(0, n_items, size=(rows.size, _OVERSAMPLE * n))
    keep = ~rated[rows[:, None], draws]
    # Keep only the first occurrence of each column within a row: sort, flag repeats, scatter back.
    order = np.argsort(draws, axis=1, kind="stable")
    sorted_draws = np.take_along_axis(draws, order, axis=1)
    repeat_sorted = np.zeros_like(keep)
    repeat_sorted[:, 1:] = sorted_draws[:, 1:] == sorted_draws[:, :-1]
    repeat = np.zeros_like(keep)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    keep &= ~repeat
    # First n survivors in draw order: stable argsort of "not kept" moves survivors to the front.
    front = np.argsort(~keep, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(draws, front, axis=1), np.take_along_axis(keep, front, axis=1)


def _sort_key_sample(
    rng: np.random.Generator, rated: np.ndarray, rows: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    keys = rng.random((rows.size, rated.shape[1]))
    keys[rated[rows]] = np.inf
    width = min(n, rated.shape[1])
    picked = np.argsort(keys, axis=1)[:, :width]
    columns = np.zeros((rows.size, n), dtype=np.int64)
    valid = np.zeros((rows.size, n), dtype=bool)
    columns[:, :width] = picked
    valid[:, :width] = np.isfinite(np.take_along_axis(keys, picked, axis=1))
    return columns, valid
