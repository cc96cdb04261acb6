"""Paired bootstrap over users: how sure a difference between two models is.

Why: on a few hundred test users an NDCG@10 gap of 0.01 is often noise, yet a table bolds one number and the
pipeline used to pick a model by it. Every metric here is a function of per-user sums (squared errors, pair
counts, per-user NDCG ...), so one resample of users, drawn with replacement, recomputes every metric of every
model by a matrix product. The same resamples serve every model ("paired"): users who are hard for everyone
cancel out of the differences, which makes the intervals much tighter than comparing two separate intervals.

``coverage@K`` gets no interval on purpose: it is a property of the whole set of users (the union of their top
K), and a resample with replacement holds only ~63% distinct users, so resampled coverage is biased downwards and
its percentile interval can miss the point estimate altogether.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rec_pipeline.evaluation.ranking_metrics import RANKING_METRICS
from rec_pipeline.evaluation.ranking_protocols import RankingOutcome
from rec_pipeline.evaluation.rating_metrics import SEGMENTS

DEFAULT_RESAMPLES = 200
DEFAULT_LEVEL = 0.95
# Resamples drawn per matrix product: bounds the weight matrix to _CHUNK x users, whatever n_resamples is.
_CHUNK = 25
# A variance this small relative to the second moment is float rounding of a constant (global-mean predictions).
_CONSTANT = 1e-10


@dataclass(frozen=True)
class UserStatistics:
    """Per-user sums from which every table metric of one model on one split can be recomputed.

    ``users`` are every user of the split, sorted; ``sums`` hold one value per user (rating sums ``n``,
    ``sq_err``, ``abs_err``, ``sx``/``sy``/``sxx``/``syy``/``sxy`` for Pearson, ``n_<segment>`` and
    ``sq_err_<segment>``; ranking: ``ranked`` (1 if evaluated) and each user's ``ndcg@K`` etc., 0 when not
    ranked).
    """

    users: list[str]
    sums: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        for name, values in self.sums.items():
            if values.shape != (len(self.users),):
                raise ValueError(f"sum {name!r} has shape {values.shape}; expected one value per user")


def user_statistics(
    users: Sequence[str],
    user_of_pair: np.ndarray,
    actual: np.ndarray,
    predicted: np.ndarray,
    segments: np.ndarray,
    ranking: RankingOutcome,
) -> UserStatistics:
    """Collect the sums of one evaluation: ``users`` the split's sorted unique users, ``user_of_pair`` each rated
    pair's index in them, ``segments`` each pair's popularity segment, ``ranking`` the split's ranking outcome."""
    n_users = len(users)
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    error = predicted - actual

    def per_user(values: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
        weights = np.ones_like(actual) if values is None else values
        if mask is not None:
            weights = np.where(mask, weights, 0.0)
        return np.bincount(user_of_pair, weights=weights, minlength=n_users).astype(np.float64)

    sums = {
        "n": per_user(),
        "sq_err": per_user(error**2),
        "abs_err": per_user(np.abs(error)),
        "sx": per_user(actual),
        "sy": per_user(predicted),
        "sxx": per_user(actual**2),
        "syy": per_user(predicted**2),
        "sxy": per_user(actual * predicted),
    }
    for segment in SEGMENTS:
        in_segment = segments == segment
        sums[f"n_{segment}"] = per_user(mask=in_segment)
        sums[f"sq_err_{segment}"] = per_user(error**2, in_segment)
    position = {user: row for row, user in enumerate(users)}
    rows = np.array([position[user] for user in ranking.users], dtype=np.int64)
    ranked = np.zeros(n_users)
    ranked[rows] = 1.0
    sums["ranked"] = ranked
    for key, values in ranking.per_user.items():
        column = np.zeros(n_users)
        column[rows] = values
        sums[key] = column
    return UserStatistics(users=[str(user) for user in users], sums=sums)


def metric_from_sums(metric: str, sums: Mapping[str, np.ndarray]) -> np.ndarray:
    """``metric`` for each row of resampled ``sums`` (NaN where undefined); KeyError for metrics without one."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric in ("rmse", "mae"):
            total = sums["sq_err"] if metric == "rmse" else sums["abs_err"]
            mean = np.where(sums["n"] > 0, total / sums["n"], np.nan)
            return np.sqrt(mean) if metric == "rmse" else mean
        if metric == "pearson":
            return _pearson(sums)
        if metric.startswith("rmse_") and metric[5:] in SEGMENTS:
            n = sums[f"n_{metric[5:]}"]
            return np.sqrt(np.where(n > 0, sums[f"sq_err_{metric[5:]}"] / n, np.nan))
        if metric.partition("@")[0] in RANKING_METRICS:
            return np.where(sums["ranked"] > 0, sums[metric] / sums["ranked"], np.nan)
    raise KeyError(f"no per-user form for metric {metric!r}")


def _pearson(sums: Mapping[str, np.ndarray]) -> np.ndarray:
    n = sums["n"]
    safe_n = np.where(n > 0, n, 1.0)
    var_x = sums["sxx"] - sums["sx"] ** 2 / safe_n
    var_y = sums["syy"] - sums["sy"] ** 2 / safe_n
    cov = sums["sxy"] - sums["sx"] * sums["sy"] / safe_n
    defined = (n >= 2) & (var_x > _CONSTANT * sums["sxx"]) & (var_y > _CONSTANT * sums["syy"])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, np.clip(cov / np.sqrt(var_x * var_y), -1.0, 1.0), np.nan)


def _resampled(stats: UserStatistics, metrics: Sequence[str], weights: np.ndarray) -> dict[str, np.ndarray]:
    names = list(stats.sums)
    matrix = np.stack([stats.sums[name] for name in names], axis=1) if names else np.zeros((len(stats.users), 0))
    sums = dict(zip(names, (weights @ matrix).T, strict=True))
    return {metric: metric_from_sums(metric, sums) for metric in metrics}


def metric_value(stats: UserStatistics, metric: str) -> float | None:
    """``metric`` on all users (the point estimate the resamples scatter around); ``None`` where undefined."""
    value = float(_resampled(stats, [metric], np.ones((1, len(stats.users))))[metric][0])
    return None if math.isnan(value) else value


def bootstrap_samples(
    stats: Mapping[str, UserStatistics], metrics: Sequence[str], n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """``n_resamples`` values of every metric for every model, from the same seeded resamples of users.

    Every model must have been evaluated on the same users (one split, one candidate set), else the resamples
    would not be paired. Resamples are drawn in chunks with a generator per chunk, so the values do not depend on
    how many models or metrics are asked for.
    """
    if n_resamples < 1:
        raise ValueError("n_resamples must be positive")
    users = None
    for name, model_stats in stats.items():
        if users is None:
            users = model_stats.users
        elif model_stats.users != users:
            raise ValueError(
                f"{name} was evaluated on other users than the first model; a paired bootstrap needs the same"
            )
    n_users = len(users or [])
    out = {name: {metric: np.full(n_resamples, np.nan) for metric in metrics} for name in stats}
    if n_users == 0:
        return out
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        draws = np.random.default_rng([seed, start]).integers(0, n_users, size=(size, n_users))
        offsets = (np.arange(size) * n_users)[:, None]
        weights = np.bincount((draws + offsets).ravel(), minlength=size * n_users).reshape(size, n_users)
        weights = weights.astype(np.float64)
        for name, model_stats in stats.items():
            for metric, values in _resampled(model_stats, metrics, weights).items():
                out[name][metric][start : start + size] = values
    return out


@dataclass(frozen=True)
class Interval:
    """A difference ``a - b`` of one metric (point value) with its percentile bootstrap interval.

    ``low``/``high`` are ``None`` when the metric is undefined on too many resamples to say anything.
    """

    diff: float | None
    low: float | None
    high: float | None
    level: float = DEFAULT_LEVEL
    resamples_used: int = field(default=0, compare=False)

    @property
    def contains_zero(self) -> bool | None:
        """True: the data cannot tell the two apart at this level (a tie); ``None``: no interval."""
        if self.low is None or self.high is None:
            return None
        return self.low <= 0.0 <= self.high

    def compact(self, digits: int = 3) -> str:
        """``-0.012 [-0.020, -0.004]``; an en dash when undefined."""
        if self.diff is None:
            return "–"
        if self.low is None or self.high is None:
            return f"{self.diff:+.{digits}f}"
        return f"{self.diff:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def to_dict(self) -> dict[str, float | bool | None]:
        return {"diff": self.diff, "low": self.low, "high": self.high, "tied": self.contains_zero}


def difference_interval(
    a: np.ndarray, b: np.ndarray, a_value: float | None, b_value: float | None, level: float = DEFAULT_LEVEL
) -> Interval:
    """Interval of ``a - b`` from paired resamples ``a`` and ``b`` (resamples undefined for either are left out;
    fewer than half usable gives no interval)."""
    diff = None if a_value is None or b_value is None else float(a_value - b_value)
    deltas = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    usable = deltas[np.isfinite(deltas)]
    if diff is None or usable.size < max(1, deltas.size // 2):
        return Interval(diff, None, None, level, int(usable.size))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(usable, [tail, 100 - tail])
    return Interval(diff, float(low), float(high), level, int(usable.size))
