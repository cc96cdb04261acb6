"""Retry timing rules: Retry-After parsing, exponential backoff with seeded jitter, and the back-off between runs."""

from __future__ import annotations

import email.utils
import random

import pytest

from rec_pipeline.images.fetch import FetchOptions, backoff_delay, parse_retry_after, rerun_backoff

NOW = 1_700_000_000.0


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("7", now=NOW, cap=30.0) == 7.0


def test_retry_after_as_http_date_is_relative_to_now() -> None:
    header = email.utils.formatdate(NOW + 12, usegmt=True)
    assert parse_retry_after(header, now=NOW, cap=30.0) == pytest.approx(12.0)


def test_retry_after_in_the_past_means_now() -> None:
    assert parse_retry_after(email.utils.formatdate(NOW - 100, usegmt=True), now=NOW, cap=30.0) == 0.0


def test_retry_after_is_capped() -> None:
    assert parse_retry_after("86400", now=NOW, cap=30.0) == 30.0
    assert parse_retry_after(email.utils.formatdate(NOW + 86400, usegmt=True), now=NOW, cap=5.0) == 5.0


@pytest.mark.parametrize("header", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2024"])
def test_unparseable_retry_after_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW, cap=30.0) is None


def test_backoff_doubles_within_jitter_bounds_and_is_capped() -> None:
    rng = random.Random(0)
    for retry in range(8):
        ceiling = min(4.0, 0.5 * 2**retry)
        delay = backoff_delay(retry, base=0.5, cap=4.0, rng=rng)
        assert ceiling / 2 <= delay <= ceiling


def test_backoff_jitter_is_deterministic_for_a_seed_and_varies_between_seeds() -> None:
    def delays(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [backoff_delay(retry, base=1.0, cap=60.0, rng=rng) for retry in range(5)]

    assert delays(3) == delays(3)
    assert delays(3) != delays(4)


def test_the_back_off_between_runs_doubles_per_failed_run_up_to_the_cap() -> None:
    hour, week = 3600.0, 7 * 24 * 3600.0
    delays = [rerun_backoff(n, base=hour, cap=week) for n in range(1, 11)]
    assert delays[:4] == [hour, 2 * hour, 4 * hour, 8 * hour]
    assert delays[-1] == week and max(delays) == week
    assert rerun_backoff(10_000, base=hour, cap=week) == week  # no overflow after years of failed runs
    assert rerun_backoff(0, base=hour, cap=week) == 0.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_concurrency": 0},
        {"per_host_limit": 0},
        {"max_retries": -1},
        {"max_bytes": 0},
        {"resize_mode": "stretch"},
        {"output_format": "GIF"},
        {"image_size": (0, 10)},
        {"allowed_networks": ("10.0.0.0/33",)},
        {"rerun_backoff_base": -1.0},
        {"rerun_backoff_base": 7200.0, "rerun_backoff_max": 3600.0},
    ],
)
def test_invalid_options_are_rejected_at_construction(overrides: dict) -> None:
    with pytest.raises(ValueError):
        FetchOptions(**overrides)
