"""Item cold start: hold a seeded share of the items that have content out of training, then measure every model
on their interactions.

Why a protocol of its own: the normal splits guarantee that every validation and test item appears in training,
so the content towers of the hybrid and the two-tower model, which exist to score items nobody has rated yet,
were never measured. Here:

- ``select_cold_items`` picks ``fraction`` of the items that have content (a text vector or an image embedding)
  and appear in the interactions, seeded. All their interactions (train, validation and test alike) leave the
  splits (``without_items``) and form the cold set; no model sees them in training.
- RMSE is measured on every cold interaction of a user known to training (cold start of items, not of users).
- Ranking: each user's relevant cold items are ranked among ``cold_candidates``: every cold item plus a seeded
  sample of warm (training) items, the same list for every model. Items the user rated in any warm split are
  excluded as usual.
- A model that cannot score an item it never saw (MF, NCF, popularity, EASE ...) is not dropped: ``ColdFallback``
  gives such items the model's item-agnostic score (``unknown_item_scores``: the global or user mean for rating
  models, 0 for the count and EASE rankers), so it ranks cold items below or among the warm ones as it would in
  production, and its cold RMSE is that of its fallback prediction. The content models are compared with these.

Metric names get a ``_cold`` stem suffix (``cold_metric_name``): ``rmse_cold``, ``ndcg_cold@10``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import polars as pl

from rec_pipeline.evaluation.evaluate import EvaluationResult, evaluate_model
from rec_pipeline.evaluation.options import EvaluationOptions
from rec_pipeline.evaluation.scoring_model import ScoringModel, ranking_scores

DEFAULT_COLD_ITEM_FRACTION = 0.1
# Warm items among the cold ranking's candidates, per cold item: half the list is cold, so a model that ranks cold
# items last (popularity) and one that ranks them by content are told apart at K = 10.
WARM_CANDIDATES_PER_COLD_ITEM = 1.0
# An id no catalogue uses, to ask a model without ``unknown_item_scores`` for its prediction for an unseen item.
UNSEEN_ITEM = "\x00unseen item"
# Metrics reported for the cold protocol (the popularity segments and Pearson say nothing new there).
_COLD_METRICS = ("rmse", "mae")


def select_cold_items(
    interactions: pl.DataFrame, content_items: Collection[str], fraction: float, seed: int
) -> list[str]:
    """A seeded ``fraction`` (rounded, at least one when positive) of the items that are in ``interactions`` and
    have content, sorted; empty when ``fraction`` is 0 or no item qualifies."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"cold_item_fraction must lie in [0, 1), got {fraction}")
    interacted = set(interactions.get_column("item_id").cast(pl.String).unique().drop_nulls().to_list())
    eligible = sorted(interacted & {str(item) for item in content_items})
    if fraction == 0.0 or not eligible:
        return []
    n = min(len(eligible), max(1, round(fraction * len(eligible))))
    chosen = np.random.default_rng(seed).choice(len(eligible), size=n, replace=False)
    return sorted(eligible[index] for index in chosen)


def without_items(frame: pl.DataFrame, items: Collection[str]) -> pl.DataFrame:
    """``frame`` without the rows of ``items`` (the warm part of a split)."""
    return frame.filter(~pl.col("item_id").cast(pl.String).is_in(list(items))) if items else frame


def only_items(frame: pl.DataFrame, items: Collection[str]) -> pl.DataFrame:
    """The rows of ``items`` only (the cold part of a split)."""
    return frame.filter(pl.col("item_id").cast(pl.String).is_in(list(items)))


def cold_candidates(
    cold_items: Collection[str],
    warm_items: Collection[str],
    seed: int,
    warm_per_cold: float = WARM_CANDIDATES_PER_COLD_ITEM,
) -> list[str]:
    """Every cold item plus a seeded sample of ``warm_per_cold`` warm items per cold item, sorted."""
    cold = sorted({str(item) for item in cold_items})
    warm = sorted({str(item) for item in warm_items} - set(cold))
    n_warm = min(len(warm), round(warm_per_cold * len(cold)))
    sample = np.random.default_rng([seed, 0xC01D]).choice(len(warm), size=n_warm, replace=False)
    return sorted([*cold, *(warm[int(index)] for index in sample)])


def cold_metric_name(metric: str) -> str:
    """``rmse`` -> ``rmse_cold``, ``ndcg@10`` -> ``ndcg_cold@10``."""
    stem, at, k = metric.partition("@")
    return f"{stem}_cold{at}{k}"


class ColdFallback:
    """A ``ScoringModel`` over ``candidates``: the model's own ranking scores for items it knows, its item-agnostic
    score for the others (``unknown_item_scores(user_ids)`` when it has one, else its predicted rating for an
    unseen item), so every candidate is ranked and none is dropped as unscorable. Predictions pass through."""

    def __init__(self, model: ScoringModel, candidates: Sequence[str]) -> None:
        self._model = model
        self._candidates = [str(item) for item in candidates]
        column = {item: index for index, item in enumerate(model.item_ids)}
        self._columns = np.array([column.get(item, -1) for item in self._candidates], dtype=np.int64)

    @property
    def item_ids(self) -> list[str]:
        return list(self._candidates)

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        return self._model.predict(user_ids, item_ids)

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        return self.ranking_scores(user_ids)

    def ranking_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        users = list(user_ids)
        known = self._columns >= 0
        scores = np.empty((len(users), len(self._candidates)), dtype=np.float64)
        if known.any():
            scores[:, known] = np.asarray(ranking_scores(self._model, users), dtype=np.float64)[:, self._columns[known]]
        if not known.all():
            scores[:, ~known] = self._unknown_item_scores(users)[:, None]
        return scores

    def _unknown_item_scores(self, users: list[str]) -> np.ndarray:
        scorer = getattr(self._model, "unknown_item_scores", None)
        values = scorer(users) if callable(scorer) else self._model.predict(users, [UNSEEN_ITEM] * len(users))
        return np.asarray(values, dtype=np.float64).reshape(len(users))


def evaluate_cold_items(
    model: ScoringModel,
    train: pl.DataFrame,
    cold: pl.DataFrame,
    candidates: Sequence[str],
    history: pl.DataFrame | None = None,
    options: EvaluationOptions | None = None,
) -> EvaluationResult:
    """``model`` on the cold interactions (see the module docstring); metric names as ``evaluate_model``'s.

    ``train`` is the warm training split (who is a known user, and what each user has rated); ``history`` the
    other warm splits, whose items are excluded from each user's ranking too; ``candidates`` from
    ``cold_candidates``, the same for every model.
    """
    known_users = train.select(pl.col("user_id").cast(pl.String)).unique()
    cold = cold.with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
    cold = cold.join(known_users, on="user_id", how="semi")
    return evaluate_model(
        ColdFallback(model, candidates), train, cold, validation=history, options=options, candidates=candidates
    )


def cold_metrics(result: EvaluationResult) -> dict[str, float | None]:
    """The cold protocol's RMSE, MAE and ranking metrics under their ``_cold`` names."""
    return {
        cold_metric_name(metric): value
        for metric, value in result.metrics.items()
        if metric in _COLD_METRICS or "@" in metric
    }
