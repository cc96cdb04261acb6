"""The two ranking protocols (``full`` and ``sampled``), vectorized over batches of users.

Shared rules, whatever the protocol:

- Every model ranks the same candidate set: by default the items seen in ``train`` (``candidates`` overrides
  it). A model's own catalogue does not matter: the hybrid knows every metadata item and the others only rated
  ones, and ranking figures over different catalogues are not comparable. A candidate the model cannot score
  ranks last (``n_candidates_unscored`` counts them); items only the model knows are ignored.
- Items the user rated in train (and validation, when given) are never ranked: their scores become ``-inf``.
- Equal scores are ordered by a seeded random key per (user, item) (``top_k.TieBreaker``, ``options.seed``), never
  by item order, so a constant model scores like a random ranking.
- Models are ranked on ``ranking_scores`` when they have it (unclipped: clipping at 5 stars would tie a generous
  user's favourites), else on ``score_users``.
- Relevant items are the user's test items rated >= the threshold (or all test items, see
  ``EvaluationOptions``). A relevant item that cannot be ranked, because it is not a candidate or the user
  already rated it in train/validation, is dropped and counted in ``n_relevant_dropped`` (as Cornac does with
  unknown items): no model could rank it, so it would only scale every model's recall down alike.
- Test users left with no relevant item are skipped and counted in ``n_users_skipped``; metrics average over
  the evaluated users.
- ``coverage@K`` always comes from each evaluated user's top K over all their unrated candidates, in both
  protocols, so it measures the same thing whichever protocol the accuracy metrics use.

``sampled`` specifics: each (user, relevant item) case is ranked against ``n_negatives`` candidates drawn
uniformly, without replacement, from items the user has not rated anywhere (train, validation or test). Negatives
scoring the same as the positive rank ahead of it (pessimistic), so a constant model cannot score well. Per-case
metrics are averaged per user first, then over users, so heavy users do not dominate, as in ``full``. A model
with ``ranking_pair_scores`` is asked for each case's positive and negatives only (O(cases x n_negatives) scores,
not O(users x items)), and ``coverage@K`` then comes from the full rows of the first ``coverage_users`` users
(``n_coverage_users`` in the outcome); the metrics are the same as from full rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from rec_pipeline.evaluation.negative_sampling import sample_unrated
from rec_pipeline.evaluation.options import EvaluationOptions
from rec_pipeline.evaluation.ranking_metrics import (
    RANKING_METRICS,
    catalog_coverage,
    metric_key,
    ranking_metrics_from_hits,
)
from rec_pipeline.evaluation.scoring_model import ScoringModel, pair_scorer, ranking_scores
from rec_pipeline.evaluation.top_k import TieBreaker, top_k_columns

# Scores per score_users call when batch_users is not given: ~16 MB of float64, whatever the catalogue size.
_SCORES_PER_BATCH = 2_000_000


@dataclass(frozen=True)
class RankingOutcome:
    """Mean ranking metrics over evaluated users plus the counts needed to read them honestly.

    ``users`` are the evaluated users in the row order of ``per_user``; bootstrap intervals resample them.
    """

    protocol: str
    metrics: dict[str, float | None]
    n_test_users: int
    n_users_evaluated: int
    n_users_skipped: int
    n_relevant_dropped: int
    n_cases: int
    n_candidates: int = 0
    n_candidates_unscored: int = 0
    n_coverage_users: int = 0  # users whose top K coverage@K counts
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    users: list[str] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class _Prepared:
    """Everything in index space: evaluated users in row order, pairs as sorted (row, column) arrays.

    Columns index ``candidates``; ``model_columns[c]`` is the candidate's column in ``score_users`` (-1: unscored).
    """

    users: list[str]
    candidates: list[str]
    model_columns: np.ndarray
    seen_rows: np.ndarray
    seen_cols: np.ndarray
    relevant_rows: np.ndarray
    relevant_cols: np.ndarray
    rated_rows: np.ndarray
    rated_cols: np.ndarray
    n_test_users: int
    n_relevant_dropped: int

    @property
    def n_items(self) -> int:
        return len(self.candidates)


def default_candidates(train: pl.DataFrame) -> list[str]:
    """The shared candidate set: every item seen in training, sorted (order is irrelevant to the ranking)."""
    return sorted(train.get_column("item_id").cast(pl.String).unique().drop_nulls().to_list())


def rank_model(
    model: ScoringModel,
    train: pl.DataFrame,
    test: pl.DataFrame,
    validation: pl.DataFrame | None = None,
    options: EvaluationOptions | None = None,
    logger: logging.Logger | None = None,
    candidates: Sequence[str] | None = None,
) -> RankingOutcome:
    """Ranking metrics of ``model`` on ``test`` under ``options.protocol`` (see the module docstring).

    ``candidates`` defaults to the items of ``train``; pass the same list for every model that is compared.
    """
    options = options or EvaluationOptions()
    prepared = _prepare(model, train, test, validation, options, candidates)
    n_users = len(prepared.users)
    k_max = max(options.ks)
    batch = options.batch_users or max(1, min(4096, _SCORES_PER_BATCH // max(prepared.n_items, 1)))
    rng = np.random.default_rng(options.seed)
    ties = TieBreaker(prepared.candidates, options.seed)
    recommended = {k: np.zeros(prepared.n_items, dtype=bool) for k in options.ks}
    per_user = {metric_key(m, k): np.zeros(n_users) for m in RANKING_METRICS for k in options.ks}
    unscored = prepared.model_columns < 0
    catalog = list(model.item_ids)  # once: a model may build the list on every call
    n_model = len(catalog)
    # Sampled protocol and a model that scores pairs: cases are scored on their positive and negatives alone,
    # and only the first ``coverage_users`` users' full rows are ranked, for coverage@K (module docstring).
    by_pair = pair_scorer(model) if options.protocol == "sampled" else None
    n_full_rows = n_users if by_pair is None else min(n_users, options.coverage_users)
    n_cases = 0
    for start in range(0, n_users, batch):
        stop = min(start + batch, n_users)
        users = prepared.users[start:stop]
        full_stop = min(stop, n_full_rows)
        scores = top = finite_top = None
        if start < full_stop:
            scores = _scores(model, users[: full_stop - start], prepared.model_columns, n_model)
            seen_slice = _row_slice(prepared.seen_rows, start, full_stop)
            scores[prepared.seen_rows[seen_slice] - start, prepared.seen_cols[seen_slice]] = -np.inf
            top = top_k_columns(scores, k_max, ties.for_rows(users[: full_stop - start]))
            finite_top = np.isfinite(np.take_along_axis(scores, top, axis=1))
            for k in options.ks:
                recommended[k][top[:, :k][finite_top[:, :k]]] = True
        rel_slice = _row_slice(prepared.relevant_rows, start, stop)
        rel_rows = prepared.relevant_rows[rel_slice] - start
        rel_cols = prepared.relevant_cols[rel_slice]
        if options.protocol == "full":
            assert top is not None and finite_top is not None  # every row is ranked in full
            batch_metrics = _full_batch(top, finite_top, rel_rows, rel_cols, prepared.n_items, options)
        else:
            rated_slice = _row_slice(prepared.rated_rows, start, stop)
            rated = np.zeros((stop - start, prepared.n_items), dtype=bool)
            rated[prepared.rated_rows[rated_slice] - start, prepared.rated_cols[rated_slice]] = True
            rated[:, unscored] = True  # a candidate the model cannot score is no fair negative
            if by_pair is None:
                assert scores is not None
                score_of = _from_matrix(scores)
            else:
                score_of = _from_pairs(by_pair, users, catalog, prepared.model_columns)
            batch_metrics = _sampled_batch(score_of, rated, rel_rows, rel_cols, options, rng)
            n_cases += rel_rows.size
        for key, values in batch_metrics.items():
            per_user[key][start:stop] = values
        if logger is not None:
            logger.info("ranking (%s): %d/%d users scored", options.protocol, stop, n_users)
    if options.protocol == "full":
        n_cases = int(prepared.relevant_rows.size)
    metrics: dict[str, float | None] = {
        key: (float(values.mean()) if n_users else None) for key, values in per_user.items()
    }
    for k in options.ks:
        metrics[metric_key("coverage", k)] = catalog_coverage(recommended[k]) if n_users else None
    return RankingOutcome(
        protocol=options.protocol_name,
        metrics=metrics,
        n_test_users=prepared.n_test_users,
        n_users_evaluated=n_users,
        n_users_skipped=prepared.n_test_users - n_users,
        n_relevant_dropped=prepared.n_relevant_dropped,
        n_cases=n_cases,
        n_candidates=prepared.n_items,
        n_candidates_unscored=int(unscored.sum()),
        n_coverage_users=n_full_rows,
        per_user=per_user,
        users=list(prepared.users),
    )


def _full_batch(
    top: np.ndarray,
    finite_top: np.ndarray,
    rel_rows: np.ndarray,
    rel_cols: np.ndarray,
    n_items: int,
    options: EvaluationOptions,
) -> dict[str, np.ndarray]:
    """Hits of each row's top K among its relevant (row, column) pairs, which arrive sorted: one binary search
    per top-K cell instead of a users x items relevance matrix per batch."""
    n_rows = top.shape[0]
    relevant = rel_rows.astype(np.int64) * n_items + rel_cols
    cells = np.arange(n_rows, dtype=np.int64)[:, None] * n_items + top
    position = np.minimum(np.searchsorted(relevant, cells), max(relevant.size - 1, 0))
    hits = (relevant[position] == cells) & finite_top if relevant.size else np.zeros_like(finite_top)
    n_relevant = np.bincount(rel_rows, minlength=n_rows)
    return ranking_metrics_from_hits(hits, n_relevant, options.ks)


ScoreOf = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _from_matrix(scores: np.ndarray) -> ScoreOf:
    """Scores of (batch row, candidate column) pairs read from a batch's full score rows."""
    return lambda rows, columns: scores[rows, columns]


def _from_pairs(
    by_pair: Callable[[Sequence[str], Sequence[str]], np.ndarray],
    users: list[str],
    catalog: list[str],
    model_columns: np.ndarray,
) -> ScoreOf:
    """Scores of (batch row, candidate column) pairs asked of the model pair by pair; a candidate it cannot score
    gets ``-inf``, as in full rows."""

    def score_of(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        model_column = model_columns[columns]
        known = model_column >= 0
        raw = np.asarray(
            by_pair([users[row] for row in rows[known]], [catalog[column] for column in model_column[known]])
        ).reshape(-1)
        if raw.size != int(known.sum()):
            raise ValueError(f"ranking_pair_scores returned {raw.size} scores for {int(known.sum())} pairs")
        if raw.size and np.isnan(raw.min()):
            raise ValueError("ranking_pair_scores returned NaN scores; a broken model must not be ranked")
        out = np.full(rows.shape, -np.inf, dtype=np.result_type(raw.dtype, np.float32))
        out[known] = raw
        return out

    return score_of


def _sampled_batch(
    score_of: ScoreOf,
    rated: np.ndarray,
    rel_rows: np.ndarray,
    rel_cols: np.ndarray,
    options: EvaluationOptions,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    negatives, valid = sample_unrated(rng, rated, rel_rows, options.n_negatives)
    positive = score_of(rel_rows, rel_cols)
    negative_scores = score_of(np.repeat(rel_rows, negatives.shape[1]), negatives.reshape(-1)).reshape(negatives.shape)
    rank = ((negative_scores >= positive[:, None]) & valid).sum(axis=1)
    # One relevant item per case: a hit matrix with a single True at the positive's rank (if within K).
    k_max = max(options.ks)
    hits = np.zeros((rel_rows.size, k_max), dtype=bool)
    within = rank < k_max
    hits[np.flatnonzero(within), rank[within]] = True
    per_case = ranking_metrics_from_hits(hits, np.ones(rel_rows.size, dtype=np.int64), options.ks)
    n_rows = rated.shape[0]
    n_per_user = np.bincount(rel_rows, minlength=n_rows)
    return {
        key: np.bincount(rel_rows, weights=values, minlength=n_rows) / n_per_user for key, values in per_case.items()
    }


def _scores(model: ScoringModel, users: list[str], model_columns: np.ndarray, n_model: int) -> np.ndarray:
    """Candidate scores as a copy (masking writes into it, never into a model's cached array), in the model's own
    float dtype: float32 scores stay float32, which halves the memory every later pass reads and ranks alike."""
    raw = np.asarray(ranking_scores(model, users))
    if raw.shape != (len(users), n_model):
        raise ValueError(f"score_users returned shape {raw.shape}, expected {(len(users), n_model)}")
    if not np.issubdtype(raw.dtype, np.floating):
        raw = raw.astype(np.float64)
    if raw.size and np.isnan(raw.min()):  # min propagates NaN: one cheap pass instead of a boolean matrix
        raise ValueError("score_users returned NaN scores; a broken model must not be ranked")
    scored = model_columns >= 0
    if scored.all() and n_model == model_columns.size and np.array_equal(model_columns, np.arange(n_model)):
        return raw.copy()
    scores = np.full((len(users), model_columns.size), -np.inf, dtype=raw.dtype)
    scores[:, scored] = raw[:, model_columns[scored]]
    return scores


def _row_slice(sorted_rows: np.ndarray, start: int, stop: int) -> slice:
    lo, hi = np.searchsorted(sorted_rows, [start, stop])
    return slice(int(lo), int(hi))


def _prepare(
    model: ScoringModel,
    train: pl.DataFrame,
    test: pl.DataFrame,
    validation: pl.DataFrame | None,
    options: EvaluationOptions,
    candidates: Sequence[str] | None,
) -> _Prepared:
    catalog = [str(item) for item in model.item_ids]
    if len(set(catalog)) != len(catalog):
        raise ValueError("model.item_ids contains duplicates")
    candidate_list = (
        list(dict.fromkeys(str(item) for item in candidates)) if candidates is not None else default_candidates(train)
    )
    model_column = {item: column for column, item in enumerate(catalog)}
    model_columns = np.array([model_column.get(item, -1) for item in candidate_list], dtype=np.int64)
    if options.protocol == "full":
        # Candidates in the model's column order (unscored ones last): when they are the model's items, a batch
        # of scores is then copied as it comes instead of gathered column by column. Rankings do not depend on
        # the order (ties follow per-id keys); the sampled protocol keeps it, as its negatives are drawn by position.
        order = np.argsort(np.where(model_columns < 0, len(catalog), model_columns), kind="stable")
        candidate_list = [candidate_list[position] for position in order]
        model_columns = model_columns[order]
    items = pl.DataFrame(
        {"item_id": candidate_list, "col": np.arange(len(candidate_list), dtype=np.int64)},
        schema={"item_id": pl.String, "col": pl.Int64},
    )
    test_pairs = _pairs(test, with_rating=True)
    history = pl.concat([_pairs(frame) for frame in (train, validation) if frame is not None])
    test_users = test_pairs.select("user_id").unique()
    history = history.join(test_users, on="user_id", how="semi").unique()

    relevant = (
        test_pairs
        if options.all_test_items_relevant
        else test_pairs.filter(pl.col("rating") >= options.relevance_threshold)
    )
    relevant = relevant.select("user_id", "item_id").unique()
    rankable = relevant.join(items, on="item_id", how="inner").join(history, on=["user_id", "item_id"], how="anti")
    n_dropped = relevant.height - rankable.height

    users = sorted(rankable.get_column("user_id").unique().to_list())
    rows = pl.DataFrame(
        {"user_id": users, "row": np.arange(len(users), dtype=np.int64)}, schema={"user_id": pl.String, "row": pl.Int64}
    )

    def index_pairs(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        indexed = frame.join(rows, on="user_id").join(items, on="item_id").select("row", "col").unique()
        indexed = indexed.sort("row", "col")
        return indexed.get_column("row").to_numpy(), indexed.get_column("col").to_numpy()

    seen_rows, seen_cols = index_pairs(history)
    relevant_rows, relevant_cols = index_pairs(rankable)
    if options.protocol == "sampled":
        rated_rows, rated_cols = index_pairs(pl.concat([history, test_pairs.select("user_id", "item_id")]))
    else:
        rated_rows = rated_cols = np.zeros(0, dtype=np.int64)
    return _Prepared(
        users=users,
        candidates=candidate_list,
        model_columns=model_columns,
        seen_rows=seen_rows,
        seen_cols=seen_cols,
        relevant_rows=relevant_rows,
        relevant_cols=relevant_cols,
        rated_rows=rated_rows,
        rated_cols=rated_cols,
        n_test_users=test_users.height,
        n_relevant_dropped=n_dropped,
    )


def _pairs(frame: pl.DataFrame, with_rating: bool = False) -> pl.DataFrame:
    """(user_id, item_id[, rating]) as strings/floats, whatever integer or categorical ids a caller passes."""
    wanted = ["user_id", "item_id", "rating"] if with_rating else ["user_id", "item_id"]
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        raise ValueError(f"interaction frame lacks columns {missing}; has {frame.columns}")
    casts = [pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)]
    if with_rating:
        casts.append(pl.col("rating").cast(pl.Float64))
    return frame.select(casts)
