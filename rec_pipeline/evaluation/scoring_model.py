"""The structural interface evaluation needs from a recommender.

Evaluation deliberately depends on this protocol instead of ``rec_pipeline.models`` so it never pays the
TensorFlow import and can score any object that answers these three questions (including small numpy-backed
models in tests). A model may also offer ``ranking_scores(user_ids)``: same shape as ``score_users``, but the
scores it wants to be ranked by (unclipped ratings, interaction counts, EASE scores); ranking uses it when present.
And ``unknown_item_scores(user_ids)``: one ranking score per user for an item the model has never seen (the
cold-item protocol ranks such items by it; ``cold_items.ColdFallback``). And ``ranking_pair_scores(user_ids,
item_ids)``: the ``ranking_scores`` of aligned (user, item) pairs, so the sampled protocol scores only each case's
positive and negatives instead of whole rows (for a model whose score needs a network per pair, that is
``n_negatives + 1`` pairs per case instead of the whole catalogue).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ScoringModel(Protocol):
    """What ``evaluate_model`` and ``cross_validate`` call; ``rec_pipeline.models.base.Recommender`` satisfies it."""

    @property
    def item_ids(self) -> list[str]:
        """Items the model can rank, in the column order of ``score_users``."""
        ...

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """Predicted ratings for aligned (user, item) pairs; unseen ids get the model's fallback estimate."""
        ...

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        """Predicted rating of every item in ``item_ids`` order: array ``[len(user_ids), len(item_ids)]``."""
        ...


def ranking_scores(model: ScoringModel, user_ids: Sequence[str]) -> np.ndarray:
    """What to rank ``model``'s items by: its ``ranking_scores`` when it has one, else its predicted ratings."""
    scorer = getattr(model, "ranking_scores", None)
    return scorer(user_ids) if callable(scorer) else model.score_users(user_ids)


def pair_scorer(model: ScoringModel) -> Callable[[Sequence[str], Sequence[str]], np.ndarray] | None:
    """The model's ``ranking_pair_scores`` when it has one (see the module docstring)."""
    scorer = getattr(model, "ranking_pair_scores", None)
    return scorer if callable(scorer) else None
