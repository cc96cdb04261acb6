"""The seed projects' own models: seed 000's hybrid network (its exact shape, loss and learning-rate decay) and
seed 003's MF by alternating least squares (recovery of a planted low-rank matrix, determinism, persistence)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import polars as pl
import pytest

from rec_pipeline.assets.training import CONTENT_MODELS, KERAS_MODELS, MODEL_NAMES
from rec_pipeline.models import MODELS, TrainingData, TrainOptions, als, load_model
from rec_pipeline.models.als import ALSMatrixFactorizationRecommender
from rec_pipeline.models.hybrid_seed000 import HybridSeed000Recommender, seed_learning_rate
from rec_pipeline.models.layers import Cosine
from rec_pipeline_tests.models.conftest import PlantedRatings, rmse


def test_both_models_are_registered_where_the_pipeline_looks() -> None:
    assert (
        MODELS["hybrid_seed000"] is HybridSeed000Recommender and MODELS["mf_als"] is ALSMatrixFactorizationRecommender
    )
    assert {"hybrid_seed000", "mf_als"} <= set(MODEL_NAMES)
    assert "hybrid_seed000" in KERAS_MODELS and "hybrid_seed000" in CONTENT_MODELS  # gpu pool, content vectors
    assert "mf_als" not in KERAS_MODELS and "mf_als" not in CONTENT_MODELS


# ----- hybrid_seed000 -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seed000(planted: PlantedRatings) -> HybridSeed000Recommender:
    model = HybridSeed000Recommender()
    model.fit(planted.training_data(with_content=True), TrainOptions(epochs=8, batch_size=128))
    return model


def _dense(network: keras.Model, name: str) -> tuple[int, str]:
    layer = network.get_layer(name)
    return layer.units, keras.activations.serialize(layer.activation)


@pytest.mark.slow
def test_seed000_network_has_the_seeds_layer_sizes(seed000: HybridSeed000Recommender) -> None:
    network = seed000._fitted_network()
    for name in ("mf_user_embedding", "mf_item_embedding", "nn_user_embedding", "nn_item_embedding"):
        assert network.get_layer(name).output_dim == 32
    assert isinstance(network.get_layer("mf_cosine"), Cosine)  # normalized dot, one value
    assert _dense(network, "nn_dense") == (16, "relu") and network.get_layer("nn_dropout").rate == 0.1
    assert _dense(network, "title_dense") == (64, "relu") and _dense(network, "image_dense") == (256, "relu")
    assert _dense(network, "content_dense") == (128, "relu")
    assert network.get_layer("merge_concat").output.shape[-1] == 1 + 16 + 128
    assert _dense(network, "merge_dense") == (64, "linear") and _dense(network, "rating") == (1, "linear")


@pytest.mark.slow
def test_seed000_towers_read_the_pipelines_vector_widths(
    seed000: HybridSeed000Recommender, planted: PlantedRatings
) -> None:
    # The seed's were 64-d titles and 512-d images; here the planted content is 8-d text and 16-d images.
    network = seed000._fitted_network()
    assert network.get_layer("title_dense").kernel.shape == (planted.content.text_dim, 64)
    assert network.get_layer("image_dense").kernel.shape == (planted.content.image_dim, 256)


@pytest.mark.slow
def test_seed000_trains_on_mae_with_keras2_decay(seed000: HybridSeed000Recommender) -> None:
    network = seed000._fitted_network()
    assert network.loss == "mae"
    schedule = network.optimizer._learning_rate
    for step in (0, 1, 500, 10_000):
        assert float(schedule(step)) == pytest.approx(0.01 / (1 + 1e-4 * step), rel=1e-6)
    assert float(seed_learning_rate(0.02, 1e-3)(1000)) == pytest.approx(0.01)


@pytest.mark.slow
def test_seed000_learns_and_a_missing_modality_contributes_zeros(
    seed000: HybridSeed000Recommender, planted: PlantedRatings
) -> None:
    predicted = seed000.predict(planted.test["user_id"].to_list(), planted.test["item_id"].to_list())
    assert rmse(predicted, planted.test) < 0.85 * rmse(
        np.full(planted.test.height, planted.train["rating"].mean()), planted.test
    )
    no_text = [item for item, has in zip(planted.content.item_ids, planted.content.text_mask, strict=True) if not has]
    assert no_text
    network = seed000._fitted_network()
    title = keras.Model(network.inputs, network.get_layer("title_branch").output)
    items = seed000._vocab("items").lookup(no_text)
    inputs = seed000._input_lookup()({"user": np.ones(len(items), np.int32), "item": items})
    assert np.all(np.asarray(title.predict_on_batch(inputs)) == 0.0)


@pytest.mark.slow
def test_seed000_save_load_answers_identically(
    seed000: HybridSeed000Recommender, planted: PlantedRatings, tmp_path: Path
) -> None:
    loaded = load_model(seed000.save(tmp_path / "seed000"))
    assert isinstance(loaded, HybridSeed000Recommender) and loaded.get_config() == seed000.get_config()
    users = ["u000", "u001", "nobody"]
    assert np.array_equal(loaded.ranking_scores(users), seed000.ranking_scores(users))
    assert np.array_equal(loaded.unknown_item_scores(users), seed000.unknown_item_scores(users))
    assert set(planted.cold_test["item_id"]) <= set(loaded.item_ids)  # content-only items are rankable
    assert loaded.recommend(["u000"], 5).equals(seed000.recommend(["u000"], 5))


# ----- mf_als ---------------------------------------------------------------------------------------------------
NOISE = 0.2


def _low_rank(
    seed: int = 0, n_users: int = 300, n_items: int = 150, rank: int = 3, density: float = 0.4
) -> tuple[TrainingData, pl.DataFrame, float]:
    """mu + b_u + b_i + p_u . q_i (rank 3) + N(0, 0.2), inside 1..5.

    Returns (train+validation, test, noise RMSE on test)."""
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    p, q = rng.normal(0, 0.4, (n_users, rank)), rng.normal(0, 0.4, (n_items, rank))
    truth = (
        3.2
        + rng.normal(0, 0.3, n_users)[users]
        + rng.normal(0, 0.3, n_items)[items]
        + np.einsum("ij,ij->i", p[users], q[items])
    )
    noise = rng.normal(0, NOISE, len(users))
    frame = pl.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in users],
            "item_id": [f"i{i:03d}" for i in items],
            "rating": truth + noise,
            "noise": noise,
        }
    )
    split = rng.random(frame.height)
    test = frame.filter(split >= 0.9)
    noise_rmse = float(np.sqrt(np.mean(test["noise"].to_numpy() ** 2)))
    return TrainingData(frame.filter(split < 0.8), frame.filter((split >= 0.8) & (split < 0.9))), test, noise_rmse


def test_als_recovers_a_planted_low_rank_matrix_to_the_noise() -> None:
    data, test, noise_rmse = _low_rank()
    model = ALSMatrixFactorizationRecommender(n_factors=3, l2=0.02, iterations=12)
    history = model.fit(data, TrainOptions(seed=0))
    predicted = model.predict(test["user_id"].to_list(), test["item_id"].to_list())
    # ~48 ratings per user and ~96 per item for 4 unknowns each: estimation adds ~6% to the noise, no more.
    assert rmse(predicted, test) < 1.1 * noise_rmse
    assert history.val_rmse[history.best_epoch - 1] == min(history.val_rmse) and history.epochs_run == 12


def test_als_is_deterministic_for_a_seed() -> None:
    data, _, _ = _low_rank()
    fitted = [ALSMatrixFactorizationRecommender(n_factors=4, iterations=4) for _ in range(3)]
    for model, seed in zip(fitted, (7, 7, 8), strict=True):
        model.fit(data, TrainOptions(seed=seed))
    users = fitted[0].user_ids[:20]
    first, again, other = (model.ranking_scores(users) for model in fitted)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_als_blocks_of_any_size_give_the_same_solution(monkeypatch: pytest.MonkeyPatch) -> None:
    data, _, _ = _low_rank(n_users=200, n_items=40)
    whole = ALSMatrixFactorizationRecommender(n_factors=3, iterations=3)
    whole.fit(data, TrainOptions(seed=1))
    # Blocks of ~30 ratings: many multi-row blocks, and every item (> 30 ratings) solved as a block of its own.
    monkeypatch.setattr(als, "_BLOCK_BYTES", 8 * 16 * 30)
    blocked = ALSMatrixFactorizationRecommender(n_factors=3, iterations=3)
    blocked.fit(data, TrainOptions(seed=1))
    users = whole.user_ids
    np.testing.assert_allclose(blocked.ranking_scores(users), whole.ranking_scores(users), rtol=1e-5, atol=1e-5)


def test_als_unknown_ids_fall_back_to_mean_and_known_bias() -> None:
    data, _, _ = _low_rank(n_users=60, n_items=30)
    model = ALSMatrixFactorizationRecommender(n_factors=2, iterations=3)
    model.fit(data, TrainOptions(seed=0))
    user = model.user_ids[0]
    unknown = model.unknown_item_scores([user, "nobody"])
    assert unknown[1] == pytest.approx(data.train["rating"].mean(), abs=1e-6)  # mu alone
    assert model.predict([user], ["no-such-item"])[0] == pytest.approx(np.clip(unknown[0], 1, 5), abs=1e-6)


def test_als_save_load_is_identical(tmp_path: Path) -> None:
    data, test, _ = _low_rank(n_users=60, n_items=30)
    model = ALSMatrixFactorizationRecommender(n_factors=2, l2=0.1, iterations=3)
    model.fit(data, TrainOptions(seed=0))
    loaded = load_model(model.save(tmp_path / "als"))
    assert isinstance(loaded, ALSMatrixFactorizationRecommender) and loaded.get_config() == model.get_config()
    pairs = (test["user_id"].to_list(), test["item_id"].to_list())
    assert np.array_equal(loaded.predict(*pairs), model.predict(*pairs))
    assert np.array_equal(loaded.ranking_scores(model.user_ids), model.ranking_scores(model.user_ids))
    assert loaded.recommend(model.user_ids[:5], 3).equals(model.recommend(model.user_ids[:5], 3))
