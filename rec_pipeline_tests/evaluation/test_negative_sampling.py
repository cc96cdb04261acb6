from __future__ import annotations

import numpy as np
import pytest

from rec_pipeline.evaluation.negative_sampling import sample_unrated


def _rated(n_users: int, n_items: int, n_rated: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rated = np.zeros((n_users, n_items), dtype=bool)
    for row in range(n_users):
        rated[row, rng.choice(n_items, n_rated, replace=False)] = True
    return rated


@pytest.mark.parametrize("n_rated", [5, 35])  # large pool (rejection path) and small pool (sort-key path)
def test_samples_are_distinct_unrated_items(n_rated: int) -> None:
    rated = _rated(4, 50, n_rated)
    case_rows = np.repeat(np.arange(4), 25)
    columns, valid = sample_unrated(np.random.default_rng(1), rated, case_rows, 10)
    assert valid.all()
    assert not rated[case_rows[:, None], columns].any()
    assert all(len(set(row)) == 10 for row in columns.tolist())


def test_whole_pool_is_used_and_rest_padded_when_too_few_unrated_items() -> None:
    rated = np.array([[True, False, True, False, True]])
    columns, valid = sample_unrated(np.random.default_rng(0), rated, np.array([0]), 4)
    assert valid.sum() == 2
    assert sorted(columns[valid].tolist()) == [1, 3]


def test_same_seed_same_sample_and_other_seed_differs() -> None:
    rated = _rated(3, 200, 20)
    rows = np.arange(3)
    first = sample_unrated(np.random.default_rng(7), rated, rows, 20)[0]
    again = sample_unrated(np.random.default_rng(7), rated, rows, 20)[0]
    other = sample_unrated(np.random.default_rng(8), rated, rows, 20)[0]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_every_unrated_item_is_drawn_about_equally_often() -> None:
    rated = _rated(1, 50, 10)
    columns, _ = sample_unrated(np.random.default_rng(2), rated, np.zeros(2000, dtype=np.int64), 5)
    counts = np.bincount(columns.ravel(), minlength=50)
    assert counts[rated[0]].sum() == 0
    expected = 2000 * 5 / 40
    assert np.all(np.abs(counts[~rated[0]] - expected) < 0.3 * expected)
