"""Categories as dynamic partitions, discovered from the landing folder.

Dagster's CLI only accepts ``--partition K`` for dynamic keys already added to the instance. So that a user who
drops a dump into ``raw/`` and runs the CLI does not hit that wall, categories found in ``raw/`` are added
whenever the code location loads (``register_landed_categories``) and by the landing sensor while the daemon
runs; ``rec-pipeline partitions sync`` does the same by hand.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import dagster as dg

from rec_pipeline.ingest.sources import categories_with_reviews

CATEGORY_PARTITIONS = dg.DynamicPartitionsDefinition(name="category")
REGISTER_ON_LOAD_ENV = "REC_PIPELINE_REGISTER_ON_LOAD"
REGISTERED_ENV = "_REC_PIPELINE_CATEGORIES_REGISTERED_FROM"  # set after registering, so child processes skip it

_log = logging.getLogger(__name__)


def sync_category_partitions(instance: dg.DagsterInstance, raw_dir: Path) -> list[str]:
    """Add a partition for every category with a reviews dump in ``raw_dir``; return the keys newly added."""
    landed = categories_with_reviews(raw_dir)
    existing = set(instance.get_dynamic_partitions(CATEGORY_PARTITIONS.name or "category"))
    new = [c for c in landed if c not in existing]
    if new:
        instance.add_dynamic_partitions(CATEGORY_PARTITIONS.name or "category", new)
    return new


RUN_WORKER_COMMANDS = frozenset({"execute_run", "resume_run", "execute_step", "execute_step_with_structured_logs"})


def in_run_worker(argv: list[str] | None = None) -> bool:
    """True in the processes Dagster starts to execute a run or a step (``dagster api execute_step`` ...).

    A run was launched for a partition that already exists, so registering again there is pure cost: one instance
    connection and one directory scan per step process, at import time.
    """
    return bool(RUN_WORKER_COMMANDS & set(argv if argv is not None else sys.argv))


def register_landed_categories(raw_dir: Path) -> list[str]:
    """Best-effort registration when the code loads, against the instance of ``$DAGSTER_HOME``.

    Skipped when DAGSTER_HOME is unset (ephemeral instances, unit tests), when ``REC_PIPELINE_REGISTER_ON_LOAD=0``,
    and in run and step worker processes (``in_run_worker``); failures are logged, never raised, so a storage outage
    cannot stop the code location from loading.
    """
    if os.environ.get(REGISTER_ON_LOAD_ENV, "1") == "0" or not os.environ.get("DAGSTER_HOME") or in_run_worker():
        return []
    if os.environ.get(REGISTERED_ENV) == str(raw_dir):  # a parent process (e.g. the CLI running this run) did it
        return []
    os.environ[REGISTERED_ENV] = str(raw_dir)  # inherited by the step processes this one starts
    try:
        with dg.DagsterInstance.get() as instance:
            added = sync_category_partitions(instance, raw_dir)
    except Exception as exc:  # noqa: BLE001 - loading the code must not depend on this convenience
        _log.warning("could not register landed categories as partitions: %s", exc)
        return []
    if added:
        _log.info("registered new category partitions: %s", ", ".join(added))
    return added
