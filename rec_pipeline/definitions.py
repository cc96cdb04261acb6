"""The one ``Definitions`` object of the code location (``[tool.dagster] module_name`` points here)."""

from __future__ import annotations

import os

import dagster as dg

from rec_pipeline import automation
from rec_pipeline.assets import catalog, evaluation, features, images, ingestion, interactions, training
from rec_pipeline.assets.partitions import register_landed_categories
from rec_pipeline.deploy import DeploySettings, build_executor
from rec_pipeline.paths import default_data_dir
from rec_pipeline.resources import DataLake

ASSET_MODULES = [ingestion, interactions, catalog, features, images, training, evaluation]
MAIN_JOB_NAME = automation.MAIN_JOB_NAME
RETRAIN_CRON_ENV = "REC_PIPELINE_RETRAIN_CRON"


def build_definitions(data_dir: str | None = None, deploy: DeploySettings | None = None) -> dg.Definitions:
    """Build the code location. Tests pass their own ``data_dir``; settings come from its ``settings.yaml``, the
    executor from ``deploy`` (Dagster's multiprocess executor unless it says otherwise).

    The lake is the one resource the assets need: it is also the input manager that hands each asset a ``Stored``
    handle per upstream (``rec_pipeline.warehouse_io``)."""
    deploy = deploy if deploy is not None else DeploySettings()
    lake = DataLake(data_dir=data_dir or str(default_data_dir()))
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        jobs=automation.build_jobs(),
        schedules=[
            automation.build_retrain_schedule(os.environ.get(RETRAIN_CRON_ENV, automation.DEFAULT_RETRAIN_CRON))
        ],
        sensors=[
            automation.landing_sensor,
            automation.run_failure_recorder,
            automation.automation_sensor,
            automation.run_reaper,
        ],
        resources={"lake": lake},
        executor=build_executor(deploy),
    )


register_landed_categories(default_data_dir() / "raw")
defs = build_definitions(deploy=DeploySettings.from_env())
