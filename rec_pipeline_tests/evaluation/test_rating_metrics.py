from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rec_pipeline.evaluation.rating_metrics import (
    popularity_segments,
    rating_metrics,
    segment_rating_metrics,
)


def test_rmse_mae_pearson_agree_with_numpy_and_scipy() -> None:
    rng = np.random.default_rng(3)
    actual = rng.integers(1, 6, 50).astype(float)
    predicted = np.clip(actual + rng.normal(0, 0.8, 50), 1, 5)
    result = rating_metrics(actual, predicted)
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean((actual - predicted) ** 2)))
    assert result["mae"] == pytest.approx(np.mean(np.abs(actual - predicted)))
    assert result["pearson"] == pytest.approx(stats.pearsonr(actual, predicted)[0])
    assert result["n"] == 50


def test_hand_computed_values_on_three_pairs() -> None:
    result = rating_metrics([1, 3, 5], [2, 3, 3])
    assert result["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert result["mae"] == pytest.approx(1.0)
    assert result["pearson"] == pytest.approx(np.sqrt(3) / 2)  # 2 / sqrt(8 * 2/3)


def test_constant_predictions_give_pearson_none_not_nan() -> None:
    result = rating_metrics([1.0, 4.0, 5.0], np.full(3, 3.7, dtype=np.float32))
    assert result["pearson"] is None
    assert result["rmse"] is not None and np.isfinite(result["rmse"])


def test_single_pair_and_empty_input_are_undefined_not_errors() -> None:
    assert rating_metrics([4.0], [3.0])["pearson"] is None
    assert rating_metrics([], []) == {"rmse": None, "mae": None, "pearson": None, "n": 0}


def test_non_finite_predictions_raise_instead_of_being_dropped() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        rating_metrics([1.0, 2.0], [np.nan, 2.0])


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        rating_metrics([1.0, 2.0], [1.0])


def test_popularity_segments_split_cold_few_many_at_the_threshold() -> None:
    labels = popularity_segments(np.array([0, 1, 5, 6, 100]), few_max=5)
    assert labels.tolist() == ["cold", "few", "few", "many", "many"]


def test_segment_metrics_cover_every_segment_even_when_empty() -> None:
    actual = np.array([4.0, 2.0, 5.0])
    predicted = np.array([3.0, 2.0, 5.0])
    segments = segment_rating_metrics(actual, predicted, np.array(["cold", "many", "many"]))
    assert segments["cold"]["rmse"] == pytest.approx(1.0)
    assert segments["many"]["rmse"] == pytest.approx(0.0)
    assert segments["few"] == {"rmse": None, "mae": None, "pearson": None, "n": 0}
