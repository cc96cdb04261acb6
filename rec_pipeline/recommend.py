"""A user's history and recommendations, read from the materialized artifacts (for ``rec-pipeline recommend``)."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from rec_pipeline.paths import DataLayout
from rec_pipeline.warehouse import Artifact


class UserInputError(LookupError):
    """A category or user the data does not have; the message says what does exist (printed as one line)."""


def known_categories(layout: DataLayout) -> list[str]:
    """Categories with a landed reviews dump or materialized artifacts."""
    from rec_pipeline.ingest.sources import categories_with_reviews

    warehouse = layout.root / "warehouse"
    built = {p.name for p in warehouse.iterdir() if p.is_dir()} if warehouse.is_dir() else set()
    return sorted(built | set(categories_with_reviews(layout.raw_dir)))


def unique_titles(titles: pl.DataFrame) -> pl.DataFrame:
    """One ``item_id, title`` row per item (the first)."""
    return titles.unique("item_id", keep="first", maintain_order=True)


def item_titles(layout: DataLayout, category: str) -> pl.DataFrame:
    """``item_id, title`` from the item catalog (keyed like interactions: variant families merged)."""
    for artifact in (Artifact.ITEMS, Artifact.RAW_ITEMS):
        path = layout.artifact(category, artifact)
        if path.exists():
            return unique_titles(pl.read_parquet(path, columns=["item_id", "title"]))
    return pl.DataFrame(schema={"item_id": pl.String, "title": pl.String})


def user_report(layout: DataLayout, category: str, user_id: str, n: int = 10, history: int = 10) -> dict[str, Any]:
    """The user's top-rated history and their top-``n`` recommendations, with titles.

    Raises UserInputError, with a message naming what exists, for an unknown category or user, or when
    recommendations have not been materialized yet.
    """
    known_list = known_categories(layout)
    if category not in known_list:
        known = ", ".join(known_list) or "none yet (land a dump in raw/ first)"
        raise UserInputError(f"no category {category!r} under {layout.root}; known: {known}")
    recs_path = layout.artifact(category, Artifact.RECOMMENDATIONS)
    if not recs_path.exists():
        raise UserInputError(
            f"no recommendations for {category!r} under {layout.root} yet: materialize the `recommendations` asset "
            "first"
        )
    recs = pl.read_parquet(recs_path)
    mine = recs.filter(pl.col("user_id") == user_id).sort("rank").head(n)
    if mine.height == 0:
        users = recs["user_id"].unique().sort()
        sample = ", ".join(users.head(3).to_list())
        raise UserInputError(
            f"user {user_id!r} not in category {category!r} ({users.len():,} users); try one of: {sample}"
        )
    titles = item_titles(layout, category)
    interactions = pl.read_parquet(layout.artifact(category, Artifact.INTERACTIONS))
    past = (
        interactions.filter(pl.col("user_id") == user_id)
        .sort(["rating", "timestamp"], descending=True)
        .head(history)
        .join(titles, on="item_id", how="left")
    )
    meta_path = layout.artifact(category, Artifact.RECOMMENDATIONS_INFO)
    model = json.loads(meta_path.read_text()).get("model") if meta_path.exists() else None
    return {
        "category": category,
        "user_id": user_id,
        "model": model,
        "history": past.select("item_id", "rating", "title").to_dicts(),
        "recommendations": mine.drop("title", strict=False)
        .join(titles, on="item_id", how="left")
        .sort("rank")
        .select("rank", "item_id", "score", "title")
        .to_dicts(),
    }
