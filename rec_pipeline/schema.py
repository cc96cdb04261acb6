"""The common, release-independent schemas every stage reads and writes.

All three dump releases (2014, 2018, 2023) are normalized into these two tables so that nothing downstream
needs to know which release a category came from.
"""

from __future__ import annotations

import polars as pl

REVIEW_SCHEMA = pl.Schema(
    {
        "user_id": pl.String(),
        "item_id": pl.String(),
        "rating": pl.Float32(),
        "timestamp": pl.Int64(),  # seconds since the epoch, whatever the release stored
        "summary": pl.String(),
        "text": pl.String(),
        "verified": pl.Boolean(),
        "votes": pl.Int32(),
        "image_urls": pl.List(pl.String()),
        "source_line": pl.Int64(),  # 1-based line number in the dump, for tracing a row back
    }
)

ITEM_SCHEMA = pl.Schema(
    {
        "item_id": pl.String(),
        "title": pl.String(),
        "brand": pl.String(),
        "categories": pl.List(pl.String()),
        "description": pl.List(pl.String()),
        "features": pl.List(pl.String()),
        "price": pl.Float64(),
        "image_urls": pl.List(pl.String()),
        "source_line": pl.Int64(),
    }
)

INTERACTION_SCHEMA = pl.Schema(
    {
        "user_id": pl.String(),
        "item_id": pl.String(),
        "rating": pl.Float32(),
        "timestamp": pl.Int64(),
    }
)

REJECTED_SCHEMA = pl.Schema(
    {
        "source_file": pl.String(),
        "source_line": pl.Int64(),
        "reason": pl.String(),
        "raw": pl.String(),  # the offending line, truncated, so a person can see what was wrong
    }
)

RATING_MIN = 1.0
RATING_MAX = 5.0
