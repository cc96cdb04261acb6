"""Deduplicate reviews on (user, item), keeping the latest.

Published dumps repeat (user, item) pairs (re-posted reviews, variants merged under one asin); a model must
see one rating per pair, and the latest is what the user thinks now. Ties on timestamp are broken by the later
source line so the result is deterministic.
"""

from __future__ import annotations

import polars as pl

from rec_pipeline.schema import INTERACTION_SCHEMA


def latest_per_pair(reviews: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """One row per (user_id, item_id): the latest review. Input needs ``source_line`` for tie-breaking."""
    lazy = reviews.lazy()
    order = ["timestamp", "source_line"] if "source_line" in lazy.collect_schema().names() else ["timestamp"]
    return (
        lazy.sort(order)
        .unique(subset=["user_id", "item_id"], keep="last", maintain_order=True)
        .select(list(INTERACTION_SCHEMA))
        .cast(INTERACTION_SCHEMA)
    )
