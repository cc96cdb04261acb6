"""The one interface every recommender implements (Cornac/implicit style).

Evaluation code relies on exactly ``predict``, ``score_users`` and ``item_ids``; ``recommend`` is written once
here on top of ``score_users`` so every model ranks, filters and breaks ties the same way.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl

from rec_pipeline.models.artifacts import atomic_directory, read_manifest, write_manifest
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.vocabulary import IdVocabulary

RATING_MIN = 1.0
RATING_MAX = 5.0
# Scores handled per recommend() batch: bounds memory at ~32 MB of float64 whatever the catalogue size.
_SCORES_PER_BATCH = 4_000_000

RECOMMENDATION_SCHEMA = {"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String, "score": pl.Float64}


def clip_ratings(values: np.ndarray) -> np.ndarray:
    """Ratings live on a 1..5 star scale; clipping never hurts RMSE and keeps outputs interpretable."""
    return np.clip(np.asarray(values, dtype=np.float32), RATING_MIN, RATING_MAX)


class Recommender(abc.ABC):
    """Base class: id vocabularies, ranking and atomic save/load; subclasses supply fitting and scoring."""

    kind: ClassVar[str]

    def __init__(self) -> None:
        self._users: IdVocabulary | None = None
        self._items: IdVocabulary | None = None
        self._options: TrainOptions | None = None

    # ----- configuration -------------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, so ``load`` can rebuild the same model; override when there are any."""
        return {}

    # ----- fitting and scoring -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, data: TrainingData, options: TrainOptions | None = None,
            logger: logging.Logger | None = None) -> TrainingHistory:
        """Learn from ``data.train`` (``data.validation`` for early stopping); returns the training curves."""

    @abc.abstractmethod
    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """Predicted ratings (float32, clipped to 1..5) for aligned pairs; unseen ids get a fallback estimate."""

    @abc.abstractmethod
    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        """Predicted rating of every item in ``item_ids`` order: array [len(user_ids), n_items]."""

    @property
    def item_ids(self) -> list[str]:
        """Items the model can rank, in the column order of ``score_users``."""
        return self._vocab("items").ids

    @property
    def user_ids(self) -> list[str]:
        return self._vocab("users").ids

    @property
    def is_fitted(self) -> bool:
        return self._items is not None

    @property
    def options(self) -> TrainOptions | None:
        return self._options

    def _vocab(self, which: str) -> IdVocabulary:
        vocabulary = self._users if which == "users" else self._items
        if vocabulary is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return vocabulary

    # ----- ranking ---------------------------------------------------------------------------------------------
    def recommend(
        self,
        user_ids: Sequence[str],
        n: int,
        exclude: Mapping[str, Collection[str]] | None = None,
        batch_users: int | None = None,
    ) -> pl.DataFrame:
        """Top-``n`` items per user (user_id, rank 1..n, item_id, score), skipping items in ``exclude[user]``.

        Users are scored in batches and ranked with a vectorized argpartition, so memory stays bounded for
        large catalogues. Ties are broken by item order, which keeps the output deterministic. A user with fewer
        than ``n`` unexcluded items gets fewer rows; duplicate users in ``user_ids`` are ranked once.
        """
        if n < 1:
            raise ValueError("n must be positive")
        exclude = exclude or {}
        users = list(dict.fromkeys(str(user) for user in user_ids))
        item_array = np.asarray(self.item_ids, dtype=object)
        n_items = len(item_array)
        if not users or n_items == 0:
            return pl.DataFrame(schema=RECOMMENDATION_SCHEMA)
        column_of = {item: column for column, item in enumerate(item_array)}
        k = min(n, n_items)
        batch = batch_users or max(1, min(4096, _SCORES_PER_BATCH // n_items))
        frames: list[pl.DataFrame] = []
        for start in range(0, len(users), batch):
            chunk = users[start:start + batch]
            scores = np.array(self.score_users(chunk), dtype=np.float64)  # a copy: excluded cells are overwritten
            for row, user in enumerate(chunk):
                seen = exclude.get(user)
                if seen:
                    columns = [column_of[item] for item in seen if item in column_of]
                    scores[row, columns] = -np.inf
            # Negated so ascending partition/sort gives best-first; item column breaks ties deterministically.
            top = np.sort(np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            keep = np.isfinite(top_scores)
            rows, ranks = np.nonzero(keep)
            frames.append(
                pl.DataFrame(
                    {
                        "user_id": np.asarray(chunk, dtype=object)[rows].tolist(),
                        "rank": (ranks + 1).astype(np.int32),
                        "item_id": item_array[top[keep]].tolist(),
                        "score": top_scores[keep],
                    },
                    schema=RECOMMENDATION_SCHEMA,
                )
            )
        return pl.concat(frames)

    # ----- persistence -------------------------------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write the model (weights, vocabularies, options, arrays, ``model.json``) atomically to ``directory``."""
        directory = Path(directory)
        users, items = self._vocab("users"), self._vocab("items")
        with atomic_directory(directory) as tmp:
            users.save(tmp / "users.parquet")
            items.save(tmp / "items.parquet")
            self._save_state(tmp)
            options = self._options.to_dict() if self._options is not None else None
            write_manifest(tmp, self.kind, self.get_config(), {"options": options})
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> Self:
        """Rebuild a model saved by ``save``; it answers queries without the training data."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        if manifest["kind"] != cls.kind:
            raise ValueError(f"{directory} holds a {manifest['kind']!r} model, not {cls.kind!r}")
        model = cls(**manifest.get("config", {}))
        model._users = IdVocabulary.load(directory / "users.parquet")
        model._items = IdVocabulary.load(directory / "items.parquet")
        if manifest.get("options") is not None:
            model._options = TrainOptions.from_dict(manifest["options"])
        model._load_state(directory)
        return model

    @abc.abstractmethod
    def _save_state(self, directory: Path) -> None:
        """Write model-specific files into ``directory`` (a fresh temporary directory)."""

    @abc.abstractmethod
    def _load_state(self, directory: Path) -> None:
        """Read what ``_save_state`` wrote; vocabularies and options are already restored."""
