"""The instance on PostgreSQL (the README's team deployment): runs, events and partitions land in the database.

A fresh database per test keeps runs independent and leaves nothing behind; the test drives the real CLI against
a ``dagster.yaml`` that is the shipped one plus the ``storage: postgres`` block the README tells people to add.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from rec_pipeline_tests.ops.conftest import (
    IN_PROCESS_RUN_CONFIG,
    cli,
    connect_postgres,
    link_real_dumps,
    run_cli,
    subprocess_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_cli_run_stores_run_events_and_partitions_in_postgres(
    postgres_home: Path, postgres_db: str, data_dir: Path
) -> None:
    link_real_dumps(data_dir / "raw", ["All_Beauty_5.json.gz"])
    run_cli(
        [
            cli("dagster"),
            "asset",
            "materialize",
            "-m",
            "rec_pipeline.definitions",
            "--select",
            "raw_reviews,interactions,splits",
            "--partition",
            "All_Beauty",
            "--config-json",
            IN_PROCESS_RUN_CONFIG,
        ],
        subprocess_env(postgres_home, data_dir),
        timeout=240,
    )

    with dg.DagsterInstance.from_config(str(postgres_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"  # not a silent fallback to SQLite
        assert instance.get_dynamic_partitions("category") == ["All_Beauty"]  # registered on load, in Postgres
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        for asset in ("raw_reviews", "interactions", "splits"):
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            assert event is not None and event.run_id == runs[0].run_id, asset
            assert event.asset_materialization is not None and event.asset_materialization.partition == "All_Beauty"
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("interactions"), "kcore_invariant")]
        )
        assert list(check.values())[0].status.value == "SUCCEEDED"
        run_id = runs[0].run_id

    # The same facts straight from the tables, so the assertion does not depend on Dagster reading its own cache.
    with connect_postgres(postgres_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs")
        assert cur.fetchall() == [(run_id, "SUCCESS")]
        cur.execute(
            "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY id"
        )
        rows = cur.fetchall()
        assert [(key, part) for key, part in rows] == [
            ('["raw_reviews"]', "All_Beauty"),
            ('["interactions"]', "All_Beauty"),
            ('["splits"]', "All_Beauty"),
        ]
        cur.execute("SELECT partitions_def_name, partition FROM dynamic_partitions")
        assert cur.fetchall() == [("category", "All_Beauty")]
    conn.close()
