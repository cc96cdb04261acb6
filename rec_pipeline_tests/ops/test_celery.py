"""Steps on Celery workers (README "Scaling out"): the real ``dagster-celery worker start`` command, RabbitMQ as
broker, Redis as result backend and the instance on PostgreSQL, as a deployment over several machines has them.

Two workers run a partition of a small generated category launched by the real CLI with
``REC_PIPELINE_EXECUTOR=celery``. While the first Keras step runs, its worker is SIGKILLed (a lost host): the broker
hands the unacknowledged step to the other worker and the run still finishes. Every queue the test creates is
deleted, and the results it left in Redis.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from rec_pipeline.demo import demo_ops_config
from rec_pipeline.deploy import CELERY_BACKEND_ENV, CELERY_BROKER_ENV, CELERY_QUEUE_ENV, EXECUTOR_ENV, CelerySettings
from rec_pipeline.sample import SampleSpec, write_sample
from rec_pipeline.settings import dump_settings
from rec_pipeline_tests.conftest import REPO_ROOT
from rec_pipeline_tests.ops.conftest import BIN_DIR, cli, process_group, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BROKER = "pyamqp://guest@127.0.0.1:5672//"
BACKEND = "redis://127.0.0.1:6379/0"
CATEGORY = "Celery_Toys"
# A subset of the graph that fits the test budget: ingestion and a baseline (no TensorFlow) and two Keras models in
# the `gpu` pool, one of which loses its worker.
NUMPY_STEPS = ["raw_reviews", "interactions", "splits", "model_biases"]
KERAS_STEPS = ["model_mf", "model_autorec"]
WORKERS = ("rec-a", "rec-b")
RUN_TIMEOUT_S = 240


def _unreachable(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc}"


@pytest.fixture
def celery_settings() -> Iterator[CelerySettings]:
    """Broker and backend on 127.0.0.1, and a queue of this test's own, deleted afterwards."""
    down = [reason for reason in (_unreachable("127.0.0.1", 5672), _unreachable("127.0.0.1", 6379)) if reason]
    if down:
        pytest.skip(f"RabbitMQ and Redis are needed on 127.0.0.1 for the Celery test; not reachable: {'; '.join(down)}")
    settings = CelerySettings(broker=BROKER, backend=BACKEND, queue=f"rec_pipeline_test_{secrets.token_hex(4)}")
    try:
        yield settings
    finally:
        from kombu import Connection

        with Connection(BROKER, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(settings.queue)


@pytest.fixture
def small_category(data_dir: Path) -> Path:
    write_sample(
        data_dir, SampleSpec(category=CATEGORY, n_users=150, n_items=40, n_reviews=2000, image_size=16, seed=11)
    )
    ops = {name: entry for name, entry in demo_ops_config().items() if name in KERAS_STEPS}
    for entry in ops.values():
        entry["config"].update(epochs=2, embedding_dim=8)
    (data_dir / "settings.yaml").write_text(dump_settings({"ops": ops}))
    return data_dir


def _deploy_env(home: Path, data_dir: Path, celery: CelerySettings) -> dict[str, str]:
    env = subprocess_env(home, data_dir)
    env.update(
        {
            EXECUTOR_ENV: "celery",
            CELERY_BROKER_ENV: celery.broker,
            CELERY_BACKEND_ENV: celery.backend,
            CELERY_QUEUE_ENV: celery.queue,
        }
    )
    # `dagster-celery worker start` runs the `celery` console script by name.
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    return env


def _wait_for_log(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    pytest.fail(f"no {text!r} in {path.name} (exit code {proc.poll()}):\n{path.read_text(errors='replace')[-3000:]}")


def _type(record: dg.EventLogEntry) -> str | None:
    return record.dagster_event.event_type_value if record.dagster_event is not None else None


def _worker_of(record: dg.EventLogEntry) -> str | None:
    """The worker named by dagster-celery's "Executing steps ... in celery worker" engine event, if it is one."""
    if _type(record) != "ENGINE_EVENT":
        return None
    value = record.get_dagster_event().engine_event_data.metadata.get("Celery worker")
    return str(value.value).split("@")[0] if value is not None else None


def _gpu_attempts(records: list[dg.EventLogEntry]) -> list[tuple[float, float, str]]:
    """(start, end, step) of every attempt of a Keras step. An attempt lost with its worker ends when the step's
    next attempt starts: until then it still holds its `gpu` slot."""
    marks: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for r in records:
        if r.step_key in KERAS_STEPS and (kind := _type(r)) in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE"):
            marks[r.step_key].append((r.timestamp, kind))
    attempts = []
    for step, events in marks.items():
        starts = sorted(t for t, kind in events if kind == "STEP_START")
        end = max(t for t, kind in events if kind != "STEP_START")
        attempts += [(start, until, step) for start, until in zip(starts, [*starts[1:], end], strict=True)]
    return sorted(attempts)


def _step_started_in_worker(
    instance: dg.DagsterInstance, launcher: subprocess.Popen[bytes], timeout: float
) -> tuple[str, str]:
    """Wait until a Keras step has started in a worker; return (step, worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launcher.poll() is None:
        for run in instance.get_runs(limit=1):
            records = instance.all_logs(run.run_id)
            workers = {r.step_key: worker for r in records if (worker := _worker_of(r))}
            for r in records:
                if _type(r) == "STEP_START" and r.step_key in KERAS_STEPS and r.step_key in workers:
                    return r.step_key, workers[r.step_key]
        time.sleep(0.2)
    pytest.fail(f"no Keras step started in a worker (launcher exit code {launcher.poll()})")


def _forget_results(logs: list[Path]) -> None:
    """Delete the results the workers stored in Redis (task ids from their logs)."""
    import redis

    text = "".join(log.read_text(errors="replace") for log in logs if log.exists())
    ids = set(re.findall(r"execute_plan\[([0-9a-f-]{36})\]", text))
    if ids:
        with contextlib.closing(redis.Redis.from_url(BACKEND, socket_timeout=5)) as client:
            client.delete(*(f"celery-task-meta-{i}" for i in ids))


@pytest.fixture
def workers(
    postgres_home: Path,
    small_category: Path,
    celery_settings: CelerySettings,
    tmp_path: Path,
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Two workers started as the README says, each in its own process group, always stopped (SIGINT, then SIGKILL)."""
    env = _deploy_env(postgres_home, small_category, celery_settings)
    config = subprocess.run(
        [str(BIN_DIR / "python"), "-m", "rec_pipeline.deploy", "celery-worker-config"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (tmp_path / "celery_worker.yaml").write_text(config)
    # Create the instance's tables once, before the workers start: two workers opening a fresh Postgres database
    # at the same moment race to create the schema ("type run_tags already exists"), as any fleet's first start would.
    with dg.DagsterInstance.from_config(str(postgres_home)):
        pass
    logs = {name: tmp_path / f"{name}.log" for name in WORKERS}
    with contextlib.ExitStack() as stack:
        stack.callback(_forget_results, list(logs.values()))
        procs = {
            name: stack.enter_context(
                process_group(
                    [
                        cli("dagster-celery"),
                        "worker",
                        "start",
                        "-A",
                        "dagster_celery.app",
                        "-y",
                        str(tmp_path / "celery_worker.yaml"),
                        "-q",
                        celery_settings.queue,
                        "-n",
                        name,
                        "-i",
                        "rec_pipeline.definitions",
                        "--",
                        "--concurrency=1",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                    ],
                    env,
                    logs[name],
                )
            )
            for name in WORKERS
        }
        for name, proc in procs.items():
            _wait_for_log(logs[name], "ready.", proc, timeout=60)
        yield procs


def test_steps_run_in_celery_workers_one_gpu_step_at_a_time_and_a_lost_worker_is_retried(
    workers: dict[str, subprocess.Popen[bytes]],
    postgres_home: Path,
    small_category: Path,
    celery_settings: CelerySettings,
    tmp_path: Path,
) -> None:
    launcher_log = tmp_path / "launcher.log"
    started = time.monotonic()
    with open(launcher_log, "wb") as out, dg.DagsterInstance.from_config(str(postgres_home)) as instance:
        launcher = subprocess.Popen(
            [
                cli("dagster"),
                "asset",
                "materialize",
                "-m",
                "rec_pipeline.definitions",
                "--select",
                ",".join(NUMPY_STEPS + KERAS_STEPS),
                "--partition",
                CATEGORY,
            ],
            cwd=REPO_ROOT,
            env=_deploy_env(postgres_home, small_category, celery_settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            killed_step, killed_worker = _step_started_in_worker(instance, launcher, timeout=RUN_TIMEOUT_S)
            os.killpg(
                workers[killed_worker].pid, signal.SIGKILL
            )  # the whole worker: CLI, Celery main process, step process
            try:
                launcher.wait(timeout=RUN_TIMEOUT_S - (time.monotonic() - started))
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"the run hung after worker {killed_worker} was killed during {killed_step}:\n"
                    f"{launcher_log.read_text(errors='replace')[-3000:]}"
                )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(timeout=30)
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS, launcher_log.read_text(
            errors="replace"
        )[-4000:]
        records = list(instance.all_logs(runs[0].run_id))

    materialized = {r.get_dagster_event().asset_key for r in records if _type(r) == "ASSET_MATERIALIZATION"}
    assert {dg.AssetKey(name) for name in NUMPY_STEPS + KERAS_STEPS} <= materialized

    # Steps ran in the workers, each attempt in a process of its own, none in the launcher's process.
    launcher_pid = next(r.get_dagster_event().pid for r in records if _type(r) == "PIPELINE_START")
    step_pids = [r.get_dagster_event().pid for r in records if _type(r) == "STEP_START"]
    assert launcher_pid not in step_pids and len(set(step_pids)) == len(step_pids), (launcher_pid, step_pids)
    ran_in: dict[str, list[str]] = defaultdict(list)
    for r in records:
        if (worker := _worker_of(r)) is not None:
            ran_in[str(r.step_key)].append(worker)
    assert sum(len(w) for w in ran_in.values()) == len(step_pids), (ran_in, step_pids)
    assert {w for ws in ran_in.values() for w in ws} == set(WORKERS), ran_in

    # The lost step was handed to the other worker and succeeded there, once.
    survivor = next(w for w in WORKERS if w != killed_worker)
    assert ran_in[killed_step] == [killed_worker, survivor], ran_in[killed_step]
    kinds = [_type(r) for r in records if r.step_key == killed_step]
    assert kinds.count("STEP_START") == 2 and kinds.count("STEP_SUCCESS") == 1, kinds

    # The `gpu` pool admitted one Keras step at a time, across both workers.
    attempts = _gpu_attempts(records)
    assert len(attempts) == len(KERAS_STEPS) + 1, attempts
    overlaps = [(a, b) for a, b in zip(attempts, attempts[1:], strict=False) if b[0] < a[1]]
    assert not overlaps, overlaps
