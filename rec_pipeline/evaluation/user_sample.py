"""A seeded sample of evaluation users, the same for every model, so evaluation cost stops growing with users.

Ranking a user costs one score per candidate item, so a full evaluation is O(users x items) in time (memory is
batched). On a large category (1M users x 200k items) that is hours per model and split, while the metrics and
their bootstrap intervals settle long before: a mean over 50,000 users has a standard error of about
``0.5 / sqrt(50,000) = 0.002`` for a metric in [0, 1]. So evaluation draws ``max_users`` users once, uniformly and
seeded, from everyone with a held-out rating, and every model is measured on exactly those users (validation, test
and cold ratings alike). Below the cap nothing is sampled and the frames pass through unchanged.

Training data is never filtered: what a user already rated still excludes those items from their ranking, and
popularity segments still count every training rating.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

# The default cap of evaluation and of the model search's ranking objective: the standard error above.
DEFAULT_MAX_USERS = 50_000


@dataclass(frozen=True)
class UserSample:
    """The frames restricted to the sampled users (``None`` stays ``None``) and the counts that say so."""

    frames: dict[str, pl.DataFrame | None]
    n_users: int  # users with a rating in any of the frames
    n_sampled: int  # users kept: n_users when no cap applied

    @property
    def sampled(self) -> bool:
        return self.n_sampled < self.n_users

    def required(self, name: str) -> pl.DataFrame:
        """A frame that was given (not ``None``), typed as such."""
        frame = self.frames[name]
        if frame is None:
            raise KeyError(f"no {name} frame was sampled")
        return frame

    def describe(self) -> str:
        """One line for logs and the comparison table."""
        if not self.sampled:
            return f"all {self.n_users:,} evaluation users"
        return f"a seeded sample of {self.n_sampled:,} of {self.n_users:,} evaluation users (max_eval_users)"


def sample_users(frames: Mapping[str, pl.DataFrame | None], max_users: int | None, seed: int) -> UserSample:
    """Keep the rows of ``max_users`` users drawn uniformly without replacement (``numpy`` generator seeded by
    ``seed``) from the sorted union of the frames' users, so the draw depends on the user ids, never on row order.
    """
    if max_users is not None and max_users < 1:
        raise ValueError(f"max_eval_users must be positive or None, got {max_users}")
    present = [frame.select(pl.col("user_id").cast(pl.String)) for frame in frames.values() if frame is not None]
    empty = pl.DataFrame({"user_id": []}, schema={"user_id": pl.String})
    users = pl.concat(present).unique().sort("user_id") if present else empty
    n_users = users.height
    if max_users is None or n_users <= max_users:
        return UserSample(dict(frames), n_users, n_users)
    picked = np.sort(np.random.default_rng(seed).choice(n_users, size=max_users, replace=False))
    keep = users.get_column("user_id").gather(picked)
    filtered = {
        name: None if frame is None else frame.filter(pl.col("user_id").cast(pl.String).is_in(keep.implode()))
        for name, frame in frames.items()
    }
    return UserSample(filtered, n_users, max_users)
