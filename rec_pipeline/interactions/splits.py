"""Train / validation / test splits: random stratified by user, or temporal leave-last-out.

Both are seeded and both guarantee that every user and item in validation and test also appears in training
(a rating for an unknown user or item measures cold start, which the benchmark measures separately and on
purpose). Rows that would break that guarantee are moved to training and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

SplitMethod = Literal["random", "temporal", "random_rows"]
SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitOptions:
    method: SplitMethod = "temporal"
    validation_fraction: float = 0.1  # random split only
    test_fraction: float = 0.1  # random split only
    seed: int = 42


@dataclass(frozen=True)
class Splits:
    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    moved_to_train: int

    def as_dict(self) -> dict[str, pl.DataFrame]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def split_interactions(interactions: pl.DataFrame, options: SplitOptions = SplitOptions()) -> Splits:
    """Assign every row to exactly one split."""
    if options.method == "temporal":
        ranked = interactions.with_columns(
            # Newest first. Real dumps hold users whose reviews all share one timestamp (bulk re-posts), so
            # ties are broken by a seeded random key rather than file order, which would always pick the
            # same few items and leave them unknown to training.
            pl.int_range(pl.len()).shuffle(seed=options.seed).alias("_row"),
        ).with_columns(
            pl.struct(-pl.col("timestamp"), pl.col("_row")).rank("ordinal").over("user_id").alias("_pos"),
            pl.len().over("user_id").alias("_n"),
        )
        # Leave the last one out for test and the one before for validation, while keeping >= 1 for training.
        assigned = ranked.with_columns(
            pl.when((pl.col("_pos") == 1) & (pl.col("_n") >= 2))
            .then(pl.lit("test"))
            .when((pl.col("_pos") == 2) & (pl.col("_n") >= 3))
            .then(pl.lit("validation"))
            .otherwise(pl.lit("train"))
            .alias("_split")
        )
    elif options.method == "random_rows":
        # A plain seeded shuffle of all rows (the protocol of several published projects): not stratified by user,
        # so a user's every rating may land in test. Kept to reproduce them; "random" is the sound variant.
        if not 0 <= options.validation_fraction + options.test_fraction < 1:
            raise ValueError("validation_fraction + test_fraction must be in [0, 1)")
        n = interactions.height
        n_test = round(n * options.test_fraction)
        n_val = round(n * options.validation_fraction)
        assigned = interactions.with_columns(
            pl.int_range(pl.len()).shuffle(seed=options.seed).alias("_key")
        ).with_columns(
            pl.when(pl.col("_key") < n_test)
            .then(pl.lit("test"))
            .when(pl.col("_key") < n_test + n_val)
            .then(pl.lit("validation"))
            .otherwise(pl.lit("train"))
            .alias("_split")
        )
    elif options.method == "random":
        if not 0 <= options.validation_fraction + options.test_fraction < 1:
            raise ValueError("validation_fraction + test_fraction must be in [0, 1)")
        shuffled = interactions.with_columns(
            pl.int_range(pl.len()).shuffle(seed=options.seed).alias("_key")
        ).with_columns(
            pl.col("_key").rank("ordinal").over("user_id").alias("_pos"),
            pl.len().over("user_id").alias("_n"),
        )
        # Rounded up so that users with few ratings (the many 5-core users) are evaluated too.
        n_test_per_user = (pl.col("_n") * options.test_fraction).ceil()
        n_val_per_user = (pl.col("_n") * options.validation_fraction).ceil()
        # Stratified by user: each user contributes the same shares, and always keeps one training row.
        assigned = shuffled.with_columns(
            pl.when((pl.col("_pos") <= n_test_per_user) & (pl.col("_n") >= 2))
            .then(pl.lit("test"))
            .when((pl.col("_pos") <= n_test_per_user + n_val_per_user) & (pl.col("_pos") < pl.col("_n")))
            .then(pl.lit("validation"))
            .otherwise(pl.lit("train"))
            .alias("_split")
        )
    else:
        raise ValueError(f"unknown split method {options.method!r}: use 'temporal', 'random' or 'random_rows'")

    train_items = assigned.filter(pl.col("_split") == "train").select("item_id").unique()
    unknown = (pl.col("_split") != "train") & ~pl.col("item_id").is_in(train_items["item_id"].implode())
    moved = int(assigned.select(unknown.sum()).item())
    assigned = assigned.with_columns(pl.when(unknown).then(pl.lit("train")).otherwise(pl.col("_split")).alias("_split"))
    cols = interactions.columns
    parts = {name: assigned.filter(pl.col("_split") == name).select(cols) for name in SPLIT_NAMES}
    return Splits(parts["train"], parts["validation"], parts["test"], moved)


def check_splits(splits: Splits) -> list[str]:
    """Problems with a split (empty list when sound): overlap, or evaluated users/items unknown to training."""
    problems: list[str] = []
    keys = {name: frame.select("user_id", "item_id") for name, frame in splits.as_dict().items()}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        overlap = keys[a].join(keys[b], on=["user_id", "item_id"], how="inner").height
        if overlap:
            problems.append(f"{overlap} (user, item) pairs in both {a} and {b}")
    train_users = splits.train["user_id"].unique().implode()
    train_items = splits.train["item_id"].unique().implode()
    for name in ("validation", "test"):
        frame = splits.as_dict()[name]
        unknown_users = frame.filter(~pl.col("user_id").is_in(train_users)).height
        unknown_items = frame.filter(~pl.col("item_id").is_in(train_items)).height
        if unknown_users:
            problems.append(f"{unknown_users} {name} rows with users unknown to training")
        if unknown_items:
            problems.append(f"{unknown_items} {name} rows with items unknown to training")
    return problems
