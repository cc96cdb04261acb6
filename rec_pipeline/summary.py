"""The materialized state of a category as one JSON-able document (for scripts, checks and the CLI).

Reads only what is on disk under the data root, so it works without a Dagster instance and never triggers
computation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from rec_pipeline.paths import DataLayout
from rec_pipeline.warehouse import SPLITS, WRITTEN_BY, Artifact, report_artifact, summary_artifact


def _rows(path: Path) -> int | None:
    if not path.exists():
        return None
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def category_summary(layout: DataLayout, category: str) -> dict[str, Any]:
    art = lambda name: layout.artifact(category, name)  # noqa: E731 - a local shorthand
    summary: dict[str, Any] = {"category": category, "data_dir": str(layout.root), "assets": {}}
    assets = summary["assets"]
    for name in ("raw_reviews", "raw_items"):
        sidecar = _json(art(report_artifact(name)))
        rows = _rows(art(WRITTEN_BY[name][0]))
        if rows is None and sidecar is None:
            continue
        report = (sidecar or {}).get("report", {})
        assets[name] = {
            "rows": rows,
            "lines_in": report.get("lines"),
            "rejected": sum(report.get("rejected", {}).values()) if report else 0,
            "rejected_by_reason": report.get("rejected", {}),
            "release": report.get("release"),
            "input_complete": report.get("complete", True),
            "input_problem": report.get("problem"),
        }
    if (rows := _rows(art(Artifact.INTERACTIONS))) is not None:
        frame = pl.read_parquet(art(Artifact.INTERACTIONS), columns=["user_id", "item_id"])
        assets["interactions"] = {
            "rows": rows,
            "users": frame["user_id"].n_unique(),
            "items": frame["item_id"].n_unique(),
            **(_json(art(Artifact.INTERACTIONS_SUMMARY)) or {}),
        }
    if art(Artifact.TRAIN).exists():
        assets["splits"] = {name: _rows(art(artifact)) for name, artifact in SPLITS.items()}
        assets["splits"].update(_json(art(Artifact.SPLIT_INFO)) or {})
    for name in ("items", "item_text", "item_text_vectors", "item_images", "image_embeddings", "recommendations"):
        if (rows := _rows(art(WRITTEN_BY[name][0]))) is not None:
            summary_file = summary_artifact(name)
            assets[name] = {"rows": rows, **((_json(art(summary_file)) if summary_file else None) or {})}
    if (metrics := _json(art(Artifact.METRICS))) is not None:
        summary["metrics"] = metrics
    from rec_pipeline.ingest.sources import ignored_files

    summary["ignored_in_raw"] = {f.path.name: f.reason for f in ignored_files(layout.raw_dir)}
    return summary
