"""Dagster resources: where data lives, and the settings every launch path shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field

from rec_pipeline.paths import DataLayout, default_data_dir
from rec_pipeline.run_reaper import tag_run_with_host
from rec_pipeline.settings import Settings, SettingsError, load_settings, merge_config, settings_path

ConfigT = TypeVar("ConfigT", bound=dg.Config)


class DataLake(dg.ConfigurableResource):
    """The data root: ``raw/`` landing folder, image mirror and cache, ``warehouse/<category>/`` artifacts and
    ``settings.yaml``, the deployment's settings (see ``rec_pipeline.settings``).

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


def _explicit_run_config(context: dg.AssetExecutionContext, op: str) -> dict[str, Any]:
    """What the run's own config sets for ``op`` (not the defaults Dagster filled in)."""
    run_config = context.run.run_config or {}
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
