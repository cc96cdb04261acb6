from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rec_pipeline.models.data import ItemContent, TrainingData, TrainingHistory, TrainOptions


def _content() -> ItemContent:
    return ItemContent(["a", "b"], np.ones((2, 3)), np.array([True, False]), np.ones((2, 4)), np.array([True, True]))


def test_item_content_rejects_misaligned_arrays() -> None:
    with pytest.raises(ValueError, match="text_vectors"):
        ItemContent(["a", "b"], np.ones((3, 3)), np.ones(2, bool), np.ones((2, 4)), np.ones(2, bool))


def test_aligned_content_zeroes_items_without_content() -> None:
    aligned = _content().aligned_to(["b", "new", "a"])
    assert aligned.text_mask.tolist() == [False, False, True]
    assert aligned.image_mask.tolist() == [True, False, True]
    assert np.all(aligned.image_vectors[1] == 0) and aligned.image_vectors.dtype == np.float32


def test_training_data_requires_rating_columns() -> None:
    with pytest.raises(ValueError, match="rating"):
        TrainingData(pl.DataFrame({"user_id": ["u"], "item_id": ["i"]}))


def test_train_options_round_trip_through_dict(tmp_path: Path) -> None:
    options = TrainOptions(epochs=3, checkpoint_dir=tmp_path, distribution="mirrored")
    assert TrainOptions.from_dict(options.to_dict()) == options


def test_train_options_reject_unknown_distribution() -> None:
    with pytest.raises(ValueError, match="distribution"):
        TrainOptions(distribution="tpu")  # type: ignore[arg-type]


def test_history_dict_replaces_non_finite_values_for_json() -> None:
    history = TrainingHistory(loss=[1.0, math.nan], val_loss=[math.inf])
    assert history.to_dict()["loss"] == [1.0, None]
    assert history.to_dict()["val_loss"] == [None]
