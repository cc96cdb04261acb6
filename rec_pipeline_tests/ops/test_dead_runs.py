"""A training step SIGKILLed mid-run leaves no claimed `gpu` slot and no immortal run once the reaper has looked.

Before: the killed run stayed STARTED forever and kept its `gpu` pool slot, so every later Keras step waited
"blocked by limit for pool gpu". Real processes, real SIGKILL of the whole process group (as the OOM killer or a
killed terminal would), the shipped dagster.yaml (pool default limit 1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from rec_pipeline.assets import ingestion, interactions
from rec_pipeline.resources import DataLake
from rec_pipeline.run_reaper import HOST_TAG, reap_dead_runs, this_host
from rec_pipeline.sample import SampleSpec, write_sample
from rec_pipeline_tests.ops.conftest import REPO_ROOT, cli, run_cli, subprocess_env

CATEGORY = "Slot_Toys"
# Long enough to be killed in: hundreds of epochs of small batches, no early stop.
SLOW_TRAINING = "ops:\n  model_mf: {config: {epochs: 500, early_stopping_patience: 500, batch_size: 16}}\n"


def _claimed(home: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [slot.run_id for slot in instance.event_log_storage.get_concurrency_info("gpu").claimed_slots]


def _runs(home: Path) -> list[dg.DagsterRun]:
    """The runs of the CLI under test (not the in-process run that prepared the upstream assets)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [r for r in instance.get_runs() if r.job_name == "__ASSET_JOB"]


@pytest.mark.slow
def test_a_killed_training_run_is_failed_its_gpu_slot_freed_and_the_next_run_trains(
    dagster_home: Path, data_dir: Path
) -> None:
    write_sample(
        data_dir, SampleSpec(category=CATEGORY, n_users=150, n_items=40, n_reviews=2500, image_size=16, seed=2)
    )
    (data_dir / "settings.yaml").write_text(SLOW_TRAINING)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("category", [CATEGORY])
        upstream = dg.materialize(
            [ingestion.raw_reviews, interactions.interactions, interactions.splits],
            instance=instance,
            partition_key=CATEGORY,
            resources={"lake": DataLake(data_dir=str(data_dir))},
        )
        assert upstream.success

    command = [
        cli("dagster"),
        "asset",
        "materialize",
        "-m",
        "rec_pipeline.definitions",
        "--select",
        "model_mf",
        "--partition",
        CATEGORY,
    ]
    env = subprocess_env(dagster_home, data_dir)
    log_path = dagster_home / "killed_run.log"
    in_process = {"execution": {"config": {"in_process": {}}}}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "--config-json", json.dumps(in_process)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while not _claimed(dagster_home):  # the training step holds the one `gpu` slot
            assert proc.poll() is None, f"the run ended before it was killed:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the training step never claimed its gpu slot"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    [killed] = [r for r in _runs(dagster_home) if r.status == dg.DagsterRunStatus.STARTED]
    # Tagged by its first step, unless the kill came before that: SQLite storage means this host either way.
    assert killed.tags.get(HOST_TAG) in (None, this_host())
    assert _claimed(dagster_home) == [killed.run_id]  # the leak, as it was

    reaped = json.loads(run_cli([cli("rec-pipeline"), "runs", "reap"], env).stdout)
    assert reaped == {"failed_runs": [killed.run_id], "freed_runs": [killed.run_id]}
    [after] = _runs(dagster_home)
    assert after.status == dg.DagsterRunStatus.FAILURE and _claimed(dagster_home) == []

    quick = {**in_process, "ops": {"model_mf": {"config": {"epochs": 1}}}}
    run_cli([*command, "--config-json", json.dumps(quick)], env, timeout=240)
    assert sorted(r.status.value for r in _runs(dagster_home)) == ["FAILURE", "SUCCESS"]
    assert _claimed(dagster_home) == []


def test_runs_of_other_hosts_and_live_workers_are_left_alone(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    job = dg.define_asset_job("j", selection="a")
    defs = dg.Definitions(assets=[dg.asset(lambda: None, name="a")], jobs=[job])
    result = defs.resolve_job_def("j").execute_in_process(instance=instance)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    # Pretend the run is still STARTED on another host, then on this one with a live worker: nothing to reap.
    instance.handle_run_event(run.run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name))
    instance.add_run_tags(run.run_id, {HOST_TAG: "elsewhere"})
    assert reap_dead_runs(instance, alive=lambda pid: False).failed_runs == []
    instance.add_run_tags(run.run_id, {HOST_TAG: this_host()})
    assert reap_dead_runs(instance, alive=lambda pid: True).failed_runs == []
    assert reap_dead_runs(instance, alive=lambda pid: False).failed_runs == [run.run_id]


def test_an_untagged_run_on_local_sqlite_storage_is_judged_too(tmp_path: Path) -> None:
    """Killed between claiming its slot and its first step's code: no host tag yet, but SQLite means this host."""
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        job = dg.define_asset_job("j", selection="a")
        defs = dg.Definitions(assets=[dg.asset(lambda: None, name="a")], jobs=[job])
        run_id = defs.resolve_job_def("j").execute_in_process(instance=instance).run_id
        run = instance.get_run_by_id(run_id)
        assert run is not None and HOST_TAG not in run.tags
        instance.handle_run_event(run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name))
        assert reap_dead_runs(instance, alive=lambda pid: False).failed_runs == [run_id]
