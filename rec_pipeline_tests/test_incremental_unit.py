"""``rec_pipeline.incremental``, the one skip-if-unchanged mechanism, on small frames and records."""

from __future__ import annotations

import polars as pl

from rec_pipeline.incremental import Record, reuse_by_key, reuse_record, unseen_share


def _doubled(calls: list[list[str]]):  # noqa: ANN202 - a test helper
    def compute(todo: pl.DataFrame) -> pl.DataFrame:
        calls.append(todo["key"].to_list())
        return todo.select("key", (pl.col("x") * 2).alias("value"))

    return compute


WANTED = pl.DataFrame({"item_id": ["a", "b", "c", "d"], "key": ["k1", "k2", "k2", "k3"], "x": [1, 2, 2, 3]})


def test_first_run_computes_each_distinct_key_once_and_keeps_the_rows_order() -> None:
    calls: list[list[str]] = []
    reuse = reuse_by_key(WANTED, "key", None, _doubled(calls), keep=["item_id"], values=["value"])
    assert calls == [["k1", "k2", "k3"]]
    assert reuse.frame.to_dict(as_series=False) == {"item_id": ["a", "b", "c", "d"], "value": [2, 4, 4, 6]}
    assert (reuse.computed_keys, reuse.computed_rows, reuse.reused_rows) == (3, 4, 0)


def test_only_new_keys_are_computed_and_the_rest_joined_back_from_the_previous_output() -> None:
    previous = pl.DataFrame({"item_id": ["a", "b", "zz"], "key": ["k1", "k2", "gone"], "value": [20, 40, 99]})
    calls: list[list[str]] = []
    reuse = reuse_by_key(WANTED, "key", previous, _doubled(calls), keep=["item_id"], values=["value"])
    assert calls == [["k3"]]
    # Reused values are the previous output's (20, 40), not recomputed (2, 4); a key no longer wanted is dropped.
    assert reuse.frame.to_dict(as_series=False) == {"item_id": ["a", "b", "c", "d"], "value": [20, 40, 40, 6]}
    assert (reuse.computed_keys, reuse.computed_rows, reuse.reused_rows) == (1, 1, 3)


def test_every_row_of_a_new_key_is_computed_without_distinct_and_inner_drops_rows_without_value() -> None:
    calls: list[list[str]] = []

    def compute(todo: pl.DataFrame) -> pl.DataFrame:
        calls.append(todo["item_id"].to_list())
        return todo.filter(pl.col("key") != "k3").select("key", (pl.col("x") * 2).alias("value"))

    reuse = reuse_by_key(WANTED, "key", None, compute, keep=["item_id"], values=["value"], distinct=False, how="inner")
    assert calls == [["a", "b", "c", "d"]]
    assert reuse.frame["item_id"].to_list() == ["a", "b", "c"]
    # A previous output without the value columns (an older format) is no cache at all.
    again = reuse_by_key(WANTED, "key", pl.DataFrame({"key": ["k1"]}), _doubled([]), keep=["item_id"], values=["value"])
    assert again.reused_rows == 0


def test_a_record_is_reused_only_when_its_key_matches_nothing_is_forced_and_its_output_is_sound() -> None:
    record = Record({"fingerprint": "f1", "code": "2"}, {"rows": 3})
    assert reuse_record(record, {"fingerprint": "f1", "code": "2"}) == (record, "unchanged")
    assert reuse_record(record, {"fingerprint": "f2", "code": "2"}) == (None, "inputs changed")
    assert reuse_record(None, "f1") == (None, "nothing recorded yet")
    assert reuse_record(record, record.key, force=True) == (None, "forced")
    reused, why = reuse_record(record, record.key, problem=lambda r: f"holds {r.payload['rows'] - 1} rows")
    assert reused is None and why == "recorded output unusable: holds 2 rows"
    assert reuse_record(record, record.key, problem="half the input is new") == (
        None,
        "recorded output unusable: half the input is new",
    )
    assert reuse_record(record, record.key, problem=None) == (record, "unchanged")


def test_unseen_share_counts_distinct_new_keys() -> None:
    assert unseen_share(["a", "b", "b", "c", "d"], {"a", "b"}) == 0.5
    assert unseen_share([], {"a"}) == 0.0


def test_the_key_can_be_kept_among_the_values() -> None:
    reuse = reuse_by_key(WANTED, "key", None, _doubled([]), keep=["item_id"], values=["value", "key"])
    assert reuse.frame.columns == ["item_id", "value", "key"] and reuse.frame["key"].to_list() == [
        "k1",
        "k2",
        "k2",
        "k3",
    ]
