"""The automation a deployment relies on while nobody watches: landing sensor, retrain schedule, failure log.

Evaluated through Dagster's own context builders on real instances and real files; applying a sensor's
dynamic-partition request to the instance between ticks stands in for the daemon.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import dagster as dg
import pytest

from rec_pipeline import automation
from rec_pipeline.assets.ingestion import raw_reviews
from rec_pipeline.definitions import RETRAIN_CRON_ENV, build_definitions
from rec_pipeline.resources import DataLake
from rec_pipeline_tests.conftest import write_lines

REVIEWS = [
    {"reviewerID": f"U{u}", "asin": f"B{i}", "overall": 4.0, "unixReviewTime": 1_400_000_000 + u * 10 + i}
    for u in range(3)
    for i in range(3)
]


def _tick(instance: dg.DagsterInstance, data_dir: Path, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": DataLake(data_dir=str(data_dir))}
    ) as context:
        result = automation.landing_sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:  # what the daemon does with the request
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
    return result


def _requested(result: dg.SensorResult) -> list[str]:
    return [r.partition_key for r in result.run_requests or []]


def _added(result: dg.SensorResult) -> list[str]:
    return [k for r in result.dynamic_partitions_requests or [] for k in r.partition_keys or []]


def test_landing_sensor_requests_ingestion_once_per_new_or_changed_dump(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    instance = dg.DagsterInstance.ephemeral()

    empty = _tick(instance, tmp_path, None)
    assert _requested(empty) == [] and _added(empty) == []

    write_lines(raw / "Toys_5.json.gz", REVIEWS)
    write_lines(raw / "meta_Garden.json.gz", [{"asin": "B1", "title": "a rake"}])  # metadata alone: not ingestible
    landed = _tick(instance, tmp_path, empty.cursor)
    assert _requested(landed) == ["Toys"] and _added(landed) == ["Toys"]
    request = landed.run_requests[0]
    assert request.tags["rec_pipeline/category"] == "Toys"  # the per-category run concurrency limit keys on it
    assert instance.get_dynamic_partitions("category") == ["Toys"]

    same = _tick(instance, tmp_path, landed.cursor)
    assert _requested(same) == [] and _added(same) == []

    os.utime(raw / "Toys_5.json.gz", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))  # touched
    touched = _tick(instance, tmp_path, same.cursor)
    assert _requested(touched) == ["Toys"] and _added(touched) == []
    assert touched.run_requests[0].run_key != request.run_key  # a new run key, or the daemon would drop it

    write_lines(raw / "Toys_5.json.gz", REVIEWS * 2)  # a new release replaces the file: new size
    replaced = _tick(instance, tmp_path, touched.cursor)
    assert _requested(replaced) == ["Toys"]
    assert len({request.run_key, touched.run_requests[0].run_key, replaced.run_requests[0].run_key}) == 3


def test_landing_sensor_ingests_a_category_registered_on_load_but_never_ingested(tmp_path: Path) -> None:
    write_lines(tmp_path / "raw" / "Toys_5.json.gz", REVIEWS)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("category", ["Toys"])  # as register_landed_categories does when code loads
    result = _tick(instance, tmp_path, None)
    assert _requested(result) == ["Toys"] and _added(result) == []


def test_landing_sensor_run_requests_target_a_job_that_exists(tmp_path: Path) -> None:
    defs = build_definitions(str(tmp_path))
    sensor = defs.resolve_sensor_def("landing_sensor")
    assert sensor.job_name == automation.INGEST_JOB_NAME
    assert {k.to_user_string() for k in defs.resolve_job_def(sensor.job_name).asset_layer.executable_asset_keys} >= {
        "raw_reviews",
        "interactions",
        "splits",
    }


def test_retrain_schedule_requests_one_run_per_category_and_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RETRAIN_CRON_ENV, raising=False)
    # The schedule as deployed: run requests with partition keys are resolved against the repository's job.
    repository = build_definitions(str(tmp_path)).get_repository_def()
    schedule = repository.get_schedule_def("retrain_schedule")
    # A persistent instance: schedule contexts hold an instance reference, which ephemeral instances lack.
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path))
    sunday = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)

    def tick(when: dt.datetime) -> list[dg.RunRequest]:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when, repository_def=repository)
        return list(schedule.evaluate_tick(context).run_requests or [])

    assert tick(sunday) == []  # no categories yet: nothing to retrain

    instance.add_dynamic_partitions("category", ["Toys", "Books", "All_Beauty"])
    first = tick(sunday)
    assert [r.partition_key for r in first] == ["Toys", "Books", "All_Beauty"]
    assert all(r.tags["rec_pipeline/category"] == r.partition_key for r in first)
    keys = [r.run_key for r in [*first, *tick(sunday + dt.timedelta(days=7))]]
    assert len(set(keys)) == 6  # each week's runs are new runs, not deduplicated away
    assert (
        schedule.job_name == automation.RETRAIN_JOB_NAME and schedule.cron_schedule == automation.DEFAULT_RETRAIN_CRON
    )
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # retraining starts only when switched on


def test_retrain_cron_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRAIN_CRON_ENV, "30 1 * * *")
    defs = build_definitions(str(tmp_path))
    assert defs.resolve_schedule_def("retrain_schedule").cron_schedule == "30 1 * * *"


def test_run_failure_recorder_appends_each_failed_run_to_the_ops_log(tmp_path: Path) -> None:
    write_lines(tmp_path / "raw" / "Toys_5.json.gz", REVIEWS)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("category", ["Toys", "Books"])
    lake = DataLake(data_dir=str(tmp_path))
    failures = []
    for _ in range(2):  # Books has no dump: a real failing run, twice
        result = dg.materialize(
            [raw_reviews], instance=instance, partition_key="Books", resources={"lake": lake}, raise_on_error=False
        )
        assert not result.success
        failures.append(result)

    for result in failures:
        with dg.build_run_status_sensor_context(
            sensor_name="run_failure_recorder",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            resources={"lake": lake},
        ) as context:
            automation.run_failure_recorder(context.for_run_failure())

    lines = (tmp_path / "ops" / "run_failures.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["run_id"] for r in records] == [f.run_id for f in failures]  # appended, in order, none lost
    assert all(r["partition"] == "Books" and r["job"] == failures[0].dagster_run.job_name for r in records)
    assert all("raw_reviews" in r["error"] for r in records)
    # The cause, not just "step failed": the asset's own message naming the missing and the present categories.
    assert [s["step"] for s in records[0]["failed_steps"]] == ["raw_reviews"]
    assert (
        "no dump for category 'Books'" in records[0]["failed_steps"][0]["error"]
        and "Toys" in records[0]["failed_steps"][0]["error"]
    )


def test_landing_sensor_reports_unusable_files_once_and_never_registers_them(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "raw"
    write_lines(raw / "Toys_5.json.gz", REVIEWS)
    write_lines(raw / "reviews_.._5.json.gz", REVIEWS)  # would have written outside warehouse/
    write_lines(raw / "My Toys_5.json.gz", REVIEWS)  # a space: not a safe partition key
    (raw / "Dir_5.json.gz").mkdir()
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(instance, tmp_path, None)
    assert _requested(first) == ["Toys"] and instance.get_dynamic_partitions("category") == ["Toys"]
    said = [line for line in capfd.readouterr().err.splitlines() if "not used" in line]  # the sensor's log
    assert len(said) == 1 and all(
        name in said[0] for name in ("reviews_.._5.json.gz", "My Toys_5.json.gz", "Dir_5.json.gz")
    )
    _tick(instance, tmp_path, first.cursor)
    assert "not used" not in capfd.readouterr().err  # unchanged: not repeated every tick
