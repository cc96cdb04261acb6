"""Dagster resources: where data lives, and the settings every launch path shares."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field

from rec_pipeline.paths import DataLayout, default_data_dir
from rec_pipeline.run_reaper import tag_run_with_host
from rec_pipeline.settings import Settings, SettingsError, load_settings, merge_config, settings_path
from rec_pipeline.warehouse_io import CategoryStore, Stored

ConfigT = TypeVar("ConfigT", bound=dg.Config)


class DataLake(dg.ConfigurableIOManager):
    """The data root: ``raw/`` landing folder, image mirror and cache, ``warehouse/<category>/`` artifacts and
    ``settings.yaml``, the deployment's settings (see ``rec_pipeline.settings``).

    It is also the input manager of every asset input (``AssetIn(input_manager_key="lake")``): an asset receives
    a ``Stored`` handle per upstream asset, never the data, which stays on disk; writes go through
    ``lake.category(c)`` (``CategoryStore``). Assets return ``MaterializeResult``, so no output is ever handed to
    it. Being one resource, a caller that provides ``lake`` (``dg.materialize(..., resources={"lake": ...})``)
    provides both. Assets take it as ``lake: Lake`` (Dagster asks IO managers to be annotated ``ResourceParam``).

    Defaults to ``$REC_PIPELINE_DATA_DIR`` or ``./data``; override per deployment in the launchpad or in
    ``Definitions``.
    """

    data_dir: str = Field(default_factory=lambda: str(default_data_dir()), description="Root of all pipeline data.")

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_dir).expanduser().resolve())

    @property
    def settings_file(self) -> Path:
        return settings_path(self.layout.root)

    def settings(self) -> Settings:
        try:
            return load_settings(self.settings_file)
        except SettingsError as exc:
            raise dg.Failure(description=str(exc)) from exc

    def category(self, category: str) -> CategoryStore:
        """Where this asset reads its own caches and writes its artifacts for ``category``."""
        return CategoryStore(self.layout, category)

    def load_input(self, context: dg.InputContext) -> Stored:
        upstream = context.upstream_output
        key = upstream.asset_key if upstream is not None and upstream.has_asset_key else context.asset_key
        categories = tuple(context.asset_partition_keys) if context.has_asset_partitions else ()
        return Stored(key.to_user_string(), self.layout, categories)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is not None:
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned a value; assets write through lake.category(c) and "
                "return a MaterializeResult"
            )


Lake = dg.ResourceParam[DataLake]
"""How assets and sensors take the lake: ``lake: Lake``."""


def _explicit_run_config(context: dg.AssetExecutionContext, op: str) -> dict[str, Any]:
    """What the run's own config sets for ``op`` (not the defaults Dagster filled in)."""
    run_config: Mapping[str, Any] = context.run.run_config or {}
    entry = (run_config.get("ops") or {}).get(op) or {}
    return dict(entry.get("config") or {})


def step_config(
    context: dg.AssetExecutionContext, config: ConfigT, lake: DataLake, category: str, settings: Settings | None = None
) -> ConfigT:
    """The effective settings of this asset for one category: Config defaults < settings file < its category
    block < the run's explicit config. Logs the values that differ from the defaults and where they came from."""
    op = context.op_def.name
    tag_run_with_host(context.instance, context.run)
    settings = settings if settings is not None else lake.settings()
    defaults = type(config)().model_dump()
    try:
        merged, sources = merge_config(defaults, settings, op, category, _explicit_run_config(context, op))
        resolved = type(config)(**merged)
    except (SettingsError, ValueError) as exc:
        raise dg.Failure(description=f"{op} ({category}): {exc}") from exc
    if sources:
        context.log.info(
            f"{category}/{op} settings: " + ", ".join(f"{k}={merged[k]!r} ({s})" for k, s in sorted(sources.items()))
        )
    return resolved


def settings_metadata(config: dg.Config) -> dict[str, Any]:
    """The values that differ from the Config defaults, for the asset's metadata."""
    defaults = type(config)().model_dump()
    changed = {k: v for k, v in config.model_dump().items() if v != defaults.get(k)}
    return {"settings": dg.MetadataValue.json(changed)} if changed else {}
