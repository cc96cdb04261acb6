"""Jobs, schedules and sensors: how the pipeline runs without a person pressing buttons.

- ``landing_sensor`` notices new or changed dumps in ``raw/`` (a cheap file fingerprint, kept in the cursor),
  adds the category partition and requests an ingestion run. Downstream assets carry
  ``AutomationCondition.eager()`` so they follow their upstreams without hand-written glue (the default
  automation sensor evaluates them while the daemon runs).
- ``retrain_schedule`` retrains, evaluates and refreshes recommendations for every category on a cron.
- ``run_failure_recorder`` appends every failed run to ``<data>/ops/run_failures.jsonl`` for alerting and audits.
"""

# No `from __future__ import annotations`: Dagster reads Config/resource types from the signature at runtime.
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from rec_pipeline.assets.partitions import CATEGORY_PARTITIONS
from rec_pipeline.ingest.sources import discover, fingerprint, ignored_files
from rec_pipeline.resources import Lake
from rec_pipeline.run_reaper import reap_dead_runs

MAIN_JOB_NAME = "recommender_pipeline"
INGEST_JOB_NAME = "ingest_and_features"
RETRAIN_JOB_NAME = "retrain_and_evaluate"
DEFAULT_RETRAIN_CRON = "0 3 * * 0"  # Sundays 03:00
IGNORED_CURSOR_KEY = "::ignored"  # not a category name (they cannot contain ':'), so no clash in the cursor

INGEST_GROUPS = ("ingestion", "interactions", "features")
TRAIN_GROUPS = ("training", "evaluation")


def build_jobs() -> list[Any]:
    return [
        dg.define_asset_job(
            MAIN_JOB_NAME,
            selection=dg.AssetSelection.all(),
            description="Everything: dumps to recommendations, for one category partition.",
            tags={"rec_pipeline/kind": "full"},
        ),
        dg.define_asset_job(
            INGEST_JOB_NAME,
            selection=dg.AssetSelection.groups(*INGEST_GROUPS),
            description="Ingest dumps and rebuild interactions, splits and item content features.",
        ),
        dg.define_asset_job(
            RETRAIN_JOB_NAME,
            selection=dg.AssetSelection.groups(*TRAIN_GROUPS),
            description="Retrain every model, evaluate, and refresh recommendations.",
        ),
    ]


def _fingerprints(raw_dir: Path) -> dict[str, str]:
    result = {}
    for category, dumps in discover(raw_dir).items():
        if dumps.reviews is None:
            continue
        files = [d.path for d in (dumps.reviews, dumps.meta) if d is not None]
        result[category] = fingerprint(files)
    return result


# Dagster creates a `default_automation_condition_sensor` STOPPED in a fresh instance; declaring it here with
# RUNNING makes the eager conditions act as soon as the daemon runs, as the README promises.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (eager downstream updates) while the daemon runs.",
)


@dg.sensor(
    job_name=INGEST_JOB_NAME,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a category partition and requests ingestion when a dump lands or changes in raw/.",
)
def landing_sensor(context: dg.SensorEvaluationContext, lake: Lake) -> dg.SensorResult:
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = _fingerprints(lake.layout.raw_dir)
    ignored = ignored_files(lake.layout.raw_dir)
    ignored_key = "\n".join(f"{f.path.name}: {f.reason}" for f in ignored)
    if ignored and seen.get(IGNORED_CURSOR_KEY) != ignored_key:  # said once per change, not every tick
        context.log.warning(
            "files in raw/ that are not used: " + "; ".join(f"{f.path.name} ({f.reason})" for f in ignored)
        )
    known = set(context.instance.get_dynamic_partitions(CATEGORY_PARTITIONS.name or "category"))
    new_partitions = sorted(c for c in current if c not in known)
    changed = sorted(c for c, fp in current.items() if seen.get(c) != fp)
    if changed:
        context.log.info(f"new or changed dumps: {changed}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=c, run_key=f"{c}:{current[c]}", tags={"rec_pipeline/category": c})
            for c in changed
        ],
        dynamic_partitions_requests=[CATEGORY_PARTITIONS.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps({**current, IGNORED_CURSOR_KEY: ignored_key}, sort_keys=True),
    )


def build_retrain_schedule(cron: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        job_name=RETRAIN_JOB_NAME,
        cron_schedule=cron,
        name="retrain_schedule",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Retrain, evaluate and refresh recommendations for every category ({cron}).",
    )
    def retrain_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        stamp = (
            context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else str(int(time.time()))
        )
        for category in context.instance.get_dynamic_partitions(CATEGORY_PARTITIONS.name or "category"):
            yield dg.RunRequest(
                partition_key=category, run_key=f"{category}:{stamp}", tags={"rec_pipeline/category": category}
            )

    return retrain_schedule


@dg.sensor(
    name="run_reaper",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks this host's runs whose worker process died as failed and frees pool slots held by ended runs.",
)
def run_reaper(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    report = reap_dead_runs(context.instance)
    for run_id in report.failed_runs:
        context.log.warning(f"run {run_id}: its worker is gone; marked failed")
    if report.freed_runs:
        context.log.info(f"freed pool slots held by ended runs {report.freed_runs}")
    return dg.SkipReason(
        f"{len(report.failed_runs)} dead runs failed, slots of {len(report.freed_runs)} ended runs freed"
    )


@dg.run_failure_sensor(
    name="run_failure_recorder",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records every failed run (job, partition, error) in <data>/ops/run_failures.jsonl.",
)
def run_failure_recorder(context: dg.RunFailureSensorContext, lake: Lake) -> None:
    run = context.dagster_run
    record = {
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition"),
        "error": context.failure_event.message,
        # The run-level message only names the failed steps; the cause (e.g. "no dump for category ...") is in
        # the step failures, and an alert that states it saves opening the UI.
        "failed_steps": [
            {
                "step": e.step_key,
                "error": e.step_failure_data.error.message.strip() if e.step_failure_data.error else None,
            }
            for e in context.get_step_failure_events()
        ],
        "recorded_at": time.time(),
    }
    path = lake.layout.root / "ops" / "run_failures.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:  # append-only log: one line per failure
        handle.write(json.dumps(record) + "\n")
    context.log.info(f"recorded failure of run {run.run_id} in {path}")
