"""A user's history and recommendations, read from the materialized artifacts (for ``rec-pipeline recommend``)."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from rec_pipeline.paths import DataLayout


def _titles(layout: DataLayout, category: str) -> pl.DataFrame:
    path = layout.artifact(category, "raw_items.parquet")
    if not path.exists():
        return pl.DataFrame(schema={"item_id": pl.String, "title": pl.String})
    return pl.read_parquet(path, columns=["item_id", "title"])


def user_report(layout: DataLayout, category: str, user_id: str, n: int = 10, history: int = 10) -> dict[str, Any]:
    """The user's top-rated history and their top-``n`` recommendations, with titles.

    Raises FileNotFoundError naming the asset to materialize when recommendations do not exist yet, and
    KeyError listing a few known users when ``user_id`` is unknown.
    """
    recs_path = layout.artifact(category, "recommendations.parquet")
    if not recs_path.exists():
        raise FileNotFoundError(f"no recommendations for {category!r} under {layout.root}: materialize the `recommendations` asset first")
    recs = pl.read_parquet(recs_path)
    mine = recs.filter(pl.col("user_id") == user_id).sort("rank").head(n)
    if mine.height == 0:
        sample = recs["user_id"].unique().sort().head(5).to_list()
        raise KeyError(f"user {user_id!r} has no recommendations in {category!r}; known users include {sample}")
    titles = _titles(layout, category)
    interactions = pl.read_parquet(layout.artifact(category, "interactions.parquet"))
    past = (
        interactions.filter(pl.col("user_id") == user_id)
        .sort(["rating", "timestamp"], descending=True)
        .head(history)
        .join(titles, on="item_id", how="left")
    )
    meta_path = layout.artifact(category, "recommendations.json")
    model = json.loads(meta_path.read_text()).get("model") if meta_path.exists() else None
    return {
        "category": category,
        "user_id": user_id,
        "model": model,
        "history": past.select("item_id", "rating", "title").to_dicts(),
        "recommendations": mine.drop("title", strict=False).join(titles, on="item_id", how="left").sort("rank").select("rank", "item_id", "score", "title").to_dicts(),
    }
