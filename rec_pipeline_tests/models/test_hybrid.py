"""The hybrid model: collaborative accuracy on warm items, content-only scores for cold items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rec_pipeline.models import TrainOptions, load_model
from rec_pipeline.models.hybrid import HybridRecommender, standardized
from rec_pipeline_tests.models.conftest import PlantedRatings, rmse

pytestmark = pytest.mark.slow

OPTIONS = TrainOptions(epochs=15, batch_size=64, embedding_dim=8, learning_rate=5e-3)


@pytest.fixture(scope="module")
def hybrid(planted: PlantedRatings) -> HybridRecommender:
    model = HybridRecommender(text_units=16, image_units=32, content_units=32)
    model.fit(planted.training_data(with_content=True), OPTIONS)
    return model


def _predict(model: HybridRecommender, frame: pl.DataFrame) -> np.ndarray:
    return model.predict(frame["user_id"].to_list(), frame["item_id"].to_list())


def _global_mean_rmse(planted: PlantedRatings, frame: pl.DataFrame) -> float:
    return rmse(np.full(frame.height, planted.train["rating"].mean()), frame)


def test_hybrid_learns_warm_items(hybrid: HybridRecommender, planted: PlantedRatings) -> None:
    assert rmse(_predict(hybrid, planted.test), planted.test) < 0.85 * _global_mean_rmse(planted, planted.test)


def test_hybrid_scores_cold_items_from_content_better_than_the_global_mean(
    hybrid: HybridRecommender, planted: PlantedRatings
) -> None:
    assert not set(planted.cold_test["item_id"]) & set(planted.train["item_id"])
    cold = rmse(_predict(hybrid, planted.cold_test), planted.cold_test)
    assert cold < 0.9 * _global_mean_rmse(planted, planted.cold_test)


def test_cold_items_are_rankable(hybrid: HybridRecommender, planted: PlantedRatings) -> None:
    assert set(planted.cold_test["item_id"]) <= set(hybrid.item_ids)
    assert hybrid.score_users(["u000"]).shape == (1, len(planted.content.item_ids))


def test_save_then_load_answers_from_saved_content(
    hybrid: HybridRecommender, planted: PlantedRatings, tmp_path: Path
) -> None:
    hybrid.save(tmp_path / "hybrid")
    assert (tmp_path / "hybrid" / "content.npz").is_file()
    loaded = load_model(tmp_path / "hybrid")
    assert loaded.get_config() == hybrid.get_config()
    for frame in (planted.test, planted.cold_test):
        assert np.array_equal(
            loaded.predict(frame["user_id"].to_list(), frame["item_id"].to_list()), _predict(hybrid, frame)
        )


def test_hybrid_requires_item_content(planted: PlantedRatings) -> None:
    with pytest.raises(ValueError, match="content"):
        HybridRecommender().fit(planted.training_data(with_content=False), OPTIONS)


def test_standardized_rescales_tiny_vectors_and_keeps_absent_rows_zero() -> None:
    # Random-CNN image embeddings arrive at ~1e-10 scale; unscaled, the image branch would be dead.
    rng = np.random.default_rng(0)
    vectors = (rng.normal(size=(50, 4)) * 1e-10 + 3e-10).astype(np.float32)
    present = np.ones(50, dtype=bool)
    present[:5] = False
    out = standardized(vectors, present)
    assert np.all(out[:5] == 0.0)
    assert np.allclose(out[present].mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(out[present].std(axis=0), 1.0, atol=1e-3)


def test_standardized_leaves_constant_columns_finite() -> None:
    vectors = np.ones((6, 3), dtype=np.float32)
    assert np.array_equal(standardized(vectors, np.ones(6, dtype=bool)), np.zeros((6, 3), dtype=np.float32))
