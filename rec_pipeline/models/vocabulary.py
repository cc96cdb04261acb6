"""String id <-> dense integer index maps, with index 0 reserved for ids the model has never seen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

UNKNOWN_INDEX = 0


class IdVocabulary:
    """Sorted unique ids mapped to 1..n; lookups of unseen ids return 0.

    Reserving row 0 lets every model keep one extra embedding/bias row that stands for "unknown" (zeroed, or
    learned through id-dropout), so cold users and items need no special code path at query time. Sorting makes
    the index independent of row order, which keeps seeded training reproducible.
    """

    def __init__(self, ids: Iterable[str]) -> None:
        self._ids: list[str] = sorted({str(value) for value in ids})
        self._index: dict[str, int] = {value: position + 1 for position, value in enumerate(self._ids)}

    @classmethod
    def from_column(cls, *columns: pl.Series) -> IdVocabulary:
        ids: set[str] = set()
        for column in columns:
            ids.update(column.cast(pl.String).unique().drop_nulls().to_list())
        return cls(ids)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, value: object) -> bool:
        return value in self._index

    @property
    def size_with_unknown(self) -> int:
        """Rows an embedding table needs: every id plus the reserved unknown row."""
        return len(self._ids) + 1

    def lookup(self, values: Sequence[str] | pl.Series | np.ndarray) -> np.ndarray:
        """Indices (int32) for ``values``; unknown ids map to 0."""
        if isinstance(values, pl.Series):
            values = values.to_list()
        index = self._index
        return np.fromiter((index.get(value, UNKNOWN_INDEX) for value in values), dtype=np.int32, count=len(values))

    def save(self, path: Path) -> None:
        pl.DataFrame({"id": self._ids}, schema={"id": pl.String}).write_parquet(path)

    @classmethod
    def load(cls, path: Path) -> IdVocabulary:
        return cls(pl.read_parquet(path)["id"].to_list())
