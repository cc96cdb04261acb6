"""Summary statistics of an interaction table, for asset metadata and the summary command."""

from __future__ import annotations

from typing import Any

import polars as pl


def interaction_stats(frame: pl.DataFrame) -> dict[str, Any]:
    """Rows, users, items, density and the rating histogram."""
    n = frame.height
    users = frame["user_id"].n_unique() if n else 0
    items = frame["item_id"].n_unique() if n else 0
    density = n / (users * items) if users and items else 0.0
    hist = (
        frame.group_by(pl.col("rating").round(0).cast(pl.Int32).alias("stars")).len().sort("stars")
        if n
        else pl.DataFrame({"stars": [], "len": []})
    )
    return {
        "rows": n,
        "users": users,
        "items": items,
        "density": round(density, 6),
        "rating_mean": round(float(frame["rating"].mean()), 4) if n else None,  # type: ignore[arg-type]
        "rating_histogram": {str(s): int(c) for s, c in hist.iter_rows()},
    }
