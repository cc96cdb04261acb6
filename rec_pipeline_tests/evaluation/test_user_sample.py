"""The evaluation user sample: capped, seeded, whole users only, the same users in every split."""

from __future__ import annotations

import polars as pl
import pytest

from rec_pipeline.evaluation import sample_users


def _frame(users: list[str], per_user: int = 2) -> pl.DataFrame:
    rows = [(user, f"i{n}", float(1 + n % 5)) for user in users for n in range(per_user)]
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64}, orient="row")


def _users(frame: pl.DataFrame | None) -> set[str]:
    assert frame is not None
    return set(frame.get_column("user_id").to_list())


def test_below_the_cap_nothing_is_sampled() -> None:
    test, validation = _frame(["a", "b"]), _frame(["b", "c"])
    sample = sample_users({"test": test, "validation": validation, "cold": None}, 3, seed=0)
    assert not sample.sampled and sample.n_users == sample.n_sampled == 3
    assert sample.frames["test"] is test and sample.frames["cold"] is None
    assert sample.describe() == "all 3 evaluation users"


def test_the_cap_keeps_whole_users_shared_across_splits() -> None:
    users = [f"u{n:03d}" for n in range(200)]
    test, validation = _frame(users[:150], per_user=3), _frame(users[50:], per_user=2)
    sample = sample_users({"test": test, "validation": validation}, 40, seed=7)
    kept = _users(sample.frames["test"]) | _users(sample.frames["validation"])
    assert sample.sampled and sample.n_users == 200 and sample.n_sampled == 40 and len(kept) == 40
    # Whole users: every kept user keeps all their rows in each split.
    assert sample.required("test").height == 3 * len(kept & set(users[:150]))
    assert sample.required("validation").height == 2 * len(kept & set(users[50:]))
    assert "40 of 200" in sample.describe()


def test_the_draw_depends_on_the_seed_and_not_on_row_order() -> None:
    users = [f"u{n:03d}" for n in range(100)]
    test = _frame(users)
    first = _users(sample_users({"test": test}, 10, seed=1).frames["test"])
    shuffled = _users(
        sample_users({"test": test.sample(fraction=1.0, shuffle=True, seed=3)}, 10, seed=1).frames["test"]
    )
    other_seed = _users(sample_users({"test": test}, 10, seed=2).frames["test"])
    assert first == shuffled and first != other_seed


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_eval_users"):
        sample_users({"test": _frame(["a"])}, 0, seed=0)
