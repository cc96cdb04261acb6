"""A tiny numpy-backed model implementing ``ScoringModel`` for real (a lookup table, not a mock)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from rec_pipeline.schema import INTERACTION_SCHEMA


class TableModel:
    """Scores come from a per-user row of a table; unknown users get ``default``; unknown items predict ``fallback``."""

    def __init__(
        self, item_ids: Sequence[str], rows: Mapping[str, Sequence[float]], default: float = 0.0, fallback: float = 3.0
    ) -> None:
        self._items = list(item_ids)
        self._column = {item: column for column, item in enumerate(self._items)}
        self._rows = {user: np.asarray(row, dtype=np.float64) for user, row in rows.items()}
        self._default = default
        self._fallback = fallback
        self.score_calls: list[int] = []

    @property
    def item_ids(self) -> list[str]:
        return list(self._items)

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        self.score_calls.append(len(user_ids))
        blank = np.full(len(self._items), self._default)
        if not len(user_ids):
            return np.zeros((0, len(self._items)))
        return np.stack([self._rows.get(user, blank) for user in user_ids])

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        blank = np.full(len(self._items), self._default)
        return np.array(
            [
                self._rows.get(user, blank)[self._column[item]] if item in self._column else self._fallback
                for user, item in zip(user_ids, item_ids, strict=True)
            ]
        )


def ratings(rows: Sequence[tuple[str, str, float]]) -> pl.DataFrame:
    """An interactions frame in the project schema (timestamps are irrelevant to evaluation, so 0)."""
    return pl.DataFrame(
        [(user, item, rating, 0) for user, item, rating in rows], schema=INTERACTION_SCHEMA, orient="row"
    )
