"""The item cold-start protocol: which items are held out, which candidates they are ranked among, and how a model
that cannot score them still gets a (fallback) score."""

from __future__ import annotations

import numpy as np
import pytest

from rec_pipeline.evaluation import (
    ColdFallback,
    EvaluationOptions,
    cold_candidates,
    cold_metric_name,
    cold_metrics,
    compare_models,
    evaluate_cold_items,
    only_items,
    select_cold_items,
    without_items,
)
from rec_pipeline_tests.evaluation.fakes import TableModel, ratings

INTERACTIONS = ratings([(f"u{u}", f"i{i:02d}", 4.0) for u in range(3) for i in range(20)])
WITH_CONTENT = [f"i{i:02d}" for i in range(10)] + ["not_rated"]


def test_cold_items_are_a_seeded_share_of_the_rated_items_with_content() -> None:
    cold = select_cold_items(INTERACTIONS, WITH_CONTENT, fraction=0.3, seed=1)
    assert len(cold) == 3 and cold == sorted(cold)
    assert set(cold) <= {f"i{i:02d}" for i in range(10)}  # rated and with content, never "not_rated"
    assert cold == select_cold_items(INTERACTIONS, WITH_CONTENT, fraction=0.3, seed=1)
    assert any(select_cold_items(INTERACTIONS, WITH_CONTENT, 0.3, seed) != cold for seed in range(2, 6))
    assert select_cold_items(INTERACTIONS, WITH_CONTENT, fraction=0.0, seed=1) == []
    assert len(select_cold_items(INTERACTIONS, WITH_CONTENT, fraction=0.01, seed=1)) == 1
    with pytest.raises(ValueError, match="cold_item_fraction"):
        select_cold_items(INTERACTIONS, WITH_CONTENT, fraction=1.0, seed=1)


def test_cold_items_leave_every_split_and_form_the_cold_set() -> None:
    cold = ["i01", "i05"]
    warm, held_out = without_items(INTERACTIONS, cold), only_items(INTERACTIONS, cold)
    assert warm.height + held_out.height == INTERACTIONS.height
    assert not set(warm["item_id"]) & set(cold) and set(held_out["item_id"]) == set(cold)


def test_cold_candidates_are_every_cold_item_and_as_many_seeded_warm_ones() -> None:
    warm = [f"w{i:02d}" for i in range(50)]
    candidates = cold_candidates(["c1", "c2", "c3"], warm, seed=0)
    assert {"c1", "c2", "c3"} <= set(candidates) and len(candidates) == 6
    assert candidates == cold_candidates(["c3", "c1", "c2"], list(reversed(warm)), seed=0)
    assert len(cold_candidates(["c1"], ["w1"], seed=0, warm_per_cold=5.0)) == 2  # no more warm items than exist


def test_metric_names_get_a_cold_stem() -> None:
    assert [cold_metric_name(m) for m in ("rmse", "ndcg@10", "recall@5")] == [
        "rmse_cold",
        "ndcg_cold@10",
        "recall_cold@5",
    ]


class _RankerWithFallback(TableModel):
    """A table model that also says how it ranks an item it has never seen (like popularity's count of 0)."""

    def unknown_item_scores(self, user_ids: list[str]) -> np.ndarray:
        return np.full(len(user_ids), -1.0)


def test_unknown_candidates_get_the_models_item_agnostic_score() -> None:
    rows = {"u1": [5.0, 1.0]}
    plain = ColdFallback(TableModel(["a", "b"], rows, fallback=3.0), ["cold", "a", "b"])
    assert plain.item_ids == ["cold", "a", "b"]
    assert plain.ranking_scores(["u1"]).tolist() == [[3.0, 5.0, 1.0]]  # predict() of an unseen item
    ranker = ColdFallback(_RankerWithFallback(["a", "b"], rows), ["cold", "a", "b"])
    assert ranker.ranking_scores(["u1"]).tolist() == [[-1.0, 5.0, 1.0]]


def test_a_model_that_scores_cold_items_wins_the_cold_ranking_and_every_model_is_measured() -> None:
    train = ratings([("u1", "w1", 5.0), ("u1", "w2", 4.0), ("u2", "w1", 4.0), ("u2", "w3", 2.0)])
    cold = ratings([("u1", "c1", 5.0), ("u2", "c2", 4.0), ("stranger", "c1", 1.0)])
    candidates = ["c1", "c2", "w3", "w4"]
    content_model = TableModel(
        ["c1", "c2", "w1", "w2", "w3", "w4"], {"u1": [5, 1, 0, 0, 2, 2], "u2": [1, 5, 0, 0, 2, 2]}
    )
    warm_only = TableModel(["w1", "w2", "w3", "w4"], {"u1": [0, 0, 4, 4], "u2": [0, 0, 4, 4]}, fallback=3.0)
    good = evaluate_cold_items(content_model, train, cold, candidates)
    blind = evaluate_cold_items(warm_only, train, cold, candidates)
    assert good.metrics["ndcg@10"] == pytest.approx(1.0)
    assert blind.metrics["ndcg@10"] is not None and blind.metrics["ndcg@10"] < 1.0
    assert blind.counts["n_candidates_unscored"] == 0  # cold items ranked by the fallback, not dropped
    assert good.counts["n_test"] == 2  # the stranger's rating is not item cold start
    assert blind.metrics["rmse"] == pytest.approx(np.sqrt(((3 - 5) ** 2 + (3 - 4) ** 2) / 2))
    named = cold_metrics(blind)
    assert {"rmse_cold", "ndcg_cold@10"} <= set(named) and "rmse" not in named and "rmse_few_cold" not in named

    comparison = compare_models(
        {"content": good.user_stats, "warm_only": blind.user_stats},
        ["rmse", "ndcg@10"],
        n_resamples=20,
        rename=cold_metric_name,
    )
    assert comparison.best["ndcg_cold@10"] == "content"
    assert set(comparison.values["warm_only"]) == {"rmse_cold", "ndcg_cold@10"}


def test_cold_ranking_excludes_what_the_user_rated_in_any_warm_split() -> None:
    train = ratings([("u1", "w1", 5.0)])
    history = ratings([("u1", "w2", 5.0)])
    cold = ratings([("u1", "c1", 5.0)])
    # The model loves w2, which u1 already rated in the test split: it must not push c1 out of the top 1.
    model = TableModel(["c1", "w1", "w2"], {"u1": [1.0, 9.0, 9.0]})
    result = evaluate_cold_items(
        model, train, cold, ["c1", "w1", "w2"], history=history, options=EvaluationOptions(ks=(1,))
    )
    assert result.metrics["ndcg@1"] == pytest.approx(1.0)
