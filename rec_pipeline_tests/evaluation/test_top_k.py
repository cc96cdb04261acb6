from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rec_pipeline.evaluation.top_k import TieBreaker, column_order_keys, id_hashes, top_k_columns


def test_top_k_columns_orders_best_first() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.8, 0.2]])
    assert top_k_columns(scores, 3, column_order_keys(5)).tolist() == [[1, 3, 2]]


def test_ties_follow_the_keys_not_the_columns() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0, 3.0]])
    keys = np.array([[0, 9, 1, 7, 3], [4, 3, 2, 1, 0]], dtype=np.uint64)
    assert top_k_columns(scores, 2, lambda rows: keys[rows]).tolist() == [[2, 4], [4, 3]]


def test_continuous_scores_never_ask_for_keys() -> None:
    def refuse(rows: np.ndarray) -> np.ndarray:
        raise AssertionError("no tie, no keys")

    scores = np.random.default_rng(0).normal(size=(50, 200))
    expected = np.argsort(-scores, axis=1)[:, :10]
    assert np.array_equal(top_k_columns(scores, 10, refuse), expected)


def test_tie_keys_depend_on_ids_and_seed_not_on_list_order() -> None:
    items = [f"i{n}" for n in range(30)]
    keys = TieBreaker(items, seed=3).keys(["alice", "bob"])
    reordered = TieBreaker(items[::-1], seed=3).keys(["bob"])
    assert np.array_equal(keys[1], reordered[0][::-1])
    assert not np.array_equal(keys[0], keys[1])  # each user gets their own order among ties
    assert not np.array_equal(keys, TieBreaker(items, seed=4).keys(["alice", "bob"]))
    assert np.array_equal(id_hashes(["x", "y"], 1), id_hashes(["x", "y"], 1))


def test_a_constant_row_ranks_in_a_seeded_random_order_not_in_column_order() -> None:
    items = [f"i{n:03d}" for n in range(100)]
    ties = TieBreaker(items, seed=0)
    top = top_k_columns(np.zeros((1, 100)), 10, ties.for_rows(["u"]))[0]
    assert top.tolist() != list(range(10))
    assert np.array_equal(top, top_k_columns(np.zeros((1, 100)), 10, TieBreaker(items, seed=0).for_rows(["u"]))[0])
    assert np.array_equal(top, np.argsort(ties.keys(["u"])[0])[:10])


def test_excluded_items_come_last() -> None:
    scores = np.array([[-np.inf, 1.0, -np.inf, 1.0]])
    top = top_k_columns(scores, 4, TieBreaker(list("abcd")).for_rows(["u"]))[0]
    assert set(top[:2]) == {1, 3} and set(top[2:]) == {0, 2}


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 20)), elements=st.integers(0, 3)),
    st.integers(1, 25),
    st.integers(0, 1000),
)
def test_top_k_columns_equals_a_full_sort_by_score_then_key(scores: np.ndarray, k: int, seed: int) -> None:
    # Small integer scores force many ties, at the cut and inside the top K.
    keys = np.random.default_rng(seed).permutation(scores.size).reshape(scores.shape).astype(np.uint64)
    expected = np.lexsort((keys, -scores), axis=1)[:, :k]
    assert np.array_equal(top_k_columns(scores.astype(float), k, lambda rows: keys[rows]), expected)


def test_malformed_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        top_k_columns(np.zeros((2, 3)), 1, lambda rows: np.zeros((len(rows), 2), dtype=np.uint64))


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(2, 30)), elements=st.integers(0, 4)),
    st.integers(1, 12),
)
def test_float32_scores_rank_like_their_float64_copy(scores: np.ndarray, k: int) -> None:
    # Rankings run on the model's own dtype (float32 for the factorized models); widening must not be needed.
    scores = np.where(scores == 0, -np.inf, scores / 3.0)
    ties = TieBreaker([f"i{n}" for n in range(scores.shape[1])], seed=2).for_rows([f"u{n}" for n in range(len(scores))])
    narrow = scores.astype(np.float32)
    assert np.array_equal(top_k_columns(narrow, k, ties), top_k_columns(narrow.astype(np.float64), k, ties))


def test_keys_are_the_same_whatever_the_batch_size() -> None:
    items = [f"i{n}" for n in range(3000)]  # keys are mixed ~20 rows at a time: 70 users span several chunks
    users = [f"u{n}" for n in range(70)]
    ties = TieBreaker(items, seed=9)
    assert np.array_equal(ties.keys(users)[40:45], ties.keys(users[40:45]))
