"""Closed-form baselines, plus the shared ranking/persistence behaviour of the base class (exercised on the
cheapest real model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rec_pipeline.models import TrainOptions, load_model
from rec_pipeline.models.biases import BiasesRecommender
from rec_pipeline.models.global_mean import GlobalMeanRecommender
from rec_pipeline_tests.models.conftest import PlantedRatings, rmse


@pytest.fixture(scope="module")
def biases(planted: PlantedRatings) -> BiasesRecommender:
    model = BiasesRecommender()
    model.fit(planted.training_data(), TrainOptions())
    return model


def _pairs(frame: pl.DataFrame) -> tuple[list[str], list[str]]:
    return frame["user_id"].to_list(), frame["item_id"].to_list()


def test_global_mean_predicts_the_training_mean(planted: PlantedRatings) -> None:
    model = GlobalMeanRecommender()
    history = model.fit(planted.training_data())
    predicted = model.predict(*_pairs(planted.test))
    assert np.allclose(predicted, planted.train["rating"].mean())
    assert history.val_rmse and history.val_rmse[0] > 0


def test_biases_beat_the_global_mean(planted: PlantedRatings, biases: BiasesRecommender) -> None:
    baseline = rmse(np.full(planted.test.height, planted.train["rating"].mean()), planted.test)
    assert rmse(biases.predict(*_pairs(planted.test)), planted.test) < baseline - 0.05


def test_biases_fall_back_to_known_terms_for_unseen_ids(biases: BiasesRecommender) -> None:
    user, item = biases.user_ids[0], biases.item_ids[0]
    unseen_user = biases.predict(["nobody"], [item])[0]
    both_unseen = biases.predict(["nobody"], ["nothing"])[0]
    assert unseen_user == pytest.approx(both_unseen + biases._terms.item_bias[1], abs=1e-5)  # type: ignore[union-attr]
    assert biases.predict([user], ["nothing"])[0] != pytest.approx(both_unseen)


def test_score_users_matches_predict(biases: BiasesRecommender) -> None:
    users = biases.user_ids[:3]
    scores = biases.score_users(users)
    assert scores.shape == (3, len(biases.item_ids))
    expected = biases.predict([users[1]] * len(biases.item_ids), biases.item_ids)
    assert np.allclose(scores[1], expected)


def test_recommend_excludes_rated_items_without_duplicates(planted: PlantedRatings, biases: BiasesRecommender) -> None:
    rated = {user: set(items) for user, items in planted.train.group_by("user_id").agg("item_id").iter_rows()}
    users = biases.user_ids[:50]
    top = biases.recommend(users, n=10, exclude=rated)
    assert top.height == 10 * len(users)
    assert top.select(pl.struct("user_id", "item_id").is_unique().all()).item()
    assert not any(item in rated[user] for user, item in top.select("user_id", "item_id").iter_rows())
    assert top.group_by("user_id").agg(pl.col("rank").sort()).get_column("rank").to_list()[0] == list(range(1, 11))
    scores = top.filter(pl.col("user_id") == users[0])["score"].to_list()
    assert scores == sorted(scores, reverse=True)


def test_recommend_matches_a_full_sort_of_unclipped_scores_across_batches(biases: BiasesRecommender) -> None:
    users = biases.user_ids[:7]
    top = biases.recommend(users, n=5, batch_users=2)
    full = biases.ranking_scores(users)
    for row, user in enumerate(users):
        expected = [biases.item_ids[c] for c in np.argsort(-full[row], kind="stable")[:5]]
        assert top.filter(pl.col("user_id") == user)["item_id"].to_list() == expected


def test_recommend_returns_fewer_rows_when_exclusions_exhaust_the_catalogue(biases: BiasesRecommender) -> None:
    everything_but_two = set(biases.item_ids[2:])
    top = biases.recommend(["u000", "u000", "stranger"], n=5, exclude={"u000": everything_but_two})
    scores = dict(zip(biases.item_ids, biases.ranking_scores(["u000"])[0], strict=True))
    assert top.filter(pl.col("user_id") == "u000")["item_id"].to_list() == sorted(
        biases.item_ids[:2], key=lambda i: -scores[i]
    )
    assert top.filter(pl.col("user_id") == "stranger").height == 5


def test_save_then_load_model_gives_identical_predictions(
    tmp_path: Path, planted: PlantedRatings, biases: BiasesRecommender
) -> None:
    biases.save(tmp_path / "biases")
    loaded = load_model(tmp_path / "biases")
    assert isinstance(loaded, BiasesRecommender) and loaded.get_config() == biases.get_config()
    assert np.array_equal(loaded.predict(*_pairs(planted.test)), biases.predict(*_pairs(planted.test)))


def test_loading_with_the_wrong_class_is_refused(tmp_path: Path, biases: BiasesRecommender) -> None:
    biases.save(tmp_path / "biases")
    with pytest.raises(ValueError, match="biases"):
        GlobalMeanRecommender.load(tmp_path / "biases")


def test_unfitted_model_refuses_to_score() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        BiasesRecommender().score_users(["u"])
