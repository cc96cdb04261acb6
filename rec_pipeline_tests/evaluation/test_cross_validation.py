from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rec_pipeline.evaluation import EvaluationOptions, cross_validate, user_stratified_folds
from rec_pipeline_tests.evaluation.fakes import TableModel, ratings


def _interactions(n_users: int = 12, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        for item in rng.choice(30, int(rng.integers(1, 12)), replace=False):
            rows.append((f"u{user}", f"i{item}", float(rng.integers(1, 6))))
    return ratings(rows)


class MeanModel(TableModel):
    """Fits by memorizing the training mean: enough to check the fold plumbing with a real fit."""

    def __init__(self) -> None:
        super().__init__([f"i{n}" for n in range(30)], {}, default=0.0, fallback=0.0)

    def fit(self, train: pl.DataFrame) -> None:
        mean = float(train.get_column("rating").mean())
        self._default = mean
        self._fallback = mean


def test_folds_are_disjoint_and_cover_every_row() -> None:
    interactions = _interactions()
    seen_val_rows: list[pl.DataFrame] = []

    def fit(model: MeanModel, train: pl.DataFrame, val: pl.DataFrame) -> None:
        assert train.height + val.height == interactions.height
        assert train.join(val, on=["user_id", "item_id"], how="semi").height == 0
        seen_val_rows.append(val)
        model.fit(train)

    cross_validate(MeanModel, fit, interactions, k=4, options=EvaluationOptions(ks=(5,)))
    all_val = pl.concat(seen_val_rows)
    assert all_val.height == interactions.height
    assert all_val.sort("user_id", "item_id").equals(interactions.sort("user_id", "item_id"))


def test_each_users_ratings_spread_evenly_over_folds() -> None:
    interactions = _interactions(n_users=30)
    folds = user_stratified_folds(interactions, k=5, seed=3)
    per_user = pl.DataFrame({"user_id": interactions["user_id"], "fold": folds}).group_by("user_id", "fold").len()
    spread = per_user.group_by("user_id").agg(pl.col("len").max() - pl.col("len").min(), pl.len().alias("n_folds"))
    counts = interactions.group_by("user_id").len()
    joined = spread.join(counts, on="user_id", suffix="_ratings")
    assert joined.get_column("len").max() <= 1  # fold sizes of one user differ by at most one
    assert (joined.get_column("n_folds") == joined.get_column("len_ratings").clip(upper_bound=5)).all()


def test_fold_assignment_is_deterministic_for_a_seed() -> None:
    interactions = _interactions()
    assert np.array_equal(user_stratified_folds(interactions, 5, 1), user_stratified_folds(interactions, 5, 1))
    assert not np.array_equal(user_stratified_folds(interactions, 5, 1), user_stratified_folds(interactions, 5, 2))


def test_mean_and_std_summarize_the_per_fold_metrics() -> None:
    result = cross_validate(
        MeanModel, lambda model, train, val: model.fit(train), _interactions(), k=3, options=EvaluationOptions(ks=(5,))
    )
    rmses = [fold["rmse"] for fold in result["folds"]]
    assert len(rmses) == 3
    assert result["mean"]["rmse"] == pytest.approx(np.mean(rmses))
    assert result["std"]["rmse"] == pytest.approx(np.std(rmses, ddof=1))
    # A constant model has no defined correlation in any fold, so the summary says so instead of NaN.
    assert result["mean"]["pearson"] is None and result["std"]["pearson"] is None
    assert result["protocol"].startswith("full")


def test_k_below_two_is_rejected() -> None:
    with pytest.raises(ValueError):
        user_stratified_folds(_interactions(), k=1)
