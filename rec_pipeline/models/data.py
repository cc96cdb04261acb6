"""What every recommender consumes (ratings, optional item content) and what training reports back.

Kept free of TensorFlow so the Dagster assets and the evaluation code can build and inspect these objects
without paying the TensorFlow import.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

RATING_COLUMNS = ("user_id", "item_id", "rating")

Distribution = Literal["default", "mirrored", "one_device"]


@dataclass(frozen=True)
class ItemContent:
    """Side information per item: one text vector and one image embedding, each with a presence mask.

    Masks exist because many catalogue items have no description or no downloadable image; a zero vector alone
    would be indistinguishable from a real (if unusual) embedding.
    """

    item_ids: list[str]
    text_vectors: np.ndarray
    text_mask: np.ndarray
    image_vectors: np.ndarray
    image_mask: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if len(set(self.item_ids)) != n:
            raise ValueError("ItemContent.item_ids contains duplicates")
        arrays = {
            "text_vectors": np.asarray(self.text_vectors, dtype=np.float32),
            "text_mask": np.asarray(self.text_mask, dtype=bool),
            "image_vectors": np.asarray(self.image_vectors, dtype=np.float32),
            "image_mask": np.asarray(self.image_mask, dtype=bool),
        }
        for name, array in arrays.items():
            expected_ndim = 2 if name.endswith("vectors") else 1
            if array.ndim != expected_ndim or array.shape[0] != n:
                raise ValueError(f"ItemContent.{name} has shape {array.shape}; expected {n} rows, {expected_ndim}-d")
            if expected_ndim == 2 and array.shape[1] == 0:
                raise ValueError(f"ItemContent.{name} has zero width; pass a 1-wide zero array with a False mask")
            object.__setattr__(self, name, array)
        object.__setattr__(self, "item_ids", [str(item) for item in self.item_ids])

    @property
    def text_dim(self) -> int:
        return int(self.text_vectors.shape[1])

    @property
    def image_dim(self) -> int:
        return int(self.image_vectors.shape[1])

    def aligned_to(self, item_ids: list[str]) -> ItemContent:
        """Reorder to ``item_ids`` (items without content get zero vectors and a False mask)."""
        position = {item: row for row, item in enumerate(self.item_ids)}
        rows = np.array([position.get(item, -1) for item in item_ids], dtype=np.int64)
        present = rows >= 0
        safe = np.where(present, rows, 0)

        def take(array: np.ndarray) -> np.ndarray:
            taken = array[safe] if len(array) else np.zeros((len(rows), *array.shape[1:]), array.dtype)
            taken[~present] = 0
            return taken

        return ItemContent(
            item_ids=list(item_ids),
            text_vectors=take(self.text_vectors),
            text_mask=take(self.text_mask) & present,
            image_vectors=take(self.image_vectors),
            image_mask=take(self.image_mask) & present,
        )


def _check_ratings(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    missing = [column for column in RATING_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} frame lacks columns {missing}")
    return frame.with_columns(
        pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String), pl.col("rating").cast(pl.Float32)
    )


@dataclass(frozen=True)
class TrainingData:
    """Train/validation ratings (user_id, item_id, rating, timestamp) plus optional item content.

    Validation drives early stopping only; the test split never enters a model.
    """

    train: pl.DataFrame
    validation: pl.DataFrame | None = None
    content: ItemContent | None = None

    def __post_init__(self) -> None:
        train = _check_ratings(self.train, "train")
        if train.height == 0:
            raise ValueError("train frame is empty")
        object.__setattr__(self, "train", train)
        if self.validation is not None:
            object.__setattr__(self, "validation", _check_ratings(self.validation, "validation"))

    @property
    def has_validation(self) -> bool:
        return self.validation is not None and self.validation.height > 0


@dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters shared by every model; model-specific sizes live on the model constructors.

    ``learning_rate=None`` means "the model's own default" (AutoRec and MF want larger steps than the MLPs).
    ``id_dropout`` is the rate at which training replaces a user/item id by the reserved "unknown" index, so the
    neural models learn a sensible answer for users and items they have never seen.
    """

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float | None = None
    embedding_dim: int = 32
    l2: float = 1e-4
    dropout: float = 0.2
    early_stopping_patience: int = 3
    early_stopping_monitor: str = "val_loss"
    seed: int = 42
    checkpoint_dir: Path | None = None
    tensorboard_dir: Path | None = None
    mixed_precision: bool = False
    distribution: Distribution = "default"
    id_dropout: float = 0.02
    verbose: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.embedding_dim < 1:
            raise ValueError("epochs, batch_size and embedding_dim must be positive")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.id_dropout < 1.0:
            raise ValueError("dropout rates must lie in [0, 1)")
        if self.distribution not in ("default", "mirrored", "one_device"):
            raise ValueError(f"unknown distribution {self.distribution!r}")
        for name in ("checkpoint_dir", "tensorboard_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    def learning_rate_or(self, default: float) -> float:
        return default if self.learning_rate is None else float(self.learning_rate)

    def to_dict(self) -> dict[str, Any]:
        payload = dataclasses.asdict(self)
        return {key: (str(value) if isinstance(value, Path) else value) for key, value in payload.items()}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in payload.items() if key in known})


@dataclass
class TrainingHistory:
    """Per-epoch curves and throughput of one ``fit``; ``best_epoch`` is 1-based (the weights kept).

    ``epoch_seconds`` are the training wall times of each epoch (validation included), so throughput can be read
    per epoch: the first one also pays graph tracing.
    """

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    rmse: list[float] = field(default_factory=list)
    val_rmse: list[float] = field(default_factory=list)
    best_epoch: int = 1
    epochs_run: int = 1
    examples_per_second: float = 0.0
    wall_seconds: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def best_val_rmse(self) -> float | None:
        if not self.val_rmse:
            return None
        return float(self.val_rmse[self.best_epoch - 1])

    def to_dict(self) -> dict[str, Any]:
        payload = dataclasses.asdict(self)
        # NaN/inf are not valid JSON, and Dagster metadata rejects them.
        for key in ("loss", "val_loss", "rmse", "val_rmse"):
            payload[key] = [value if math.isfinite(value) else None for value in payload[key]]
        return payload
