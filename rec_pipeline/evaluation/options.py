"""Settings shared by every evaluation, so all models are measured the same way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

RankingProtocol = Literal["full", "sampled"]
PROTOCOLS: tuple[str, ...] = ("full", "sampled")


@dataclass(frozen=True)
class EvaluationOptions:
    """How ranking is measured and how much detail the result keeps.

    ``protocol``: ``"full"`` ranks every catalogue item the user has not rated in train/validation;
    ``"sampled"`` ranks each relevant test item against ``n_negatives`` sampled unrated items (cheaper, and the
    protocol of the NCF paper, but known to overstate differences; prefer ``"full"`` when affordable).
    ``relevance_threshold``: a test rating >= this counts as relevant (4.0 = "liked" on a 5-star scale, so a
    1-star review is not a successful recommendation); ``all_test_items_relevant`` ignores it and treats every
    test item as relevant (pure "will the user interact" evaluation).
    ``few_ratings_max``: items with 1..this many training ratings form the ``"few"`` RMSE segment.
    ``batch_users``: users scored per ``score_users`` call; ``None`` sizes batches to ~2M scores.
    ``coverage_users``: under ``sampled``, a model that scores pairs (``ranking_pair_scores``) is scored on each
    case's positive and negatives only; ``coverage@K`` then comes from the full rows of the first this many
    evaluated users (sorted ids, already a seeded sample on large categories), not every user.
    """

    protocol: RankingProtocol = "full"
    ks: tuple[int, ...] = (10,)
    relevance_threshold: float = 4.0
    all_test_items_relevant: bool = False
    n_negatives: int = 100
    seed: int = 0
    few_ratings_max: int = 5
    scatter_points: int = 2000
    batch_users: int | None = None
    coverage_users: int = 2_000

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        ks = tuple(sorted({int(k) for k in self.ks}))
        if not ks or ks[0] < 1:
            raise ValueError(f"ks must be a non-empty list of positive cut-offs, got {self.ks!r}")
        object.__setattr__(self, "ks", ks)
        if self.n_negatives < 1:
            raise ValueError("n_negatives must be at least 1")
        if self.few_ratings_max < 1:
            raise ValueError("few_ratings_max must be at least 1")
        if self.scatter_points < 0:
            raise ValueError("scatter_points must not be negative")
        if self.coverage_users < 1:
            raise ValueError("coverage_users must be positive")
        if self.batch_users is not None and self.batch_users < 1:
            raise ValueError("batch_users must be positive")

    @property
    def protocol_name(self) -> str:
        """Self-describing protocol label stored with every result, so numbers are never compared across protocols."""
        relevance = "all test items" if self.all_test_items_relevant else f"rating>={self.relevance_threshold:g}"
        if self.protocol == "sampled":
            return f"sampled({self.n_negatives} negatives, seed {self.seed}; relevant: {relevance})"
        return f"full(all unrated items; relevant: {relevance})"

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["ks"] = list(self.ks)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluationOptions:
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        if "ks" in values:
            values["ks"] = tuple(values["ks"])
        return cls(**values)
