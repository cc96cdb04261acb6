"""The known model: deterministic, content-driven items, heavy-tailed activity, duplicates that come later."""

from __future__ import annotations

import numpy as np
import pytest

from rec_pipeline.sample import SampleSpec, draw_reviews, generate_world
from rec_pipeline.sample.world import MIN_REVIEWS_PER_USER, _distinct_items_per_user, content_share
from rec_pipeline_tests.sample.conftest import small_spec


def test_same_seed_gives_the_same_world_and_reviews() -> None:
    a, b = generate_world(small_spec()), generate_world(small_spec())
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    np.testing.assert_array_equal(draw_reviews(a).rating, draw_reviews(b).rating)
    c = generate_world(small_spec(seed=99))
    assert not np.allclose(a.item_factors, c.item_factors)


def test_content_explains_most_item_side_variance() -> None:
    world = generate_world(SampleSpec(n_items=2000, n_users=2000, n_reviews=20000))
    assert 0.65 <= content_share(world.item_factors, world.item_content_factors) <= 0.85
    assert 0.65 <= content_share(world.item_bias, world.item_content_bias) <= 0.85


def test_topic_mean_bias_tracks_true_item_bias() -> None:
    world = generate_world(SampleSpec(n_items=2000, n_users=2000, n_reviews=20000))
    topic_mean = np.array([world.item_bias[world.item_topic == t].mean() for t in range(8)])[world.item_topic]
    assert np.corrcoef(topic_mean, world.item_bias)[0, 1] > 0.7
    # Topic and style together (text + image) predict the bias better than topic alone.
    both = world.item_content_bias
    assert np.corrcoef(both, world.item_bias)[0, 1] > np.corrcoef(topic_mean, world.item_bias)[0, 1]


def test_each_user_item_pair_is_drawn_once_before_duplication() -> None:
    draw = draw_reviews(generate_world(small_spec()))
    first = ~draw.is_duplicate
    keys = draw.user[first].astype(np.int64) * 1000 + draw.item[first]
    assert len(np.unique(keys)) == first.sum()
    assert len(draw) == 3000 and draw.is_duplicate.sum() == 150


def test_duplicates_are_later_than_the_review_they_copy() -> None:
    draw = draw_reviews(generate_world(small_spec()))
    original = {
        (u, i): d
        for u, i, d in zip(
            draw.user[~draw.is_duplicate].tolist(),
            draw.item[~draw.is_duplicate].tolist(),
            draw.day[~draw.is_duplicate].tolist(),
            strict=True,
        )
    }
    for u, i, d in zip(
        draw.user[draw.is_duplicate].tolist(),
        draw.item[draw.is_duplicate].tolist(),
        draw.day[draw.is_duplicate].tolist(),
        strict=True,
    ):
        assert d > original[(u, i)]
    # Exactly one record per pair is the latest, and for duplicated pairs it is the copy.
    assert draw.is_latest.sum() == (~draw.is_duplicate).sum()
    assert draw.is_latest[draw.is_duplicate].all()


def test_ratings_are_rounded_and_clipped_stars() -> None:
    draw = draw_reviews(generate_world(small_spec(sigma=1.5)))
    assert set(np.unique(draw.rating).tolist()) == {1, 2, 3, 4, 5}
    noisy_enough = np.abs(draw.rating - draw.true_score).mean()
    assert 0.5 < noisy_enough < 2.0


def test_activity_and_popularity_are_heavy_tailed() -> None:
    world = generate_world(SampleSpec(n_users=2000, n_items=400, n_reviews=30000))
    draw = draw_reviews(world)
    per_item = np.sort(np.bincount(draw.item, minlength=400))[::-1]
    assert per_item[:40].sum() > 0.3 * per_item.sum()  # top 10% of items take over 30% of reviews
    per_user = world.user_review_counts
    assert per_user.min() >= MIN_REVIEWS_PER_USER and per_user.max() > 8 * np.median(per_user)


def test_timestamps_fall_in_the_release_years() -> None:
    for release, last_year in (("2014", 2015), ("2018", 2019), ("2023", 2024)):
        draw = draw_reviews(generate_world(small_spec(release)))
        years = draw.timestamp.astype("datetime64[s]").astype("datetime64[Y]").astype(int) + 1970
        assert years.max() <= last_year and years.max() - years.min() >= 3


def test_impossible_review_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        generate_world(SampleSpec(n_users=10, n_items=10, n_reviews=1000, duplicate_fraction=0.0))


def test_users_review_items_they_like_when_choice_affinity_is_on() -> None:
    def mean_affinity(spec: SampleSpec) -> float:
        world = generate_world(spec)
        draw = draw_reviews(world)
        return float(np.einsum("nk,nk->n", world.user_factors[draw.user], world.item_factors[draw.item]).mean())

    spec = SampleSpec(n_users=2000, n_items=400, n_reviews=30000)
    assert spec.choice_affinity > 0  # the default: the demo's learned rankers need personal choice to beat popularity
    neutral = SampleSpec(n_users=2000, n_items=400, n_reviews=30000, choice_affinity=0.0)
    assert mean_affinity(spec) > mean_affinity(neutral) + 0.2


def test_zero_choice_affinity_keeps_the_popularity_only_draw() -> None:
    spec = small_spec(choice_affinity=0.0)
    world = generate_world(spec)
    users = np.repeat(np.arange(spec.n_users, dtype=np.int32), world.user_review_counts)
    expected = _distinct_items_per_user(
        np.random.default_rng([spec.seed, 0x2E71]), users, spec.n_items, world.item_popularity
    )
    draw = draw_reviews(world)
    np.testing.assert_array_equal(draw.item[: len(users)], expected)


def test_negative_choice_affinity_is_refused() -> None:
    with pytest.raises(ValueError, match="choice_affinity"):
        small_spec(choice_affinity=-1.0)
