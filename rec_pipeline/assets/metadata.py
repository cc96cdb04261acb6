"""Small helpers that turn plain results into Dagster metadata, shared by every asset module.

Each category's metadata goes on its own partition (``factory.materialized``), in ranged runs too: there is no
merged, ``<category>/``-prefixed form any more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A markdown table; empty input gives a short note rather than an empty table."""
    if not rows:
        return "_none_"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def counts_md(counts: Mapping[str, int], key: str = "reason", value: str = "count") -> str:
    return md_table([{key: k, value: v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])])


def combined_check(
    name: str,
    outcomes: Mapping[str, tuple[bool, str]],
    asset_key: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """One check result over the categories of a run: passes only if every category passes."""
    failed = {c: msg for c, (ok, msg) in outcomes.items() if not ok}
    details = "; ".join(f"{c}: {msg}" for c, (_, msg) in outcomes.items())
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=not failed,
        severity=severity,
        metadata={"details": dg.MetadataValue.text(details or "no categories"), "failed_categories": len(failed)},
    )
