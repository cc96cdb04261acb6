import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rec_pipeline.interactions.dedup import latest_per_pair
from rec_pipeline.interactions.kcore import is_kcore, kcore

pairs = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=0, max_size=150, unique=True)


def _frame(rows: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [f"u{u}" for u, _ in rows],
            "item_id": [f"i{i}" for _, i in rows],
            "rating": [4.0] * len(rows),
            "timestamp": list(range(len(rows))),
        },
        schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float32, "timestamp": pl.Int64},
    )


def _brute_force_kcore(rows: set[tuple[int, int]], k: int) -> set[tuple[int, int]]:
    while True:
        users: dict[int, int] = {}
        items: dict[int, int] = {}
        for u, i in rows:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        kept = {(u, i) for u, i in rows if users[u] >= k and items[i] >= k}
        if kept == rows:
            return kept
        rows = kept


@settings(max_examples=60, deadline=None)
@given(pairs, st.integers(1, 5))
def test_kcore_matches_a_brute_force_fixed_point(rows: list[tuple[int, int]], k: int) -> None:
    result = kcore(_frame(rows), k)
    got = {(int(u[1:]), int(i[1:])) for u, i in result.frame.select("user_id", "item_id").iter_rows()}
    assert got == _brute_force_kcore(set(rows), k)
    assert is_kcore(result.frame, k)


def test_one_pass_is_not_enough_and_kcore_iterates() -> None:
    # u0 has 2 ratings; removing it drops i1 below 2, which then drops u1.
    rows = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 2), (3, 3)]
    result = kcore(_frame(rows), 2)
    assert result.iterations >= 3 and is_kcore(result.frame, 2)


def test_dedup_keeps_the_latest_review_of_a_pair() -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "item_id": ["x", "x", "y", "x"],
            "rating": [1.0, 5.0, 3.0, 2.0],
            "timestamp": [10, 20, 5, 1],
            "source_line": [1, 2, 3, 4],
        }
    )
    out = latest_per_pair(frame).collect().sort("user_id", "item_id")
    assert out.select("user_id", "item_id", "rating").rows() == [("a", "x", 5.0), ("a", "y", 3.0), ("b", "x", 2.0)]


def test_dedup_breaks_timestamp_ties_by_the_later_line() -> None:
    frame = pl.DataFrame(
        {"user_id": ["a", "a"], "item_id": ["x", "x"], "rating": [5.0, 1.0], "timestamp": [7, 7], "source_line": [1, 2]}
    )
    assert latest_per_pair(frame).collect()["rating"].to_list() == [1.0]
