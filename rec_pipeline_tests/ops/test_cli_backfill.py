"""Materializing from the shell with Dagster's own CLIs, the way the README tells operators to.

Each test starts from a fresh ``DAGSTER_HOME``: a dump dropped into ``raw/`` must be usable as ``--partition`` at
once (the code location registers landed categories when it loads), and a range over two categories must run
as one run (``BackfillPolicy.single_run``) in the order the partitions were added.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rec_pipeline.paths import DataLayout
from rec_pipeline_tests.ops.conftest import IN_PROCESS_RUN_CONFIG, cli, link_real_dumps, run_cli, subprocess_env

pytestmark = pytest.mark.slow


def _materialized(home: Path, asset: str) -> set[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


def test_dagster_cli_materializes_a_just_dropped_dump_without_registering_it_first(
    dagster_home: Path, data_dir: Path
) -> None:
    link_real_dumps(data_dir / "raw", ["All_Beauty_5.json.gz"])
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_dynamic_partitions("category") == []  # really never registered

    # The exact command from the README, default (multiprocess) executor included.
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
        ],
        subprocess_env(dagster_home, data_dir),
        timeout=240,
    )

    layout = DataLayout(data_dir)
    reviews = pl.read_parquet(layout.artifact("All_Beauty", "raw_reviews.parquet"))
    interactions = pl.read_parquet(layout.artifact("All_Beauty", "interactions.parquet"))
    split_rows = sum(
        pl.read_parquet(layout.artifact("All_Beauty", f"splits/{name}.parquet")).height
        for name in ("train", "validation", "test")
    )
    assert reviews.height > interactions.height > 0  # duplicates and the k-core removed something, not everything
    assert split_rows == interactions.height
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_dynamic_partitions("category") == ["All_Beauty"]
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        assert runs[0].tags["dagster/partition"] == "All_Beauty"
    for asset in ("raw_reviews", "interactions", "splits"):
        assert _materialized(dagster_home, asset) == {"All_Beauty"}, asset


def test_dg_launch_materializes_one_asset_for_one_partition(dagster_home: Path, data_dir: Path) -> None:
    link_real_dumps(data_dir / "raw", ["Appliances_5.json.gz"])
    run_cli(
        [
            cli("dg"),
            "launch",
            "--assets",
            "raw_reviews",
            "--partition",
            "Appliances",
            "-m",
            "rec_pipeline.definitions",
            "--config-json",
            IN_PROCESS_RUN_CONFIG,
        ],
        subprocess_env(dagster_home, data_dir),
        timeout=180,
    )

    layout = DataLayout(data_dir)
    assert pl.read_parquet(layout.artifact("Appliances", "raw_reviews.parquet")).height > 0
    assert not layout.artifact("Appliances", "interactions.parquet").exists()  # only the selected asset ran
    assert _materialized(dagster_home, "raw_reviews") == {"Appliances"}


def test_partition_range_over_two_categories_runs_once_in_the_order_partitions_were_added(
    dagster_home: Path, data_dir: Path
) -> None:
    link_real_dumps(data_dir / "raw", ["All_Beauty_5.json.gz", "Appliances_5.json.gz"])
    # Dynamic partitions are ordered by when they were added, not by name: register Appliances first so that
    # the range below is only valid in registration order.
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("category", ["Appliances", "All_Beauty"])

    run_cli(
        [
            cli("dagster"),
            "asset",
            "materialize",
            "-m",
            "rec_pipeline.definitions",
            "--select",
            "raw_reviews,interactions,splits",
            "--partition-range",
            "Appliances...All_Beauty",
            "--config-json",
            IN_PROCESS_RUN_CONFIG,
        ],
        subprocess_env(dagster_home, data_dir),
        timeout=240,
    )

    layout = DataLayout(data_dir)
    for category in ("Appliances", "All_Beauty"):
        assert pl.read_parquet(layout.artifact(category, "raw_reviews.parquet")).height > 0, category
        assert pl.read_parquet(layout.artifact(category, "splits/train.parquet")).height > 0, category
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_dynamic_partitions("category") == ["Appliances", "All_Beauty"]  # loading added nothing
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert runs[0].tags["dagster/asset_partition_range_start"] == "Appliances"
        assert runs[0].tags["dagster/asset_partition_range_end"] == "All_Beauty"
    for asset in ("raw_reviews", "interactions", "splits"):
        assert _materialized(dagster_home, asset) == {"Appliances", "All_Beauty"}, asset
