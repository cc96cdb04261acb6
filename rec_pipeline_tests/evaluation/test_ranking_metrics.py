from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rec_pipeline.evaluation.ranking_metrics import catalog_coverage, ranking_metrics_from_hits

LOG2_3, LOG2_5 = np.log2(3), np.log2(5)


def test_known_ranking_matches_hand_computed_recall_ndcg_hr_map() -> None:
    # Relevant items at positions 2 and 4 of 5; the user has 3 relevant items in total.
    hits = np.array([[False, True, False, True, False]])
    metrics = ranking_metrics_from_hits(hits, np.array([3]), ks=(2, 5))
    assert metrics["recall@5"][0] == pytest.approx(2 / 3)
    assert metrics["hr@5"][0] == 1.0
    assert metrics["ndcg@5"][0] == pytest.approx((1 / LOG2_3 + 1 / LOG2_5) / (1 + 1 / LOG2_3 + 0.5))
    assert metrics["map@5"][0] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert metrics["recall@2"][0] == pytest.approx(1 / 3)
    assert metrics["ndcg@2"][0] == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    assert metrics["map@2"][0] == pytest.approx((1 / 2) / 2)


def test_no_hit_in_top_k_scores_zero_everywhere() -> None:
    metrics = ranking_metrics_from_hits(np.array([[False, False, True]]), np.array([1]), ks=(2,))
    assert {key: float(value[0]) for key, value in metrics.items()} == {
        "recall@2": 0.0,
        "ndcg@2": 0.0,
        "hr@2": 0.0,
        "map@2": 0.0,
    }


def test_map_and_ndcg_reach_one_when_relevant_items_outnumber_k() -> None:
    metrics = ranking_metrics_from_hits(np.array([[True, True]]), np.array([5]), ks=(2,))
    assert metrics["map@2"][0] == pytest.approx(1.0)
    assert metrics["ndcg@2"][0] == pytest.approx(1.0)
    assert metrics["recall@2"][0] == pytest.approx(2 / 5)


def test_k_larger_than_catalogue_treats_missing_positions_as_misses() -> None:
    metrics = ranking_metrics_from_hits(np.array([[True, False, True]]), np.array([2]), ks=(10,))
    assert metrics["recall@10"][0] == 1.0
    assert metrics["map@10"][0] == pytest.approx((1 + 2 / 3) / 2)


def test_users_without_relevant_items_are_rejected_not_scored_zero() -> None:
    with pytest.raises(ValueError, match="relevant"):
        ranking_metrics_from_hits(np.zeros((1, 3), dtype=bool), np.array([0]), ks=(3,))


def test_coverage_is_the_share_of_flagged_catalogue_items() -> None:
    assert catalog_coverage(np.array([True, False, True, False])) == 0.5
    assert catalog_coverage(np.zeros(0, dtype=bool)) is None


@st.composite
def hit_matrices(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n_users = draw(st.integers(1, 6))
    width = draw(st.integers(1, 12))
    hits = draw(hnp.arrays(bool, (n_users, width)))
    extra = draw(hnp.arrays(np.int64, n_users, elements=st.integers(0, 5)))
    return hits, np.maximum(hits.sum(axis=1) + extra, 1)


@settings(max_examples=60, deadline=None)
@given(hit_matrices(), st.lists(st.integers(1, 15), min_size=1, max_size=3))
def test_every_ranking_metric_lies_between_zero_and_one(matrix: tuple[np.ndarray, np.ndarray], ks: list[int]) -> None:
    hits, n_relevant = matrix
    for values in ranking_metrics_from_hits(hits, n_relevant, ks).values():
        assert np.all((values >= -1e-12) & (values <= 1 + 1e-12))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 12))
def test_perfect_ranking_scores_one(n_relevant: int, k: int) -> None:
    hits = np.zeros((1, max(k, n_relevant) + 3), dtype=bool)
    hits[0, :n_relevant] = True
    metrics = ranking_metrics_from_hits(hits, np.array([n_relevant]), (k,))
    assert metrics[f"ndcg@{k}"][0] == pytest.approx(1.0)
    assert metrics[f"map@{k}"][0] == pytest.approx(1.0)
    assert metrics[f"hr@{k}"][0] == 1.0
    assert metrics[f"recall@{k}"][0] == pytest.approx(min(k, n_relevant) / n_relevant)
