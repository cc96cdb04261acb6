"""Dagster resources: where data lives. Everything else is plain configuration on each asset."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from rec_pipeline.paths import DataLayout, default_data_dir


class DataLake(dg.ConfigurableResource):
    """The data root: ``raw/`` landing folder, image mirror and cache, and ``warehouse/<category>/`` artifacts.

    Defaults to ``$REC_PIPELINE_DATA_DIR`` or ``./data``; override per deployment in the launchpad or in
    ``Definitions``.
    """

    data_dir: str = Field(default_factory=lambda: str(default_data_dir()), description="Root of all pipeline data.")

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_dir).expanduser().resolve())
