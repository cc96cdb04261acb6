"""The rankers (popularity, EASE) and the ranking behaviour every model shares: candidate sets, random tie-breaks,
and model selection by validation NDCG instead of RMSE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from rec_pipeline.evaluation import evaluate_model, select_best
from rec_pipeline.models import ModelNotApplicable, TrainingData, create_model, load_model
from rec_pipeline.models.ease import _PEAK_BYTES_PER_CELL, DEFAULT_MAX_ITEMS, EASERecommender, ease_weights
from rec_pipeline.models.global_mean import GlobalMeanRecommender
from rec_pipeline.models.popularity import PopularityRecommender
from rec_pipeline_tests.models.conftest import GeneratedSplits, PlantedRatings


def _ratings(pairs: list[tuple[str, str]], rating: float = 4.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [u for u, _ in pairs],
            "item_id": [i for _, i in pairs],
            "rating": [rating] * len(pairs),
            "timestamp": list(range(len(pairs))),
        }
    )


# u1 rated a, b; u2 rated b, c; u3 rated a. With lambda = 1, G = X^T X + I = [[3,1,0],[1,3,1],[0,1,2]], det 13,
# P = G^-1 = [[5,-2,1],[-2,6,-3],[1,-3,8]] / 13, and B_ij = -P_ij / P_jj off the diagonal:
TINY = _ratings([("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c"), ("u3", "a")])
TINY_B = np.array([[0, 1 / 3, -1 / 8], [2 / 5, 0, 3 / 8], [-1 / 5, 1 / 2, 0]])


def test_ease_matches_the_hand_computed_closed_form() -> None:
    model = EASERecommender(l2=1.0)
    model.fit(TrainingData(TINY))
    x = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0]], dtype=float)
    assert model.item_ids == ["a", "b", "c"]
    assert np.allclose(model.ranking_scores(["u1", "u2", "u3"]), x @ TINY_B, atol=1e-6)
    top = model.recommend(["u3"], n=2, exclude={"u3": {"a"}})
    assert top["item_id"].to_list() == ["b", "c"]  # 1/3 > -1/8


def test_ease_weights_have_a_zero_diagonal_and_solve_the_normal_equations() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((40, 12)) < 0.3).astype(float)
    b = ease_weights(x, 5.0).astype(float)
    assert np.allclose(np.diag(b), 0)
    # Off the diagonal, the gradient of ||X - XB||^2 + l2 ||B||^2 vanishes (the diagonal carries the Lagrange term).
    gradient = (x.T @ x + 5.0 * np.eye(12)) @ b - x.T @ x
    assert np.allclose(gradient - np.diag(np.diag(gradient)), 0, atol=1e-4)


def test_ease_refuses_a_catalogue_above_max_items_before_allocating() -> None:
    with pytest.raises(ModelNotApplicable, match="max_items=2"):
        EASERecommender(max_items=2).fit(TrainingData(TINY))


def test_ease_weights_match_the_float64_closed_form_and_rank_the_same() -> None:
    # float32 Gram matrix and in-place Cholesky inverse against the textbook float64 formula, on a catalogue larger
    # than the fit's blocks (1,024 rows), with popular and rare items.
    rng = np.random.default_rng(3)
    popularity = 0.2 / np.arange(1, 1_301) ** 0.7
    x = (rng.random((600, 1_300)) < popularity).astype(np.float64)
    for l2 in (1.0, 100.0):
        gram = x.T @ x + l2 * np.eye(x.shape[1])
        inverse = np.linalg.inv(gram)
        expected = -inverse / np.diag(inverse)[None, :]
        np.fill_diagonal(expected, 0.0)
        weights = ease_weights(sp.csr_matrix(x), l2)
        assert weights.dtype == np.float32 and weights.flags.c_contiguous
        assert np.abs(weights - expected).max() < 1e-4 * np.abs(expected).max()
        # Each user's top 10 by the float32 weights are a top 10 by the float64 ones: the same items, up to the
        # order among items whose float64 scores tie (items rated by the same users score exactly alike).
        expected_scores = x[:200] @ expected
        top = np.argsort(-(x[:200] @ weights), axis=1)[:, :10]
        best = -np.sort(-expected_scores, axis=1)[:, :10]
        assert np.allclose(-np.sort(-np.take_along_axis(expected_scores, top, axis=1), axis=1), best, atol=1e-6)


def test_ease_refuses_above_its_default_cap_naming_the_measured_peak() -> None:
    n_items = DEFAULT_MAX_ITEMS + 10_000
    catalogue = _ratings([(f"u{n % 50}", f"i{n}") for n in range(n_items)])
    peak = _PEAK_BYTES_PER_CELL * n_items**2 / 1e9
    with pytest.raises(ModelNotApplicable, match=rf"{n_items:,} items exceed max_items=.*fit peak ~{peak:,.1f} GB"):
        EASERecommender().fit(TrainingData(catalogue))


def test_popularity_ranks_by_training_count_and_predicts_the_mean() -> None:
    train = _ratings([("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "b"), ("u2", "b"), ("u3", "c")], rating=2.0)
    model = PopularityRecommender()
    model.fit(TrainingData(train))
    top = model.recommend(["u9"], n=3)
    assert top["item_id"].to_list() == ["a", "b", "c"]
    assert top["score"].to_list() == [3.0, 2.0, 1.0]
    assert np.allclose(model.predict(["u1", "u9"], ["c", "zzz"]), 2.0)


def test_popularity_breaks_equal_counts_in_a_seeded_order() -> None:
    model = PopularityRecommender()
    model.fit(TrainingData(_ratings([("u", f"i{n:02d}") for n in range(40)])))  # every item counted once
    first = model.recommend(["a", "b"], n=10, seed=1)
    assert first.equals(model.recommend(["a", "b"], n=10, seed=1))
    lists = first.group_by("user_id", maintain_order=True).agg("item_id")["item_id"].to_list()
    assert lists[0] != lists[1]  # each user has their own order among ties
    assert lists[0] != sorted(lists[0])


def test_a_constant_model_recommends_reproducibly_and_not_in_id_order(planted: PlantedRatings) -> None:
    model = GlobalMeanRecommender()
    model.fit(planted.training_data())
    users = model.user_ids[:5]
    top = model.recommend(users, n=10, seed=7)
    first_user = top.filter(pl.col("user_id") == users[0])["item_id"].to_list()
    assert first_user != model.item_ids[:10]
    assert top.equals(model.recommend(users, n=10, seed=7))
    assert not top.equals(model.recommend(users, n=10, seed=8))
    assert top["item_id"].n_unique() > 10  # not one list for everybody


def test_recommend_keeps_to_the_candidates() -> None:
    model = PopularityRecommender()
    model.fit(TrainingData(TINY))
    assert model.recommend(["u9"], n=3, candidates={"b", "c", "zzz"})["item_id"].to_list() == ["b", "c"]


@pytest.mark.parametrize("kind", ["popularity", "ease"])
def test_rankers_save_and_load(tmp_path: Path, generated: GeneratedSplits, kind: str) -> None:
    model = create_model(kind)
    model.fit(TrainingData(generated.train, generated.validation))
    model.save(tmp_path / kind)
    loaded = load_model(tmp_path / kind)
    users = model.user_ids[:20] + ["stranger"]
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    assert np.array_equal(loaded.ranking_scores(users), model.ranking_scores(users))
    assert loaded.recommend(users, 5).equals(model.recommend(users, 5))


def test_validation_ndcg_selects_a_ranker_over_the_bias_baseline(generated: GeneratedSplits) -> None:
    # On data where popularity drives what gets rated, biases has the better RMSE and the worse ranking.
    results = {}
    for kind in ("global_mean", "biases", "popularity", "ease"):
        model = create_model(kind)
        model.fit(TrainingData(generated.train, generated.validation))
        results[kind] = evaluate_model(model, generated.train, generated.validation).prefixed("val_")
    assert select_best(results, "val_rmse") == "biases"
    assert select_best(results, "val_ndcg@10") in {"popularity", "ease"}
    assert results["biases"]["val_ndcg@10"] < results["popularity"]["val_ndcg@10"]
    assert results["global_mean"]["val_ndcg@10"] < results["biases"]["val_ndcg@10"]


def test_a_never_seen_item_scores_nothing_for_rankers_and_the_fallback_for_rating_models() -> None:
    # What the cold-item protocol ranks held-out items by, for models that cannot score them.
    for kind in ("popularity", "ease"):
        model = create_model(kind)
        model.fit(TrainingData(TINY))
        assert model.unknown_item_scores(["u1", "stranger"]).tolist() == [0.0, 0.0]
    biases = create_model("biases")
    biases.fit(
        TrainingData(
            _ratings([("u1", "a"), ("u1", "b"), ("u2", "a")], rating=5.0).vstack(_ratings([("u2", "c")], rating=1.0))
        )
    )
    fallback = biases.unknown_item_scores(["u1", "u2"])
    assert np.allclose(fallback, biases.predict(["u1", "u2"], ["never", "never"]))
    assert fallback[0] > fallback[1]  # the user mean part: u1 rates higher than u2
