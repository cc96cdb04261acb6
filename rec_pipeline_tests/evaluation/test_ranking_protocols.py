from __future__ import annotations

import numpy as np
import pytest

from rec_pipeline.evaluation.options import EvaluationOptions
from rec_pipeline.evaluation.ranking_protocols import RankingOutcome
from rec_pipeline.evaluation.ranking_protocols import rank_model as rank_candidates
from rec_pipeline_tests.evaluation.fakes import TableModel, ratings

ITEMS = ["a", "b", "c", "d", "e"]


def rank_model(model: TableModel, *args: object, **kwargs: object) -> RankingOutcome:
    """These scenarios keep train tiny, so the candidates are the table's items rather than train's."""
    return rank_candidates(model, *args, candidates=model.item_ids, **kwargs)  # type: ignore[arg-type]


def _scenario() -> tuple[TableModel, object, object]:
    # u1 rated a, b in train; ranks d(8) > c(3) > e(1) once a, b are masked. Only c is relevant (rating >= 4).
    model = TableModel(ITEMS, {"u1": [10, 9, 3, 8, 1]})
    train = ratings([("u1", "a", 5), ("u1", "b", 4), ("u4", "a", 3)])
    test = ratings(
        [
            ("u1", "c", 5),
            ("u1", "d", 2),
            ("u2", "e", 1),  # nothing relevant: skipped
            ("u3", "z", 5),  # relevant but outside the catalogue: dropped, then skipped
            ("u4", "a", 5),  # relevant but already rated in train: dropped, then skipped
        ]
    )
    return model, train, test


def test_full_protocol_masks_seen_items_and_matches_hand_computed_metrics() -> None:
    model, train, test = _scenario()
    outcome = rank_model(model, train, test, options=EvaluationOptions(ks=(1, 2)))
    assert outcome.metrics["hr@1"] == 0.0
    assert outcome.metrics["hr@2"] == 1.0
    assert outcome.metrics["recall@2"] == 1.0
    assert outcome.metrics["ndcg@2"] == pytest.approx(1 / np.log2(3))
    assert outcome.metrics["map@2"] == pytest.approx(0.5)
    assert outcome.metrics["coverage@1"] == pytest.approx(1 / 5)  # only d: a and b were seen
    assert outcome.protocol.startswith("full")


def test_users_without_rankable_relevant_items_are_skipped_and_counted() -> None:
    model, train, test = _scenario()
    outcome = rank_model(model, train, test, options=EvaluationOptions(ks=(2,)))
    assert outcome.n_test_users == 4
    assert outcome.n_users_evaluated == 1
    assert outcome.n_users_skipped == 3
    assert outcome.n_relevant_dropped == 2
    assert outcome.n_cases == 1


def test_all_test_items_relevant_option_counts_low_ratings_too() -> None:
    model, train, test = _scenario()
    options = EvaluationOptions(ks=(2,), all_test_items_relevant=True)
    outcome = rank_model(model, train, test, options=options)
    assert outcome.n_users_evaluated == 2  # u2's 1-star item is now relevant
    assert outcome.per_user["ndcg@2"][0] == pytest.approx(1.0)  # u1: d and c fill the top 2
    assert "all test items" in outcome.protocol


def test_seen_items_are_never_ranked_even_when_scored_highest() -> None:
    items = [f"i{n}" for n in range(6)]
    model = TableModel(items, {"u": [9, 9, 9, 9, 9, 1]})
    train = ratings([("u", item, 3) for item in items[:5]])
    outcome = rank_model(model, train, ratings([("u", "i5", 5)]), options=EvaluationOptions(ks=(1, 3)))
    assert outcome.metrics["hr@1"] == 1.0
    assert outcome.metrics["coverage@3"] == pytest.approx(1 / 6)


def test_validation_items_are_masked_when_validation_is_given() -> None:
    model = TableModel(["a", "b", "c"], {"u": [1, 9, 5]})
    train, test = ratings([("u", "a", 4)]), ratings([("u", "c", 5)])
    validation = ratings([("u", "b", 4)])
    options = EvaluationOptions(ks=(1,))
    assert rank_model(model, train, test, options=options).metrics["hr@1"] == 0.0
    assert rank_model(model, train, test, validation, options).metrics["hr@1"] == 1.0


def test_results_do_not_depend_on_the_user_batch_size() -> None:
    rng = np.random.default_rng(5)
    items = [f"i{n}" for n in range(40)]
    users = [f"u{n}" for n in range(25)]
    model = TableModel(items, {user: rng.normal(size=40) for user in users})
    pairs = [(user, items[j], float(rng.integers(1, 6))) for user in users for j in rng.choice(40, 8, replace=False)]
    train, test = ratings(pairs[::2]), ratings(pairs[1::2])
    for protocol in ("full", "sampled"):
        whole = rank_model(model, train, test, options=EvaluationOptions(protocol=protocol, ks=(5, 10), n_negatives=10))
        model.score_calls.clear()
        batched = rank_model(
            model, train, test, options=EvaluationOptions(protocol=protocol, ks=(5, 10), n_negatives=10, batch_users=4)
        )
        assert max(model.score_calls) <= 4
        if protocol == "full":
            assert batched.metrics == whole.metrics
        else:  # negatives are drawn in batch order, so only the deterministic coverage must agree
            assert batched.metrics["coverage@10"] == whole.metrics["coverage@10"]


def test_sampled_protocol_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(11)
    items = [f"i{n}" for n in range(300)]
    users = [f"u{n}" for n in range(10)]
    model = TableModel(items, {user: rng.normal(size=300) for user in users})
    test = ratings([(user, items[j], 5.0) for user in users for j in rng.choice(300, 3, replace=False)])
    train = ratings([("u0", "i0", 3.0)])

    def run(seed: int) -> np.ndarray:
        options = EvaluationOptions(protocol="sampled", n_negatives=20, seed=seed, ks=(5,))
        return rank_model(model, train, test, options=options).per_user["ndcg@5"]

    assert np.array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_sampled_negatives_exclude_every_rated_item() -> None:
    # Rated items (train and the non-relevant test item) outscore the positive; unrated ones do not.
    items = [f"i{n}" for n in range(30)]
    scores = np.zeros(30)
    scores[:5] = 100.0
    scores[5] = 50.0
    model = TableModel(items, {"u": scores})
    train = ratings([("u", item, 3.0) for item in items[:4]])
    test = ratings([("u", "i4", 2.0), ("u", "i5", 5.0)])
    options = EvaluationOptions(protocol="sampled", n_negatives=100, ks=(1,))
    outcome = rank_model(model, train, test, options=options)
    assert outcome.metrics["hr@1"] == 1.0
    assert outcome.n_cases == 1


def test_sampled_ties_rank_ahead_of_the_positive() -> None:
    items = [f"i{n}" for n in range(20)]
    model = TableModel(items, {"u": np.full(20, 3.0)})
    outcome = rank_model(
        model,
        ratings([("u", "i0", 4.0)]),
        ratings([("u", "i1", 5.0)]),
        options=EvaluationOptions(protocol="sampled", n_negatives=5, ks=(5, 6)),
    )
    assert outcome.metrics["hr@5"] == 0.0
    assert outcome.metrics["hr@6"] == 1.0
    assert outcome.metrics["ndcg@6"] == pytest.approx(1 / np.log2(7))


def test_nan_scores_are_rejected() -> None:
    model = TableModel(["a", "b"], {"u": [np.nan, 1.0]})
    with pytest.raises(ValueError, match="NaN"):
        rank_model(model, ratings([("u", "a", 3.0)]), ratings([("u", "b", 5.0)]))


def test_every_model_ranks_the_training_items_whatever_its_own_catalogue() -> None:
    # "wide" also knows an unrated item x (like the hybrid's metadata items) and scores it highest; "narrow" lacks
    # the training item c. Both are ranked on a, b, c: x is never ranked, c is a candidate narrow cannot score.
    train = ratings([("t", "a", 4.0), ("t", "b", 4.0), ("t", "c", 4.0), ("u", "a", 3.0)])
    test = ratings([("u", "b", 5.0), ("u", "x", 5.0)])
    wide = TableModel(["a", "b", "c", "x"], {"u": [1.0, 2.0, 3.0, 9.0]})
    narrow = TableModel(["a", "b"], {"u": [1.0, 2.0]})
    options = EvaluationOptions(ks=(1, 2))
    outcomes = [rank_candidates(model, train, test, options=options) for model in (wide, narrow)]
    for outcome in outcomes:
        assert (outcome.n_candidates, outcome.n_relevant_dropped, outcome.n_users_evaluated) == (3, 1, 1)
    assert outcomes[0].metrics["hr@1"] == 0.0 and outcomes[0].metrics["hr@2"] == 1.0  # c, then b
    assert outcomes[1].n_candidates_unscored == 1 and outcomes[1].metrics["hr@1"] == 1.0
    assert outcomes[0].metrics["coverage@1"] == pytest.approx(1 / 3)


def test_ties_are_broken_by_a_seeded_random_order_not_by_item_order() -> None:
    items = [f"i{n:02d}" for n in range(50)]
    users = [f"u{n}" for n in range(40)]
    constant = TableModel(items, {user: np.zeros(50) for user in users})
    # Every user's relevant item is the first in id order: id-order tie-breaking would give a perfect score.
    test = ratings([(user, items[0], 5.0) for user in users])
    train = ratings([(user, items[-1], 3.0) for user in users])
    outcome = rank_model(constant, train, test, options=EvaluationOptions(ks=(1, 10), seed=3))
    assert outcome.metrics["hr@1"] < 0.2
    assert outcome.metrics["hr@10"] == pytest.approx(10 / 49, abs=0.15)  # a random ranking's expectation
    again = rank_model(constant, train, test, options=EvaluationOptions(ks=(1, 10), seed=3))
    assert again.metrics == outcome.metrics
    other = rank_model(constant, train, test, options=EvaluationOptions(ks=(1, 10), seed=4))
    assert not np.array_equal(other.per_user["ndcg@10"], outcome.per_user["ndcg@10"])


def test_ranking_uses_unclipped_ranking_scores_when_the_model_has_them() -> None:
    class Clipped(TableModel):
        def score_users(self, user_ids: list[str]) -> np.ndarray:
            return np.minimum(super().score_users(user_ids), 5.0)

        def ranking_scores(self, user_ids: list[str]) -> np.ndarray:
            return super().score_users(user_ids)

    # b is predicted at 5.4 and c at 6.0: both clip to 5, only the unclipped scores know c is better.
    model = Clipped(["a", "b", "c"], {"u": [1.0, 5.4, 6.0]})
    outcome = rank_model(
        model, ratings([("u", "a", 3.0)]), ratings([("u", "c", 5.0)]), options=EvaluationOptions(ks=(1,))
    )
    assert outcome.metrics["hr@1"] == 1.0


class Float32Table(TableModel):
    """The same table, scored in float32 as the factorized models return it."""

    def score_users(self, user_ids: list[str]) -> np.ndarray:  # type: ignore[override]
        return super().score_users(user_ids).astype(np.float32)


def _random_ranking_data(seed: int) -> tuple[list[str], dict[str, list[float]], object]:
    rng = np.random.default_rng(seed)
    items = [f"i{n:02d}" for n in range(40)]
    # Scores rounded to a few levels: many ties at and inside the top K, which the seeded keys must settle.
    rows = {f"u{n}": np.round(rng.normal(size=40), 1).tolist() for n in range(30)}
    pairs = [(user, item, float(rng.integers(1, 6))) for user in rows for item in rng.choice(items, 6, replace=False)]
    return items, rows, ratings(pairs)


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_do_not_depend_on_candidate_order_or_score_dtype(seed: int) -> None:
    items, rows, frame = _random_ranking_data(seed)
    train, test = frame[::2], frame[1::2]
    options = EvaluationOptions(ks=(3, 10), seed=seed)
    reference = rank_candidates(TableModel(items, rows), train, test, options=options, candidates=items)
    shuffled = list(np.random.default_rng(seed).permutation(items))
    reordered = TableModel(
        shuffled, {user: [row[items.index(item)] for item in shuffled] for user, row in rows.items()}
    )
    for model, candidates in (
        (reordered, items),
        (TableModel(items, rows), shuffled),
        (Float32Table(items, rows), items),
    ):
        outcome = rank_candidates(model, train, test, options=options, candidates=candidates)
        for key, values in reference.per_user.items():
            assert np.array_equal(outcome.per_user[key], values), key
        assert outcome.metrics == reference.metrics


class PairTableModel(TableModel):
    """The same table, also answering ``ranking_pair_scores``; counts the pairs it is asked for."""

    pair_calls: int = 0

    def ranking_pair_scores(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        self.pair_calls += len(user_ids)
        return self.predict(user_ids, item_ids)


def test_sampled_protocol_scores_only_the_cases_pairs_when_the_model_can() -> None:
    """Same metrics as from full rows (ties included: integer scores), full rows only for the coverage users."""
    rng = np.random.default_rng(3)
    items = [f"i{n}" for n in range(60)]
    users = [f"u{n:02d}" for n in range(30)]
    table = {user: rng.integers(0, 4, size=60).astype(float) for user in users}
    pairs = [(user, items[j], float(rng.integers(3, 6))) for user in users for j in rng.choice(60, 6, replace=False)]
    train, test = ratings(pairs[::2]), ratings(pairs[1::2])
    for coverage_users in (1000, 7):
        options = EvaluationOptions(protocol="sampled", ks=(5,), n_negatives=15, seed=4, coverage_users=coverage_users)
        rows, by_pair = TableModel(items, table), PairTableModel(items, table)
        expected = rank_model(rows, train, test, options=options)
        got = rank_model(by_pair, train, test, options=options)
        for key in ("ndcg@5", "recall@5", "hr@5", "map@5"):
            assert np.array_equal(got.per_user[key], expected.per_user[key]), key
        assert by_pair.pair_calls == got.n_cases * 16  # the positive and 15 negatives per case
        assert sum(by_pair.score_calls) == got.n_coverage_users == min(coverage_users, got.n_users_evaluated)
        if coverage_users >= got.n_users_evaluated:
            assert got.metrics["coverage@5"] == expected.metrics["coverage@5"]
