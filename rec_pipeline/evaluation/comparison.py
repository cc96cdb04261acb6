"""Side-by-side model comparison: markdown table, one-row-per-model frame, and best-model selection.

Every function accepts, per model, an ``EvaluationResult``, its ``to_dict()`` form (read back from JSON), a
``cross_validate`` result (mean, with std shown beside it) or a flat ``{metric: value}`` dict (e.g. training
metadata holding ``val_rmse``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

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


def comparison_table_md(
    results: Mapping[str, EvaluationResult | Mapping[str, Any]],
    metrics: Sequence[str] = DEFAULT_TABLE_METRICS,
    digits: int = 4,
) -> str:
    """Markdown table, one row per model, with the best value of each column in bold.

    Best is the lowest for error metrics (rmse, mae, ...) and the highest otherwise; ties at the displayed
    precision are all bold, so the table never bolds one of two equal-looking numbers. Undefined values show as
    an en dash. Cross-validation results show ``mean ± std``, ranked by mean.
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
            cells.append(f"**{text}**" if round(float(value), digits) == best[metric] else text)
        lines.append(f"| {_escape(name)} | " + " | ".join(cells) + " |")
    lines.append(_protocol_note(summaries))
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
        raise KeyError(f"no model reports {metric!r}; for test results of a validation split use "
                       f"result.prefixed('val_') to get val_* metrics")
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
    values = [round(float(s.metrics[metric]), digits) for s in summaries.values()  # type: ignore[arg-type]
              if not _missing(s.metrics.get(metric))]
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
