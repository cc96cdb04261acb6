"""The structural interface evaluation needs from a recommender.

Evaluation deliberately depends on this protocol instead of ``rec_pipeline.models`` so it never pays the
TensorFlow import and can score any object that answers these three questions (including small numpy-backed
models in tests).
"""

from __future__ import annotations

from collections.abc import Sequence
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
