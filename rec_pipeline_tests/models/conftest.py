"""Planted-signal rating data: known biases and 3-d factors, with item factors driven by content vectors.

Every model test asks whether a model recovers this structure (RMSE clearly under the global mean), which a
broken embedding, mask or loss would fail.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import polars as pl
import pytest

from rec_pipeline.models.data import ItemContent, TrainingData


@dataclass(frozen=True)
class PlantedRatings:
    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    cold_test: pl.DataFrame  # ratings of items that appear only in content, never in train
    content: ItemContent

    def training_data(self, with_content: bool = False) -> TrainingData:
        return TrainingData(self.train, self.validation, self.content if with_content else None)


def make_planted_ratings(
    seed: int = 0,
    n_users: int = 200,
    n_items: int = 100,
    density: float = 0.3,
    n_cold_items: int = 15,
    content_dim: int = 8,
) -> PlantedRatings:
    """ratings = 3.5 + b_u + b_i + p_u . q_i + N(0, 0.3), clipped to 1..5; q_i and b_i are functions of the
    item's content vector, so content alone predicts an item's bias and factors."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n_items, content_dim))
    item_factors = content @ rng.normal(scale=0.35, size=(content_dim, 3))
    item_bias = content @ rng.normal(scale=0.25, size=content_dim)
    user_factors = rng.normal(scale=0.6, size=(n_users, 3))
    user_bias = rng.normal(scale=0.4, size=n_users)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    ratings = (
        3.5
        + user_bias[users]
        + item_bias[items]
        + np.einsum("ij,ij->i", user_factors[users], item_factors[items])
        + rng.normal(scale=0.3, size=len(users))
    )
    frame = pl.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in users],
            "item_id": [f"i{i:03d}" for i in items],
            "rating": np.clip(ratings, 1, 5).astype(np.float32),
            "timestamp": np.arange(len(users), dtype=np.int64),
        }
    )
    cold_items = {f"i{i:03d}" for i in rng.choice(n_items, n_cold_items, replace=False)}
    is_cold = pl.col("item_id").is_in(list(cold_items))
    warm = frame.filter(~is_cold)
    split = rng.random(warm.height)
    item_ids = [f"i{i:03d}" for i in range(n_items)]
    text_mask = rng.random(n_items) > 0.1  # some items lack text: the mask path must cope
    return PlantedRatings(
        train=warm.filter(split < 0.8),
        validation=warm.filter((split >= 0.8) & (split < 0.9)),
        test=warm.filter(split >= 0.9),
        cold_test=frame.filter(is_cold),
        content=ItemContent(
            item_ids=item_ids,
            text_vectors=np.where(text_mask[:, None], content, 0.0).astype(np.float32),
            text_mask=text_mask,
            image_vectors=(content @ rng.normal(size=(content_dim, 16))).astype(np.float32),
            image_mask=np.ones(n_items, dtype=bool),
        ),
    )


@pytest.fixture(scope="session")
def planted() -> PlantedRatings:
    return make_planted_ratings()


def rmse(predicted: np.ndarray, frame: pl.DataFrame) -> float:
    return float(np.sqrt(np.mean((predicted - frame["rating"].to_numpy()) ** 2)))


@dataclass(frozen=True)
class GeneratedSplits:
    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame


def _generated_world(
    seed: int, n_users: int, n_items: int, n_reviews: int, choice_affinity: float | None
) -> tuple[Any, pl.DataFrame]:
    """The sample generator's world and its reviews (latest per pair) as a ratings frame."""
    from rec_pipeline.sample import SampleSpec, draw_reviews, generate_world

    spec = SampleSpec(n_users=n_users, n_items=n_items, n_reviews=n_reviews, seed=seed, duplicate_fraction=0.0)
    if choice_affinity is not None:
        spec = dataclasses.replace(spec, choice_affinity=choice_affinity)
    world = generate_world(spec)
    draw = draw_reviews(world)
    latest = draw.is_latest
    frame = pl.DataFrame(
        {
            "user_id": [f"u{u:04d}" for u in draw.user[latest]],
            "item_id": [f"i{i:04d}" for i in draw.item[latest]],
            "rating": draw.rating[latest].astype(np.float32),
            "timestamp": draw.timestamp[latest],
        }
    )
    return world, frame


def make_generated_splits(
    seed: int = 4, n_users: int = 400, n_items: int = 150, n_reviews: int = 9000, choice_affinity: float = 0.0
) -> GeneratedSplits:
    """The sample generator's world (heavy-tailed item popularity, known ratings), split 80/10/10 at random.

    Unlike the planted data, who rates what here follows popularity (``choice_affinity=0``, as the generator
    did before taste entered the choice), so rating accuracy and ranking quality disagree: the case the ranking
    protocol and model selection must get right.
    """
    _, frame = _generated_world(seed, n_users, n_items, n_reviews, choice_affinity)
    split = np.random.default_rng(seed).random(frame.height)
    return GeneratedSplits(
        frame.filter(split < 0.8), frame.filter((split >= 0.8) & (split < 0.9)), frame.filter(split >= 0.9)
    )


@pytest.fixture(scope="session")
def generated() -> GeneratedSplits:
    return make_generated_splits()


@dataclass(frozen=True)
class PersonalSplits:
    """Generated data where *which* items a user rates depends on their taste (the generator's default), with
    content (text: the item's topic, image: its style, both noisy) and a tenth of the items held out entirely."""

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    cold: pl.DataFrame  # every rating of the held-out items
    cold_items: list[str]
    content: ItemContent

    def training_data(self) -> TrainingData:
        return TrainingData(self.train, self.validation, self.content)


def make_personal_splits(
    seed: int = 4, n_users: int = 500, n_items: int = 150, n_reviews: int = 15000
) -> PersonalSplits:
    world, frame = _generated_world(seed, n_users, n_items, n_reviews, choice_affinity=None)
    rng = np.random.default_rng(seed)
    item_ids = [f"i{i:04d}" for i in range(n_items)]
    cold_items = sorted(str(item) for item in rng.choice(item_ids, size=n_items // 10, replace=False))
    is_cold = pl.col("item_id").is_in(cold_items)
    warm = frame.filter(~is_cold)
    # Leave the latest rating of each user out for test and the one before for validation, as the pipeline does.
    position = warm.with_columns(pl.col("timestamp").rank("ordinal", descending=True).over("user_id").alias("_pos"))
    topics, styles = np.eye(8)[world.item_topic], np.eye(6)[world.item_style]
    return PersonalSplits(
        train=position.filter(pl.col("_pos") > 2).drop("_pos"),
        validation=position.filter(pl.col("_pos") == 2).drop("_pos"),
        test=position.filter(pl.col("_pos") == 1).drop("_pos"),
        cold=frame.filter(is_cold),
        cold_items=cold_items,
        content=ItemContent(
            item_ids,
            (topics + rng.normal(0, 0.3, topics.shape)).astype(np.float32),
            np.ones(n_items, bool),
            (styles + rng.normal(0, 0.3, styles.shape)).astype(np.float32),
            np.ones(n_items, bool),
        ),
    )


@pytest.fixture(scope="session")
def personal() -> PersonalSplits:
    return make_personal_splits()
