from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rec_pipeline.models.vocabulary import UNKNOWN_INDEX, IdVocabulary


def test_indices_follow_sorted_ids_and_start_at_one() -> None:
    vocabulary = IdVocabulary(["b", "a", "c", "a"])
    assert vocabulary.ids == ["a", "b", "c"]
    assert vocabulary.lookup(["c", "a"]).tolist() == [3, 1]
    assert vocabulary.size_with_unknown == 4


def test_unknown_ids_map_to_the_reserved_index() -> None:
    vocabulary = IdVocabulary(["a"])
    assert vocabulary.lookup(["zzz", "a"]).tolist() == [UNKNOWN_INDEX, 1]
    assert "zzz" not in vocabulary


def test_lookup_accepts_polars_series() -> None:
    vocabulary = IdVocabulary.from_column(pl.Series(["x", "y"]))
    assert vocabulary.lookup(pl.Series(["y"])).dtype == np.int32


def test_save_then_load_keeps_the_mapping(tmp_path: Path) -> None:
    vocabulary = IdVocabulary(["q", "p"])
    vocabulary.save(tmp_path / "v.parquet")
    assert IdVocabulary.load(tmp_path / "v.parquet").lookup(["p", "q", "r"]).tolist() == [1, 2, 0]
