"""Ranking from precomputed user and item sides: the same scores and the same top-N as the network run per pair.

Each model is fitted for two epochs only: what is pinned here is that the fast path computes what the network
computes, whatever the weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rec_pipeline.evaluation.top_k import TieBreaker
from rec_pipeline.models import TrainOptions, create_model, load_model
from rec_pipeline.models.base import LatentFactors
from rec_pipeline.models.keras_base import PairwiseKerasRecommender
from rec_pipeline.models.ncf import SplitMLP
from rec_pipeline_tests.models.conftest import PlantedRatings

pytestmark = pytest.mark.slow

OPTIONS = TrainOptions(epochs=2, batch_size=64, embedding_dim=8, learning_rate=1e-2)
CASES = {
    "mf": ("mf", {}, LatentFactors),
    "hybrid": ("hybrid", {"text_units": 8, "image_units": 8, "content_units": 8}, LatentFactors),
    "ncf": ("ncf", {"hidden_units": (16, 8)}, SplitMLP),
    "ncf_linear": ("ncf", {"hidden_units": ()}, SplitMLP),
    "neumf": ("neumf", {"hidden_units": (16, 8)}, SplitMLP),
    "hybrid_seed000": (
        "hybrid_seed000",
        {"embedding_dim": 8, "nn_units": 4, "text_units": 8, "image_units": 8, "content_units": 8, "merge_units": 8},
        SplitMLP,
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def fitted(request: pytest.FixtureRequest, planted: PlantedRatings) -> PairwiseKerasRecommender:
    kind, config, _ = CASES[request.param]
    model = create_model(kind, **config)
    model.fit(planted.training_data(with_content=kind.startswith("hybrid")), OPTIONS)
    assert isinstance(model, PairwiseKerasRecommender)
    model.case = request.param  # type: ignore[attr-defined]
    return model


def _brute_force(model: PairwiseKerasRecommender, users: list[str]) -> np.ndarray:
    """Every (user, item) pair through the network's own forward pass."""
    user_index = model._vocab("users").lookup(users)
    n_items = len(model.item_ids)
    every_item = np.tile(np.arange(1, n_items + 1, dtype=np.int32), len(users))
    return model._network_pair_scores(np.repeat(user_index, n_items), every_item).reshape(len(users), n_items)


def test_each_model_ranks_from_precomputed_sides(fitted: PairwiseKerasRecommender) -> None:
    assert isinstance(fitted._scorer, CASES[fitted.case][2])  # type: ignore[attr-defined]


def test_ranking_scores_equal_the_network_run_per_pair(fitted: PairwiseKerasRecommender) -> None:
    users = [*fitted.user_ids[:7], "nobody"]
    assert np.allclose(fitted.ranking_scores(users), _brute_force(fitted, users), atol=2e-5)
    some_items = fitted.item_ids[:3]
    pairs = fitted.ranking_pair_scores([u for u in users for _ in some_items], [i for _ in users for i in some_items])
    assert np.allclose(pairs.reshape(len(users), 3), fitted.ranking_scores(users)[:, :3], atol=2e-5)
    unknown_item = fitted._network_pair_scores(fitted._vocab("users").lookup(users), np.zeros(len(users), np.int32))
    assert np.allclose(fitted.unknown_item_scores(users), unknown_item, atol=2e-5)


def test_recommendations_equal_a_brute_force_ranking(fitted: PairwiseKerasRecommender) -> None:
    users = fitted.user_ids[:12]
    scores = _brute_force(fitted, users)
    keys = TieBreaker(fitted.item_ids, seed=5).keys(users)
    top = fitted.recommend(users, n=10, seed=5)
    for row, user in enumerate(users):
        expected = np.lexsort((keys[row], -scores[row]))[:10]
        got = top.filter(top["user_id"] == user).sort("rank")["item_id"].to_list()
        assert got == [fitted.item_ids[column] for column in expected]


def test_loaded_model_rebuilds_the_same_scorer(fitted: PairwiseKerasRecommender, tmp_path: Path) -> None:
    fitted.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    users = [fitted.user_ids[0], "nobody"]
    assert np.array_equal(loaded.ranking_scores(users), fitted.ranking_scores(users))


def test_hybrid_scores_content_only_items_from_the_item_side(planted: PlantedRatings) -> None:
    kind, config, _ = CASES["hybrid"]
    model = create_model(kind, **config)
    model.fit(planted.training_data(with_content=True), OPTIONS)
    assert isinstance(model, PairwiseKerasRecommender)
    cold = sorted(set(planted.cold_test["item_id"]))
    columns = [model.item_ids.index(item) for item in cold]
    users = model.user_ids[:5]
    assert np.allclose(model.ranking_scores(users)[:, columns], _brute_force(model, users)[:, columns], atol=2e-5)


def test_latent_factors_fold_biases_into_one_product() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(4, 3)), rng.normal(size=(6, 3))
    user_bias, item_bias = rng.normal(size=4), rng.normal(size=6)
    factors = LatentFactors(users, user_bias, items, item_bias, offset=3.5)
    expected = 3.5 + user_bias[:, None] + item_bias[None, 1:] + users @ items[1:].T
    assert factors.n_items == 5
    assert np.allclose(factors.scores(np.arange(4)), expected, atol=1e-5)
    assert np.allclose(factors.pair_scores(np.array([1, 2]), np.array([3, 5])), expected[[1, 2], [2, 4]], atol=1e-5)
    assert np.allclose(
        factors.item_scores(np.arange(4), 0), 3.5 + user_bias + item_bias[0] + users @ items[0], atol=1e-5
    )
