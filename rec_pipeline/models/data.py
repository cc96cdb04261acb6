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
Backend = Literal["tensorflow", "jax", "torch"]
LearningRateScaling = Literal["none", "linear", "sqrt"]
BACKENDS: tuple[str, ...] = ("tensorflow", "jax", "torch")


class ModelNotApplicable(ValueError):
    """The model declines this data (e.g. EASE on a catalogue too large for its items x items matrix).

    Raised by ``fit`` before any heavy work, with a message that says why and which setting changes it, so the
    pipeline can skip the model instead of failing the run. Defined here, Keras-free, so a caller can import it
    before choosing the Keras backend.
    """


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

    ``backend`` is the Keras backend the Keras models must train on (``rec_pipeline.models.backend``): Keras
    fixes it at its first import from ``KERAS_BACKEND``, so training fails fast, naming that variable, when the
    process runs another one. ``None`` accepts whichever backend Keras runs (``KERAS_BACKEND``, TensorFlow when
    unset); the pipeline's setting names one (default ``"tensorflow"``, the backend the pipeline is tuned for).

    Batch size and learning rate (``learning_rate_scaling``): every default rate was tuned at
    ``reference_batch_size`` examples per step. With ``"linear"`` the rate used is
    ``base_lr * global_batch / reference_batch_size`` (Goyal et al. 2017), where ``base_lr`` is ``learning_rate``
    or the model's default and ``global_batch`` is ``batch_size`` times the number of replicas; ``"sqrt"`` scales
    by the square root of that ratio (gentler, often better for Adam); ``"none"`` (default) uses ``base_lr`` as
    is. A scaled rate is capped at ``max_learning_rate`` when set, and ramps up linearly from ~0 over the first
    ``warmup_steps`` optimizer steps when that is positive (large rates diverge without it).
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
    backend: Backend | None = None
    learning_rate_scaling: LearningRateScaling = "none"
    reference_batch_size: int = 256
    max_learning_rate: float | None = None
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.embedding_dim < 1:
            raise ValueError("epochs, batch_size and embedding_dim must be positive")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.id_dropout < 1.0:
            raise ValueError("dropout rates must lie in [0, 1)")
        if self.distribution not in ("default", "mirrored", "one_device"):
            raise ValueError(f"unknown distribution {self.distribution!r}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; one of {', '.join(BACKENDS)}")
        if self.learning_rate_scaling not in ("none", "linear", "sqrt"):
            raise ValueError(f"unknown learning_rate_scaling {self.learning_rate_scaling!r}")
        if self.reference_batch_size < 1 or self.warmup_steps < 0:
            raise ValueError("reference_batch_size must be positive and warmup_steps >= 0")
        if self.max_learning_rate is not None and self.max_learning_rate <= 0:
            raise ValueError("max_learning_rate must be positive when set")
        for name in ("checkpoint_dir", "tensorboard_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    def learning_rate_or(self, default: float) -> float:
        return default if self.learning_rate is None else float(self.learning_rate)

    def learning_rate_factor(self, global_batch_size: int) -> float:
        """What ``learning_rate_scaling`` multiplies the base rate by at ``global_batch_size`` examples per step."""
        ratio = global_batch_size / self.reference_batch_size
        if self.learning_rate_scaling == "linear":
            return ratio
        if self.learning_rate_scaling == "sqrt":
            return math.sqrt(ratio)
        return 1.0

    def scaled_learning_rate(self, base: float, global_batch_size: int) -> float:
        """``base`` scaled to ``global_batch_size`` by ``learning_rate_scaling``, capped at ``max_learning_rate``.

        The cap applies only to a scaled rate: an explicit ``learning_rate`` with scaling ``"none"`` is used as is.
        """
        if self.learning_rate_scaling == "none":
            return float(base)
        scaled = float(base) * self.learning_rate_factor(global_batch_size)
        return scaled if self.max_learning_rate is None else min(scaled, self.max_learning_rate)

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
