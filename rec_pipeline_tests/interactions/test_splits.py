import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rec_pipeline.interactions.kcore import kcore
from rec_pipeline.interactions.splits import SplitOptions, check_splits, split_interactions


def _frame(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [f"u{u}" for u, _, _ in rows],
            "item_id": [f"i{i}" for _, i, _ in rows],
            "rating": [3.0] * len(rows),
            "timestamp": [t for _, _, t in rows],
        },
        schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float32, "timestamp": pl.Int64},
    )


triples = st.lists(
    st.tuples(st.integers(0, 15), st.integers(0, 10), st.integers(0, 1000)),
    max_size=200,
    unique_by=lambda t: (t[0], t[1]),
)


@settings(max_examples=50, deadline=None)
@given(triples, st.sampled_from(["temporal", "random"]), st.integers(0, 3))
def test_splits_partition_the_rows_and_evaluate_only_known_users_and_items(rows, method, seed) -> None:
    frame = kcore(_frame(rows), 2).frame
    result = split_interactions(frame, SplitOptions(method=method, seed=seed))
    total = result.train.height + result.validation.height + result.test.height
    assert total == frame.height
    assert check_splits(result) == []


def test_temporal_split_leaves_each_users_latest_rating_for_test() -> None:
    # Each user's order of items is rotated, so every item is someone's latest and also in training.
    rows = [(u, i, (i - u) % 5) for u in range(5) for i in range(5)]
    result = split_interactions(_frame(rows), SplitOptions(method="temporal"))
    assert result.moved_to_train == 0
    latest = {r[0]: r[1] for r in result.test.select("user_id", "item_id").iter_rows()}
    assert latest == {f"u{u}": f"i{(u + 4) % 5}" for u in range(5)}
    second = {r[0]: r[1] for r in result.validation.select("user_id", "item_id").iter_rows()}
    assert second == {f"u{u}": f"i{(u + 3) % 5}" for u in range(5)}


def test_evaluation_rows_of_items_unknown_to_training_are_moved_and_counted() -> None:
    rows = [(u, i, 100 * u + i) for u in range(4) for i in range(5)]  # i4 is everyone's latest, i3 the one before
    result = split_interactions(_frame(rows), SplitOptions(method="temporal"))
    assert result.moved_to_train == 8  # i4 (test) and i3 (validation) of each user
    assert check_splits(result) == []


def test_random_split_is_seeded_and_stratified_by_user() -> None:
    rows = [(u, i, i) for u in range(20) for i in range(10)]
    a = split_interactions(_frame(rows), SplitOptions(method="random", seed=1))
    b = split_interactions(_frame(rows), SplitOptions(method="random", seed=1))
    c = split_interactions(_frame(rows), SplitOptions(method="random", seed=2))
    assert a.test.equals(b.test) and not a.test.sort("user_id", "item_id").equals(c.test.sort("user_id", "item_id"))
    per_user = a.test.group_by("user_id").len()["len"]
    assert per_user.min() == per_user.max() == 1


def test_unknown_split_method_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown split method"):
        split_interactions(_frame([(0, 0, 0)]), SplitOptions(method="weekly"))  # type: ignore[arg-type]
