"""Fixtures for operations tests: real Dagster CLIs, servers and instances in subprocesses.

Every test gets its own ``DAGSTER_HOME`` (with a copy of the repository's ``dagster.yaml``, so the tested instance
settings are the shipped ones) and its own data root, and talks to Dagster only the way an operator would: CLI
binaries, HTTP, the instance API.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from rec_pipeline_tests.conftest import REAL_DATA_DIR, REPO_ROOT

BIN_DIR = Path(sys.executable).parent
# Steps run in the launching process: the multiprocess executor would add a Python start-up per step, which on a
# shared 2-core machine costs more than the steps themselves.
IN_PROCESS_RUN_CONFIG = '{"execution": {"config": {"in_process": {}}}}'


def cli(name: str) -> str:
    """Path of a console script installed next to the running interpreter (``dagster``, ``dg``)."""
    return str(BIN_DIR / name)


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "raw").mkdir(parents=True)
    return root


# The settings the real 5-cores need: once variant copies are collapsed, their 5-cores are empty, and the
# pipeline's own error names these k (see README "Using real dumps").
REAL_DUMP_SETTINGS = """\
categories:
  All_Beauty: {ops: {interactions: {config: {k: 3}}}}
  Appliances: {ops: {interactions: {config: {k: 2}}}}
"""


def link_real_dumps(raw_dir: Path, names: Sequence[str]) -> None:
    """Symlink real dumps into a landing folder (read in place, never copied) and write the settings they need
    into the data root unless the test wrote its own; skip when ../shared is absent."""
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real dumps not found at {REAL_DATA_DIR} (../shared is absent in this checkout)")
    for name in names:
        (raw_dir / name).symlink_to(REAL_DATA_DIR / name)
    settings = raw_dir.parent / "settings.yaml"
    if not settings.exists():
        settings.write_text(REAL_DUMP_SETTINGS)


@pytest.fixture
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env(dagster_home: Path, data_dir: Path) -> dict[str, str]:
    """Environment of a CLI child: its own instance and data root, registration on load switched on."""
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(dagster_home),
        REC_PIPELINE_DATA_DIR=str(data_dir),
        REC_PIPELINE_REGISTER_ON_LOAD="1",  # the test process sets 0; the children test the real behaviour
        PYTHONWARNINGS="ignore",  # beta warnings would drown the output quoted in assertion messages
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a CLI to completion from the repository root; fail with the output's tail when it exits non-zero."""
    done = subprocess.run(list(args), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args[:4])} ... exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")
    return done


@contextlib.contextmanager
def process_group(args: Sequence[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a long-lived command in its own session and always end the whole group (servers fork children).

    SIGINT first, so that ``dagster dev`` shuts its webserver, daemon and code servers down cleanly; SIGKILL the
    group if it is still there after a grace period.
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(args), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 15) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(proc.pid):
        proc.poll()
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# PostgreSQL on 127.0.0.1 (trust auth): one fresh database per test, dropped afterwards.
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def connect_postgres(dbname: str):  # noqa: ANN202 - psycopg2 ships no type information
    import psycopg2

    return psycopg2.connect(dbname=dbname, connect_timeout=5, **PG)


@pytest.fixture
def postgres_db() -> Iterator[str]:
    import psycopg2

    try:
        admin = connect_postgres("postgres")
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable on {PG['host']}:{PG['port']}: {exc}")
    admin.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    name = f"rec_pipeline_test_{secrets.token_hex(4)}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # FORCE: pooled connections may linger
        admin.close()


@pytest.fixture
def postgres_home(dagster_home: Path, postgres_db: str) -> Path:
    settings = yaml.safe_load((dagster_home / "dagster.yaml").read_text())
    # SQLAlchemy 2.1 made psycopg 3 the default driver of plain ``postgresql://`` URLs; dagster-postgres ships
    # psycopg2 only, so the scheme must name it.
    settings["storage"] = {
        "postgres": {
            "postgres_db": {
                "hostname": PG["host"],
                "port": PG["port"],
                "username": PG["user"],
                "password": "",
                "db_name": postgres_db,
                "scheme": "postgresql+psycopg2",
            }
        }
    }
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    return dagster_home


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's headless Chromium, which `make test` installs in its set-up (tests never install packages)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs it with apt-get when run as root")
    return CHROMIUM


def chromium_command(chromium: Path, profile_dir: Path, *action: str) -> list[str]:
    """Headless Chromium that only talks to the page under test (no updates, sync or QUIC probes)."""
    return [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
        "--window-size=1600,1000",
        *action,
    ]
