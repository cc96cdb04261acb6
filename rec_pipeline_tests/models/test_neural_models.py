"""MF, NCF, NeuMF and AutoRec on the planted data: each must recover the signal and behave as one interface.

Each model is fitted once per module (a few seconds each) and shared by the tests below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rec_pipeline.models import MODELS, Recommender, TrainOptions, create_model, load_model
from rec_pipeline_tests.models.conftest import PlantedRatings, rmse

pytestmark = pytest.mark.slow

# Small dims and few epochs keep each fit to a few seconds on a loaded 2-core machine.
SETTINGS: dict[str, tuple[dict, TrainOptions]] = {
    "mf": ({}, TrainOptions(epochs=12, batch_size=64, embedding_dim=8, learning_rate=1e-2)),
    "ncf": ({"hidden_units": (32, 16)}, TrainOptions(epochs=15, batch_size=64, embedding_dim=8, learning_rate=5e-3)),
    "neumf": ({"hidden_units": (32, 16)}, TrainOptions(epochs=12, batch_size=64, embedding_dim=8, learning_rate=5e-3)),
    "autorec": ({"hidden_units": (64, 16)}, TrainOptions(epochs=30, batch_size=8, learning_rate=5e-3, dropout=0.1)),
}


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def fitted(request: pytest.FixtureRequest, planted: PlantedRatings) -> Recommender:
    config, options = SETTINGS[request.param]
    model = create_model(request.param, **config)
    model.fit(planted.training_data(), options)
    return model


def _predict(model: Recommender, frame: pl.DataFrame) -> np.ndarray:
    return model.predict(frame["user_id"].to_list(), frame["item_id"].to_list())


def test_every_registered_model_is_exercised() -> None:
    # The rest have test files of their own: test_baselines, test_rankers, test_hybrid, test_two_tower,
    # test_seed_models.
    assert set(SETTINGS) | {
        "global_mean",
        "popularity",
        "biases",
        "ease",
        "hybrid",
        "two_tower",
        "mf_als",
        "hybrid_seed000",
    } == set(MODELS)


def test_model_learns_the_planted_signal(fitted: Recommender, planted: PlantedRatings) -> None:
    baseline = rmse(np.full(planted.test.height, planted.train["rating"].mean()), planted.test)
    assert rmse(_predict(fitted, planted.test), planted.test) < 0.85 * baseline


def test_predictions_are_clipped_ratings_even_for_unseen_ids(fitted: Recommender) -> None:
    predicted = fitted.predict(["nobody", fitted.user_ids[0], "nobody"], [fitted.item_ids[0], "nothing", "nothing"])
    assert predicted.dtype == np.float32
    assert np.all((predicted >= 1) & (predicted <= 5))


def test_ranking_scores_are_the_unclipped_ratings(fitted: Recommender) -> None:
    users = [fitted.user_ids[3], "nobody"]
    assert np.allclose(np.clip(fitted.ranking_scores(users), 1, 5), fitted.score_users(users), atol=1e-5)


def test_score_users_agrees_with_predict(fitted: Recommender) -> None:
    users = [fitted.user_ids[3], "nobody"]
    scores = fitted.score_users(users)
    assert scores.shape == (2, len(fitted.item_ids))
    for row, user in enumerate(users):
        assert np.allclose(scores[row], fitted.predict([user] * len(fitted.item_ids), fitted.item_ids), atol=1e-4)


def test_recommend_excludes_rated_items(fitted: Recommender, planted: PlantedRatings) -> None:
    rated = {user: set(items) for user, items in planted.train.group_by("user_id").agg("item_id").iter_rows()}
    top = fitted.recommend(fitted.user_ids[:20], n=5, exclude=rated)
    assert top.height == 100 and top.select(pl.struct("user_id", "item_id").is_unique().all()).item()
    assert not any(item in rated[user] for user, item in top.select("user_id", "item_id").iter_rows())


def test_save_then_load_gives_identical_predictions(
    fitted: Recommender, planted: PlantedRatings, tmp_path: Path
) -> None:
    fitted.save(tmp_path / fitted.kind)
    loaded = load_model(tmp_path / fitted.kind)
    assert type(loaded) is type(fitted) and loaded.get_config() == fitted.get_config()
    assert np.array_equal(_predict(loaded, planted.test), _predict(fitted, planted.test))
    users = [fitted.user_ids[0], "nobody"]
    assert np.array_equal(loaded.score_users(users), fitted.score_users(users))


def test_mf_falls_back_to_mean_plus_item_bias_for_unknown_users(planted: PlantedRatings) -> None:
    config, options = SETTINGS["mf"]
    model = create_model("mf", **config)
    model.fit(planted.training_data(), TrainOptions(**{**options.to_dict(), "epochs": 2}))
    items = model.item_ids
    unknown_user = model.predict(["nobody"] * len(items), items)
    unknown_both = model.predict(["nobody"], ["nothing"])[0]
    network = model._fitted_network()  # type: ignore[attr-defined]
    item_bias = network.get_layer("item_bias").get_weights()[0][1:, 0]
    item_bias = item_bias + network.get_layer("item_anchor").get_weights()[0][1:, 0]  # the fixed closed-form part
    assert np.allclose(unknown_user, np.clip(unknown_both + item_bias, 1, 5), atol=1e-5)


def test_user_based_autorec_also_learns(planted: PlantedRatings) -> None:
    model = create_model("autorec", hidden_units=(64, 16), item_based=False)
    model.fit(planted.training_data(), TrainOptions(epochs=12, batch_size=16, learning_rate=5e-3, dropout=0.1))
    baseline = rmse(np.full(planted.test.height, planted.train["rating"].mean()), planted.test)
    assert rmse(_predict(model, planted.test), planted.test) < 0.9 * baseline


def test_mf_with_factors_shrunk_away_is_the_bias_model(planted: PlantedRatings) -> None:
    """MF contains the bias model: anchored on its closed-form biases, with the learnt deviations held at zero and
    one tiny factor, MF predicts what ``biases`` predicts up to the factors' random start (sd 0.05^2 per pair), so
    a search over its L2 can always fall back to the bias model. Without the anchor it cannot."""
    data = planted.training_data()
    biases = create_model("biases")
    biases.fit(data)
    users, items = planted.test["user_id"].to_list(), planted.test["item_id"].to_list()
    expected = biases.predict(users, items)
    options = TrainOptions(epochs=1, embedding_dim=1, learning_rate=1e-9)
    mf = create_model("mf", embedding_l2=1e6, bias_l2=1e6)
    mf.fit(data, options)
    gap = np.abs(mf.predict(users, items) - expected)
    assert gap.max() < 0.02 and gap.mean() < 0.003, (float(gap.max()), float(gap.mean()))
    unanchored = create_model("mf", embedding_l2=1e6, bias_l2=1e6, anchor_biases=False)
    unanchored.fit(data, options)
    assert np.abs(unanchored.predict(users, items) - expected).mean() > 0.05
