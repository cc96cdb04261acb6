"""End runs whose worker died, and give back the pool slots they held.

Dagster's default run launcher cannot tell whether a run worker is alive, so a run whose process was SIGKILLed
(or OOM-killed, or whose CLI was killed) stays STARTED forever, and a step of the `gpu` pool it was running keeps
its slot claimed: every later Keras step then waits "blocked by limit for pool gpu". The daemon's
``free_slots_after_run_end_seconds`` (dagster.yaml) frees slots of runs that *ended*; this module ends the runs
that cannot end themselves.

A run is reaped only when it was started on this host and the process that wrote its RUN_START event no longer
exists. "On this host": its steps tagged it with the host name, or the instance keeps runs in local SQLite files,
which only this host's processes write (a run killed before its first step ran has no tag yet). Runs of other
hosts (a shared Postgres instance with Celery or Kubernetes workers) are never touched: a pid means nothing there.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from rec_pipeline.atomic import pid_alive

HOST_TAG = "rec_pipeline/host"


def this_host() -> str:
    return socket.gethostname()


def tag_run_with_host(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Record where a run executes (once per run), so that only this host's reaper judges it."""
    if run.tags.get(HOST_TAG) != this_host():
        instance.add_run_tags(run.run_id, {HOST_TAG: this_host()})


def _run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    if not records or records[0].event_log_entry.dagster_event is None:
        return None
    return records[0].event_log_entry.dagster_event.pid


def _local_storage(instance: dg.DagsterInstance) -> bool:
    """Whether runs are kept in SQLite files under DAGSTER_HOME (one host by construction)."""
    return "sqlite" in type(instance.run_storage).__name__.lower()


@dataclass(frozen=True)
class ReapReport:
    failed_runs: list[str]  # STARTED runs whose worker is gone, now marked failed
    freed_runs: list[str]  # ended runs that still held pool slots, now freed


def reap_dead_runs(
    instance: dg.DagsterInstance, host: str | None = None, alive: Callable[[int], bool] = pid_alive
) -> ReapReport:
    """Mark this host's STARTED runs with a dead worker as failed, and free the slots of every ended run."""
    host = host or this_host()
    local = _local_storage(instance)
    failed: list[str] = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        tagged = run.tags.get(HOST_TAG)
        if tagged != host and not (tagged is None and local):
            continue
        pid = _run_worker_pid(instance, run.run_id)
        if pid is None or alive(pid):
            continue
        instance.report_run_failed(
            run, f"run worker (pid {pid} on {host}) is gone (killed or out of memory): marked failed by run_reaper"
        )
        failed.append(run.run_id)
    freed: list[str] = []
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        holding = storage.get_concurrency_run_ids()
        if holding:
            ended = instance.get_run_records(
                dg.RunsFilter(
                    run_ids=list(holding),
                    statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.SUCCESS],
                )
            )
            for record in ended:
                storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
                freed.append(record.dagster_run.run_id)
    return ReapReport(failed, freed)
