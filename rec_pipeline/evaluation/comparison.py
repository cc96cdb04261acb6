"""Side-by-side model comparison: markdown tables, one-row-per-model frame, best-model selection and paired
bootstrap intervals against the best model.

Every table function accepts, per model, an ``EvaluationResult``, its ``to_dict()`` form (read back from JSON), a
``cross_validate`` result (mean, with std shown beside it) or a flat ``{metric: value}`` dict (e.g. training
metadata holding ``val_rmse``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import polars as pl

from rec_pipeline.evaluation.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    Interval,
    UserStatistics,
    bootstrap_samples,
    difference_interval,
    metric_value,
)
from rec_pipeline.evaluation.evaluate import EvaluationResult

DEFAULT_TABLE_METRICS = ("rmse", "mae", "pearson", "ndcg@10", "recall@10", "hr@10", "map@10", "coverage@10")
# Error-like metrics: smaller is better. Everything else (correlation, ranking, coverage) is larger-is-better.
_LOWER_IS_BETTER = ("rmse", "mae", "mse", "loss")


@dataclass(frozen=True)
class _Summary:
    metrics: dict[str, float | None]
    std: dict[str, float | None]
    counts: dict[str, int]
    protocol: str | None


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (``rmse``, ``val_rmse``, ``rmse_cold``, ``mae`` ...)."""
    stem = metric.split("@", 1)[0]
    return any(part in _LOWER_IS_BETTER for part in stem.split("_"))


@dataclass(frozen=True)
class BootstrapComparison:
    """Every model against the best model of each metric, with paired bootstrap intervals of the difference.

    ``best[metric]`` is the model with the best point value; ``intervals[model][metric]`` the interval of
    ``model - best`` (all zeros for the best itself). A model whose interval contains 0 is *tied* with the best:
    the data cannot separate them. ``samples`` keeps the resampled values so any two models can be compared later
    (``difference``) on the very same resamples.
    """

    n_resamples: int
    seed: int
    level: float
    values: dict[str, dict[str, float | None]]
    best: dict[str, str | None]
    intervals: dict[str, dict[str, Interval]]
    samples: dict[str, dict[str, np.ndarray]] = field(repr=False)

    def tied_with_best(self, model: str, metric: str) -> bool:
        """True for the best model and every model whose interval of the difference to it contains 0."""
        if self.best.get(metric) == model:
            return True
        interval = self.intervals.get(model, {}).get(metric)
        return bool(interval is not None and interval.contains_zero)

    def difference(self, model: str, other: str, metric: str) -> Interval:
        """``model - other`` on ``metric`` with its interval, from the shared resamples."""
        return difference_interval(
            self.samples[model][metric],
            self.samples[other][metric],
            self.values[model].get(metric),
            self.values[other].get(metric),
            self.level,
        )

    def merged(self, other: BootstrapComparison) -> BootstrapComparison:
        """Both comparisons' metrics in one (e.g. test metrics and ``val_`` metrics, resampled on their own users)."""
        models = list(dict.fromkeys([*self.values, *other.values]))

        def union(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
            return {model: {**a.get(model, {}), **b.get(model, {})} for model in models}

        return BootstrapComparison(
            self.n_resamples,
            self.seed,
            self.level,
            union(self.values, other.values),
            {**self.best, **other.best},
            union(self.intervals, other.intervals),
            union(self.samples, other.samples),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, best model per metric and every model's interval against it."""
        return {
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "level": self.level,
            "best": dict(self.best),
            "vs_best": {
                model: {metric: interval.to_dict() for metric, interval in by_metric.items()}
                for model, by_metric in self.intervals.items()
            },
        }


def compare_models(
    stats: Mapping[str, UserStatistics],
    metrics: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    prefix: str = "",
    rename: Callable[[str], str] | None = None,
) -> BootstrapComparison:
    """Paired bootstrap of ``metrics`` over the users of one split (``EvaluationResult.user_stats`` per model).

    Result keys are ``prefix + metric`` (``prefix="val_"`` for the validation split), or ``rename(metric)`` when
    given (``cold_items.cold_metric_name`` for the cold-item protocol). Ties for the best point value go to the
    first model in ``stats`` order, as in ``select_best``.
    """
    key = rename if rename is not None else (lambda metric: prefix + metric)
    samples = bootstrap_samples(stats, metrics, n_resamples, seed)
    values = {
        name: {key(metric): metric_value(model_stats, metric) for metric in metrics}
        for name, model_stats in stats.items()
    }
    samples = {
        name: {key(metric): series for metric, series in by_metric.items()} for name, by_metric in samples.items()
    }
    best: dict[str, str | None] = {}
    intervals: dict[str, dict[str, Interval]] = {name: {} for name in stats}
    for metric in (key(metric) for metric in metrics):
        best[metric] = _best_of({name: values[name][metric] for name in stats}, metric)
        for name in stats:
            reference = best[metric]
            intervals[name][metric] = (
                Interval(None, None, None, level)
                if reference is None
                else difference_interval(
                    samples[name][metric],
                    samples[reference][metric],
                    values[name][metric],
                    values[reference][metric],
                    level,
                )
            )
    return BootstrapComparison(n_resamples, seed, level, values, best, intervals, samples)


def _best_of(values: Mapping[str, float | None], metric: str) -> str | None:
    defined = {name: value for name, value in values.items() if not _missing(value)}
    if not defined:
        return None
    pick = min if lower_is_better(metric) else max
    target = pick(defined.values())  # type: ignore[type-var]
    return next(name for name, value in defined.items() if value == target)


def comparison_table_md(
    results: Mapping[str, EvaluationResult | Mapping[str, Any]],
    metrics: Sequence[str] = DEFAULT_TABLE_METRICS,
    digits: int = 4,
    bootstrap: BootstrapComparison | None = None,
) -> str:
    """Markdown table, one row per model, with the best value of each column in bold.

    Best is the lowest for error metrics (rmse, mae, ...) and the highest otherwise. Without ``bootstrap``, ties
    at the displayed precision are all bold, so the table never bolds one of two equal-looking numbers. With it,
    a column's bold cells are the best model and every model statistically tied with it (the paired bootstrap
    interval of the difference contains 0); columns it does not cover fall back to display ties. Undefined
    values show as an en dash. Cross-validation results show ``mean ± std``, ranked by mean.
    """
    summaries = {name: _summarize(value) for name, value in results.items()}
    best = {metric: _best_displayed(summaries, metric, digits) for metric in metrics}
    header = "| model | " + " | ".join(metrics) + " |"
    rule = "|---|" + "|".join("---:" for _ in metrics) + "|"
    lines = [header, rule]
    for name, summary in summaries.items():
        cells = []
        for metric in metrics:
            value = summary.metrics.get(metric)
            if _missing(value):
                cells.append("–")
                continue
            text = f"{value:.{digits}f}"
            std = summary.std.get(metric)
            if not _missing(std):
                text += f" ± {std:.{digits}f}"
            if bootstrap is not None and bootstrap.best.get(metric) is not None:
                bold = bootstrap.tied_with_best(name, metric)
            else:
                bold = value is not None and round(float(value), digits) == best[metric]
            cells.append(f"**{text}**" if bold else text)
        lines.append(f"| {_escape(name)} | " + " | ".join(cells) + " |")
    if bootstrap is not None:
        without = [metric for metric in metrics if bootstrap.best.get(metric) is None and best[metric] is not None]
        lines.append(
            f"\nBold: the best value and every model tied with it (the paired bootstrap "
            f"{bootstrap.level:.0%} interval of the difference, {bootstrap.n_resamples} resamples of users, "
            f"seed {bootstrap.seed}, contains 0)"
            + (f"; without an interval ({', '.join(without)}): equal at the shown precision." if without else ".")
        )
    lines.append(_protocol_note(summaries))
    return "\n".join(lines) + "\n"


def difference_table_md(bootstrap: BootstrapComparison, metrics: Sequence[str], digits: int = 3) -> str:
    """Markdown table of every model's difference to the column's best model: ``diff [low, high]``.

    The header row names the best model per column; its own cell says ``best``. Kept apart from the value table
    so that one stays readable; columns without a best model (undefined everywhere, or no interval) are left out.
    """
    shown = [metric for metric in metrics if bootstrap.best.get(metric) is not None]
    header = (
        "| model | " + " | ".join(f"{metric} (vs {_escape(str(bootstrap.best[metric]))})" for metric in shown) + " |"
    )
    lines = [header, "|---|" + "|".join("---:" for _ in shown) + "|"]
    for name, by_metric in bootstrap.intervals.items():
        cells = []
        for metric in shown:
            interval = by_metric.get(metric)
            cells.append("best" if bootstrap.best[metric] == name else interval.compact(digits) if interval else "–")
        lines.append(f"| {_escape(name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _protocol_note(summaries: Mapping[str, _Summary]) -> str:
    """Ranking numbers are only comparable under one protocol; say which, and flag a mixed table."""
    protocols = {name: s.protocol for name, s in summaries.items() if s.protocol}
    distinct = list(dict.fromkeys(protocols.values()))
    if not distinct:
        return ""
    if len(distinct) == 1:
        return f"\nRanking protocol: {distinct[0]}"
    listed = "; ".join(f"{_escape(name)}: {protocol}" for name, protocol in protocols.items())
    return f"\n**Warning: ranking protocols differ, ranking columns are not comparable** ({listed})"


def results_frame(results: Mapping[str, EvaluationResult | Mapping[str, Any]]) -> pl.DataFrame:
    """One row per model: ``model``, ``protocol``, every metric (Float64, ``<metric>_std`` for CV) and count (Int64).

    Columns are the union over models (null where a model lacks one), so one Parquet/JSON summary holds all.
    """
    summaries = {name: _summarize(value) for name, value in results.items()}
    metric_names = _ordered_union(s.metrics for s in summaries.values())
    std_names = _ordered_union(s.std for s in summaries.values())
    count_names = _ordered_union(s.counts for s in summaries.values())
    schema: dict[str, pl.DataType] = {"model": pl.String(), "protocol": pl.String()}
    schema.update({name: pl.Float64() for name in metric_names})
    schema.update({f"{name}_std": pl.Float64() for name in std_names})
    schema.update({name: pl.Int64() for name in count_names if name not in schema})
    rows = []
    for name, summary in summaries.items():
        row: dict[str, Any] = {"model": name, "protocol": summary.protocol}
        row.update({metric: _as_float(summary.metrics.get(metric)) for metric in metric_names})
        row.update({f"{metric}_std": _as_float(summary.std.get(metric)) for metric in std_names})
        row.update({count: summary.counts.get(count) for count in count_names if count not in row})
        rows.append(row)
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def select_best(results: Mapping[str, EvaluationResult | Mapping[str, Any]], metric: str = "val_rmse") -> str:
    """Name of the model with the best ``metric`` (lowest for error metrics, highest otherwise).

    Models where the metric is undefined are ignored; ties go to the first model in ``results`` order so the
    choice is reproducible. Raises ``KeyError`` when no model defines the metric.
    """
    best_name: str | None = None
    best_value = math.nan
    lower = lower_is_better(metric)
    for name, value in results.items():
        candidate = _summarize(value).metrics.get(metric)
        if _missing(candidate):
            continue
        candidate = float(candidate)  # type: ignore[arg-type]
        if best_name is None or (candidate < best_value if lower else candidate > best_value):
            best_name, best_value = name, candidate
    if best_name is None:
        raise KeyError(
            f"no model reports {metric!r}; for test results of a validation split use "
            f"result.prefixed('val_') to get val_* metrics"
        )
    return best_name


def _summarize(value: EvaluationResult | Mapping[str, Any]) -> _Summary:
    if isinstance(value, EvaluationResult):
        return _Summary(dict(value.metrics), {}, dict(value.counts), value.protocol)
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an EvaluationResult or a mapping, got {type(value).__name__}")
    protocol = value.get("protocol")
    if isinstance(value.get("mean"), Mapping):  # cross_validate output
        return _Summary(dict(value["mean"]), dict(value.get("std") or {}), {}, protocol)
    if isinstance(value.get("metrics"), Mapping):  # EvaluationResult.to_dict()
        return _Summary(dict(value["metrics"]), {}, dict(value.get("counts") or {}), protocol)
    flat = {key: item for key, item in value.items() if item is None or isinstance(item, int | float)}
    return _Summary({k: v for k, v in flat.items() if not isinstance(v, bool)}, {}, {}, protocol)


def _best_displayed(summaries: Mapping[str, _Summary], metric: str, digits: int) -> float | None:
    values = [
        round(float(cast(float, s.metrics[metric])), digits)
        for s in summaries.values()
        if not _missing(s.metrics.get(metric))
    ]
    if not values:
        return None
    return min(values) if lower_is_better(metric) else max(values)


def _ordered_union(mappings: Any) -> list[str]:
    return list(dict.fromkeys(key for mapping in mappings for key in mapping))


def _missing(value: object) -> bool:
    # None and NaN are the two ways "undefined" survives a JSON or Parquet round trip.
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_float(value: object) -> float | None:
    return None if _missing(value) else float(value)  # type: ignore[arg-type]


def _escape(name: str) -> str:
    return name.replace("|", "\\|")
