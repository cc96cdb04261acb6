"""The one interface every recommender implements (Cornac/implicit style).

Evaluation code relies on ``predict``, ``score_users``/``ranking_scores`` and ``item_ids``; ``recommend`` is
written once here on top of ``ranking_scores`` so every model ranks, filters and breaks ties the same way as the
evaluation does (``rec_pipeline.evaluation.top_k``: seeded random order among equal scores, never id order).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import polars as pl
from keras import ops

from rec_pipeline.evaluation.cold_items import UNSEEN_ITEM
from rec_pipeline.evaluation.top_k import TieBreaker, top_k_columns
from rec_pipeline.models.artifacts import atomic_directory, read_manifest, write_manifest
from rec_pipeline.models.data import ModelNotApplicable as ModelNotApplicable  # defined Keras-free, kept here too
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


class PairScorer(Protocol):
    """Scores (user row, item row) pairs from arrays precomputed once per user and per item (rows as in the
    vocabularies: 0 = unknown), so ranking never runs a network per pair. ``LatentFactors`` is the factorized
    case; NCF/NeuMF's ``SplitMLP`` precomputes what it can and runs only the MLP per pair."""

    @property
    def n_items(self) -> int:
        """Scored items: rows 1..n."""
        ...

    def scores(self, user_index: np.ndarray) -> np.ndarray:
        """float32 ``[len(user_index), n_items]``."""
        ...

    def item_scores(self, user_index: np.ndarray, item_row: int) -> np.ndarray:
        """float32 score of one item row for each user row."""
        ...

    def pair_scores(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """float32 scores of aligned (user row, item row) pairs."""
        ...


# Pairs per chunk when LatentFactors scores aligned (user, item) pairs: bounds the gathered rows to ~50 MB.
_PAIRS_PER_CHUNK = 1 << 18


@dataclass(frozen=True)
class LatentFactors:
    """Scores that factorize as ``offset + user_bias[u] + item_bias[i] + user_vectors[u] . item_vectors[i]``.

    Rows are model indices: row 0 is the unknown user/item, rows 1..n the vocabulary. MF, the hybrid (whose
    content towers only change the item side), the two-tower ranker and AutoRec all score this way, so each
    computes its vectors once (after ``fit`` and ``load``) and ranking a batch of users against every item is
    one matrix product instead of a forward pass per (user, item) pair. The biases ride inside the product as
    two extra columns (``[u, b_u + offset, 1] . [i, 1, b_i]``), so the score matrix is written once.
    """

    user_vectors: np.ndarray
    user_bias: np.ndarray
    item_vectors: np.ndarray
    item_bias: np.ndarray
    offset: float = 0.0
    _users: np.ndarray = field(init=False, repr=False)
    _items: np.ndarray = field(init=False, repr=False)
    _scored_items: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        users = np.asarray(self.user_vectors, dtype=np.float32)
        items = np.asarray(self.item_vectors, dtype=np.float32)
        if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
            raise ValueError(f"user vectors {users.shape} and item vectors {items.shape} must share their width")
        user_bias = np.asarray(self.user_bias, dtype=np.float32).reshape(-1)
        item_bias = np.asarray(self.item_bias, dtype=np.float32).reshape(-1)
        if len(user_bias) != len(users) or len(item_bias) != len(items):
            raise ValueError("one bias per user and per item row")
        augmented_users = np.hstack(
            [users, (user_bias + np.float32(self.offset))[:, None], np.ones((len(users), 1), np.float32)]
        )
        augmented_items = np.hstack([items, np.ones((len(items), 1), np.float32), item_bias[:, None]])
        object.__setattr__(self, "_users", np.ascontiguousarray(augmented_users))
        object.__setattr__(self, "_items", np.ascontiguousarray(augmented_items))
        # Transposed once here, so ``scores`` is a plain matrix product on the backend.
        object.__setattr__(self, "_scored_items", ops.convert_to_tensor(np.ascontiguousarray(augmented_items[1:].T)))

    @property
    def n_items(self) -> int:
        """Scored items (rows 1..n of ``item_vectors``)."""
        return int(self._items.shape[0]) - 1

    def scores(self, user_index: np.ndarray) -> np.ndarray:
        """float32 ``[len(user_index), n_items]``: every item (rows 1..n) for each user row.

        The product runs on the Keras backend, not numpy: in a process where TensorFlow's thread pools are alive,
        OpenBLAS' own threads contended with them and the same product took 10x longer (15 ms against 1.3 ms
        for 100 users x 20k items on 2 cores).
        """
        users = self._users[np.asarray(user_index)]
        return np.asarray(ops.convert_to_numpy(ops.matmul(users, self._scored_items)), dtype=np.float32)

    def item_scores(self, user_index: np.ndarray, item_row: int) -> np.ndarray:
        """float32 score of one item row (0: the unknown item) for each user row."""
        return self._users[np.asarray(user_index)] @ self._items[item_row]

    def pair_scores(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """float32 scores of aligned (user row, item row) pairs, gathered in bounded chunks."""
        user_index, item_index = np.asarray(user_index), np.asarray(item_index)
        out = np.empty(len(user_index), dtype=np.float32)
        for start in range(0, len(user_index), _PAIRS_PER_CHUNK):
            stop = start + _PAIRS_PER_CHUNK
            out[start:stop] = np.einsum(
                "ij,ij->i", self._users[user_index[start:stop]], self._items[item_index[start:stop]]
            )
        return out


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
    def fit(
        self, data: TrainingData, options: TrainOptions | None = None, logger: logging.Logger | None = None
    ) -> TrainingHistory:
        """Learn from ``data.train`` (``data.validation`` for early stopping); returns the training curves."""

    @abc.abstractmethod
    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """Predicted ratings (float32, clipped to 1..5) for aligned pairs; unseen ids get a fallback estimate."""

    @abc.abstractmethod
    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        """Predicted rating of every item in ``item_ids`` order: array [len(user_ids), n_items]."""

    def ranking_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        """What items are ranked by, same shape as ``score_users``; rating models return unclipped ratings.

        Clipping to 1..5 is right for a rating but wrong for a ranking: every item predicted above 5 stars would
        tie at 5. Rankers (popularity, EASE) return their own scores here. The default is ``score_users``.
        """
        return self.score_users(user_ids)

    def unknown_item_scores(self, user_ids: Sequence[str]) -> np.ndarray:
        """Ranking score of an item the model has never seen, one per user (float64, item-agnostic).

        The cold-item protocol ranks held-out items by it for models that cannot score them: a rating model's
        fallback (global or user mean, on the scale of its ``ranking_scores``), 0 for the count and EASE rankers.
        The default is the predicted rating of an unseen item.
        """
        return np.asarray(self.predict(user_ids, [UNSEEN_ITEM] * len(user_ids)), dtype=np.float64)

    @property
    def item_ids(self) -> list[str]:
        """Items the model can rank, in the column order of ``score_users``."""
        return self._vocab("items").ids

    @property
    def user_ids(self) -> list[str]:
        return self._vocab("users").ids

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
        candidates: Collection[str] | None = None,
        seed: int = 0,
    ) -> pl.DataFrame:
        """Top-``n`` items per user (user_id, rank 1..n, item_id, score), skipping items in ``exclude[user]``.

        ``candidates`` limits what may be recommended (the pipeline passes the items seen in training, the set
        every model is evaluated on); by default every item the model knows. ``score`` is the ranking score
        (``ranking_scores``: an unclipped rating for rating models, a count or EASE score for rankers). Users are
        scored in batches and ranked by partial selection, so memory stays bounded for large catalogues. Equal
        scores are ordered by a random key per (user, item) seeded by ``seed``, exactly as in evaluation: never by
        item order. A user with fewer than ``n`` unexcluded items gets fewer rows; duplicate users are ranked once.
        """
        if n < 1:
            raise ValueError("n must be positive")
        exclude = exclude or {}
        users = list(dict.fromkeys(str(user) for user in user_ids))
        model_items = self.item_ids
        if candidates is None:
            columns = np.arange(len(model_items))
        else:
            allowed = {str(item) for item in candidates}
            columns = np.array([c for c, item in enumerate(model_items) if item in allowed], dtype=np.int64)
        item_array = np.asarray(model_items, dtype=object)[columns]
        n_items = len(item_array)
        if not users or n_items == 0:
            return pl.DataFrame(schema=RECOMMENDATION_SCHEMA)
        column_of = {item: column for column, item in enumerate(item_array)}
        every_column = n_items == len(model_items)
        ties = TieBreaker(item_array.tolist(), seed)
        batch = batch_users or max(1, min(4096, _SCORES_PER_BATCH // max(len(model_items), 1)))
        frames: list[pl.DataFrame] = []
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            raw = np.asarray(self.ranking_scores(chunk))
            # A copy either way (excluded cells are overwritten and must not touch a model's cached array), in the
            # model's float dtype: float32 ranks exactly as its float64 widening would, on half the memory.
            dtype = raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.float64
            scores = np.array(raw if every_column else raw[:, columns], dtype=dtype)
            for row, user in enumerate(chunk):
                seen = exclude.get(user)
                if seen:
                    scores[row, [column_of[item] for item in seen if item in column_of]] = -np.inf
            top = top_k_columns(scores, n, ties.for_rows(chunk))
            top_scores = np.take_along_axis(scores, top, axis=1)
            keep = np.isfinite(top_scores)
            rows, ranks = np.nonzero(keep)
            frames.append(
                pl.DataFrame(
                    {
                        "user_id": np.asarray(chunk, dtype=object)[rows].tolist(),
                        "rank": (ranks + 1).astype(np.int32),
                        "item_id": item_array[top[keep]].tolist(),
                        "score": top_scores[keep].astype(np.float64),
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
