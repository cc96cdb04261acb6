"""The noise floor: exact E[observed | r*] for rounded, clipped ratings, checked against simulation."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from rec_pipeline.sample import draw_reviews, generate_world
from rec_pipeline.sample.truth import expected_rating, noise_floor_rmse, rating_level_probabilities
from rec_pipeline.sample.world import observe
from rec_pipeline_tests.sample.conftest import small_spec


def test_level_probabilities_sum_to_one_and_clip_into_the_ends() -> None:
    probs = rating_level_probabilities(np.array([-3.0, 1.0, 3.2, 4.9, 9.0]), sigma=0.5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 0] > 0.999 and probs[-1, -1] > 0.999


def test_expected_rating_without_noise_is_the_rounded_clipped_score() -> None:
    scores = np.array([0.2, 1.4, 2.6, 3.49, 4.51, 6.0])
    np.testing.assert_array_equal(expected_rating(scores, 0.0), [1, 1, 3, 3, 5, 5])


def test_expected_rating_matches_simulated_means() -> None:
    rng = np.random.default_rng(1)
    scores = np.array([1.2, 2.7, 3.9, 4.6])
    draws = np.stack([observe(rng, np.repeat(scores[k], 200_000), 0.5) for k in range(4)])
    np.testing.assert_allclose(expected_rating(scores, 0.5), draws.mean(axis=1), atol=0.01)


def test_noise_floor_lies_between_half_sigma_and_sigma_plus_0_3() -> None:
    draw = draw_reviews(generate_world(small_spec(sigma=0.5)))
    latest = draw.is_latest
    floor = noise_floor_rmse(draw.true_score[latest], draw.rating[latest], 0.5)
    assert 0.25 <= floor <= 0.8


def test_noise_floor_matches_a_monte_carlo_estimate() -> None:
    """Redraw the noise many times for the same r*: the mean floor over redraws equals the reported one."""
    world = generate_world(small_spec(sigma=0.5))
    draw = draw_reviews(world)
    r_star = draw.true_score[draw.is_latest]
    rng = np.random.default_rng(5)
    simulated = [noise_floor_rmse(r_star, observe(rng, r_star, 0.5), 0.5) for _ in range(40)]
    reported = noise_floor_rmse(r_star, draw.rating[draw.is_latest], 0.5)
    assert reported == pytest.approx(np.mean(simulated), abs=4 * np.std(simulated) + 1e-3)
    assert np.std(simulated) < 0.01  # the estimate is stable at this size


def test_truth_files_describe_the_world(samples: dict) -> None:
    _, manifest = samples["2018"]
    truth = json.loads(manifest.truth_path.read_text())
    assert {"spec", "sigma", "mu", "formula", "counts", "noise_floor_rmse", "expected_noise_floor_rmse"} <= set(truth)
    assert 0.25 <= truth["noise_floor_rmse"] <= 0.8
    assert truth["noise_floor_rmse"] == pytest.approx(truth["expected_noise_floor_rmse"], abs=0.03)
    items = pl.read_parquet(manifest.truth_items_path)
    users = pl.read_parquet(manifest.truth_users_path)
    assert items.height == 60 and users.height == 300
    assert items["factors"].list.len().unique().to_list() == [8]
    assert set(items.columns) >= {"item_id", "topic", "style", "bias", "factors"}
    assert set(users.columns) >= {"user_id", "bias", "factors"}
