"""k-core filtering to a true fixed point.

Removing a sparse user can push an item below k, which can push other users below k, and so on: one pass is
not enough (the published "5-core" files are not 5-core after deduplication). We iterate until nothing
changes. Ids are integer-encoded first so each pass is a cheap group-by on two int columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class KCoreResult:
    frame: pl.DataFrame
    iterations: int
    rows_in: int
    rows_out: int


def kcore(
    interactions: pl.DataFrame, k: int, user_col: str = "user_id", item_col: str = "item_id", iterate: bool = True
) -> KCoreResult:
    """Keep the largest sub-table in which every user and every item has at least ``k`` rows.

    ``k <= 1`` keeps everything (a row implies one interaction for its user and item). ``iterate=False`` is the
    one-pass filter some published protocols use (keep users and items with >= k rows, counted once): it is
    *not* a k-core, and exists only to reproduce them.
    """
    rows_in = interactions.height
    if k <= 1 or rows_in == 0:
        return KCoreResult(interactions, 0, rows_in, rows_in)
    codes = interactions.select(
        pl.col(user_col).rank("dense").cast(pl.UInt32).alias("_u"),
        pl.col(item_col).rank("dense").cast(pl.UInt32).alias("_i"),
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
    )
    iterations = 0
    while True:
        iterations += 1
        kept = codes.filter((pl.len().over("_u") >= k) & (pl.len().over("_i") >= k))
        if kept.height == codes.height:
            break
        codes = kept
        if codes.height == 0 or not iterate:
            break
    frame = interactions[codes["_row"].sort()] if codes.height != rows_in else interactions
    return KCoreResult(frame, iterations, rows_in, frame.height)


def is_kcore(interactions: pl.DataFrame, k: int, user_col: str = "user_id", item_col: str = "item_id") -> bool:
    """The invariant the asset check verifies: every user and item has at least k rows."""
    if interactions.height == 0:
        return True
    min_user = interactions.group_by(user_col).len()["len"].min()
    min_item = interactions.group_by(item_col).len()["len"].min()
    return bool(min_user >= k and min_item >= k)  # type: ignore[operator]


def workable_k(interactions: pl.DataFrame, k: int, min_rows: int) -> tuple[int, int] | None:
    """The largest k' < k whose k'-core keeps at least ``min_rows`` rows, with that row count; None if none does.

    Said when a k-core comes out empty or tiny, so the error names a setting that would work.
    """
    for candidate in range(k - 1, 1, -1):
        rows = kcore(interactions, candidate).rows_out
        if rows >= min_rows:
            return candidate, rows
    return None
