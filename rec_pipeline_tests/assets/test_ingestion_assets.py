"""Real Dagster materializations of the ingestion and interaction assets on real and hand-made dumps."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rec_pipeline.assets import ingestion, interactions
from rec_pipeline.interactions.kcore import is_kcore
from rec_pipeline.paths import DataLayout
from rec_pipeline.resources import DataLake
from rec_pipeline_tests.conftest import write_lines

ASSETS = dg.load_assets_from_modules([ingestion, interactions])


def _materialize(
    data_dir: Path, categories: list[str], partition: str, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    """Hand-made dumps here are a few dozen lines: ``min_rows: 1`` unless the test says otherwise."""
    run_config = dict(run_config or {})
    ops = run_config.setdefault("ops", {})
    ops.setdefault("interactions", {"config": {}})["config"].setdefault("min_rows", 1)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("category", categories)
    return dg.materialize(
        ASSETS,
        instance=instance,
        partition_key=partition,
        resources={"lake": DataLake(data_dir=str(data_dir))},
        run_config=run_config or {},
        raise_on_error=False,
    )


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    evaluations = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": c.passed for c in evaluations}


def test_real_dump_materializes_to_a_true_kcore_with_passing_checks(real_data_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "Appliances_5.json.gz").symlink_to(real_data_dir / "Appliances_5.json.gz")  # read in place
    # Its 5-core is empty once variant copies are collapsed (see the next test); k=3 is the k the pipeline names.
    result = _materialize(
        tmp_path, ["Appliances"], "Appliances", {"ops": {"interactions": {"config": {"k": 3, "min_rows": 50}}}}
    )
    assert result.success
    checks = _checks(result)
    assert checks and all(checks.values()), checks
    meta = _metadata(result, "interactions")
    # FORMATS.md: 2,277 lines, mostly one review copied onto every variant asin, and pairs repeated.
    assert (meta["rows_in"], meta["variants/copies_collapsed"], meta["variants/events"]) == (2277, 2120, 157)
    assert meta["duplicates_removed"] > 0
    frame = pl.read_parquet(DataLayout(tmp_path).artifact("Appliances", "interactions.parquet"))
    assert is_kcore(frame, 3) and frame.height == meta["rows_out"] == 69
    splits_meta = _metadata(result, "splits")
    assert splits_meta["train_rows"] + splits_meta["validation_rows"] + splits_meta["test_rows"] == frame.height


def test_an_empty_kcore_fails_once_at_interactions_naming_a_k_that_works(real_data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "Appliances_5.json.gz").symlink_to(real_data_dir / "Appliances_5.json.gz")
    result = _materialize(
        tmp_path, ["Appliances"], "Appliances", {"ops": {"interactions": {"config": {"min_rows": 50}}}}
    )
    assert not result.success
    assert [e.step_key for e in result.all_events if e.is_step_failure] == ["interactions"]
    assert not any(e.step_key == "splits" and e.is_step_success for e in result.all_events)
    details = (
        next(
            e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.asset_check_evaluation_data.check_name == "enough_interactions"
        )
        .metadata["details"]
        .value
    )
    assert "the 5-core is empty after collapsing 2,120 variant copies (136 distinct (user, item) pairs" in details
    assert "k=3 keeps 69 interactions" in details and "settings.yaml" in details


def test_bad_lines_show_up_in_metadata_and_the_rejected_file(tmp_path: Path) -> None:
    good = [
        {"reviewerID": f"U{u}", "asin": f"B{i}", "overall": 4.0, "unixReviewTime": 1_400_000_000 + u * 10 + i}
        for u in range(6)
        for i in range(6)
    ]
    write_lines(
        tmp_path / "raw" / "Toys_5.json.gz",
        [
            *good,
            "{not json",
            {"asin": "B1", "overall": 3.0, "unixReviewTime": 1},
            {"reviewerID": "U1", "asin": "B1", "overall": "bad"},
        ],
    )
    result = _materialize(tmp_path, ["Toys"], "Toys")
    assert result.success
    meta = _metadata(result, "raw_reviews")
    assert meta["rows_out"] == 36 and meta["rejected_rows"] == 3
    assert "malformed JSON" in meta["rejected_by_reason"] and "missing user id" in meta["rejected_by_reason"]
    rejected = pl.read_parquet(DataLayout(tmp_path).artifact("Toys", "rejected_reviews.parquet"))
    assert sorted(rejected["source_line"].to_list()) == [37, 38, 39]


def test_unchanged_dump_is_not_read_twice(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "raw" / "Toys_5.json.gz",
        [
            {"reviewerID": f"U{u}", "asin": f"B{i}", "overall": 5.0, "unixReviewTime": 1}
            for u in range(5)
            for i in range(5)
        ],
    )
    assert _materialize(tmp_path, ["Toys"], "Toys").success
    second = _materialize(tmp_path, ["Toys"], "Toys")
    assert _metadata(second, "raw_reviews")["skipped_unchanged"] is True


def test_missing_category_fails_with_a_message_naming_what_is_there(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "raw" / "Toys_5.json.gz", [{"reviewerID": "U", "asin": "B", "overall": 5.0, "unixReviewTime": 1}]
    )
    result = _materialize(tmp_path, ["Toys", "Books"], "Books")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "Toys" in str(failure.event_specific_data.error.to_string()) and "Books" in str(
        failure.event_specific_data.error.to_string()
    )


def test_kcore_k_is_configurable(tmp_path: Path) -> None:
    rows = [
        {"reviewerID": f"U{u}", "asin": f"B{i}", "overall": 5.0, "unixReviewTime": 1}
        for u in range(3)
        for i in range(3)
    ]
    write_lines(tmp_path / "raw" / "Toys_5.json.gz", rows)
    result = _materialize(tmp_path, ["Toys"], "Toys", {"ops": {"interactions": {"config": {"k": 3}}}})
    assert _metadata(result, "interactions")["rows_out"] == 9
    result = _materialize(
        tmp_path,
        ["Toys"],
        "Toys",
        {"ops": {"interactions": {"config": {"k": 4}}, "raw_reviews": {"config": {"force": True}}}},
    )
    assert _metadata(result, "interactions")["rows_out"] == 0
    assert (
        json.loads(DataLayout(tmp_path).artifact("Toys", "raw_reviews.report.json").read_text())["report"]["rows_out"]
        == 9
    )


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_output_of_an_unchanged_dump_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    rows = [
        {
            "reviewerID": f"U{u}",
            "asin": f"B{i}",
            "overall": float(1 + (u * i) % 5),
            "unixReviewTime": 1_400_000_000 + u,
            "reviewText": "t" * (u + i),
        }
        for u in range(30)
        for i in range(30)
    ]
    write_lines(tmp_path / "raw" / "Toys_5.json.gz", rows)
    assert _materialize(tmp_path, ["Toys"], "Toys").success
    out = DataLayout(tmp_path).artifact("Toys", "raw_reviews.parquet")
    data = bytearray(out.read_bytes())
    if damage == "truncate":
        out.write_bytes(bytes(data[: len(data) // 2]))
    else:  # flip bytes in the middle of the column data, leaving the footer intact
        for offset in range(len(data) // 3, len(data) // 3 + 64):
            data[offset] ^= 0xFF
        out.write_bytes(bytes(data))
    again = _materialize(tmp_path, ["Toys"], "Toys")
    assert again.success
    assert _metadata(again, "raw_reviews")["skipped_unchanged"] is False
    assert pl.read_parquet(out).height == 900


def test_an_unreadable_artifact_error_names_the_path_and_the_fix(tmp_path: Path) -> None:
    from rec_pipeline.atomic import ArtifactError, read_artifact

    path = tmp_path / "warehouse" / "Toys" / "interactions.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(
        ArtifactError, match=r"interactions.parquet cannot be read .* materialize the asset that writes it again"
    ):
        read_artifact(path)


def _toys_reviews(path: Path, users: int = 5, items: int = 5) -> None:
    write_lines(
        path,
        [
            {"reviewerID": f"U{u}", "asin": f"B{i}", "overall": float(1 + (u + i) % 5), "unixReviewTime": u * 10 + i}
            for u in range(users)
            for i in range(items)
        ],
    )


def _data_versions(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], str]:
    return {
        (e.asset_key.to_user_string(), e.materialization.partition): e.materialization.tags["dagster/data_version"]
        for e in result.get_asset_materialization_events()
    }


def test_each_partitions_data_version_is_its_content_fingerprint_and_survives_an_unchanged_rerun(
    tmp_path: Path,
) -> None:
    _toys_reviews(tmp_path / "raw" / "Toys_5.json.gz")
    first = _materialize(tmp_path, ["Toys"], "Toys")
    store = DataLake(data_dir=str(tmp_path)).category("Toys")
    versions = _data_versions(first)
    for asset in ("raw_reviews", "interactions", "splits"):
        assert versions[(asset, "Toys")] == store.fingerprint(asset) == _metadata(first, asset)["content_fingerprint"]
    # The same content again: the same versions, so nothing downstream turns stale.
    assert _data_versions(_materialize(tmp_path, ["Toys"], "Toys")) == versions
    # Other content (a different split seed): that asset's version changes, its upstreams' do not.
    reseeded = _data_versions(_materialize(tmp_path, ["Toys"], "Toys", {"ops": {"splits": {"config": {"seed": 7}}}}))
    assert reseeded[("splits", "Toys")] != versions[("splits", "Toys")]
    assert reseeded[("interactions", "Toys")] == versions[("interactions", "Toys")]


def test_a_ranged_run_records_each_categorys_metadata_on_its_own_partition(tmp_path: Path) -> None:
    _toys_reviews(tmp_path / "raw" / "Toys_5.json.gz", users=5)
    _toys_reviews(tmp_path / "raw" / "Books_5.json.gz", users=7)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("category", ["Toys", "Books"])
    job = dg.Definitions(
        assets=ASSETS,
        resources={"lake": DataLake(data_dir=str(tmp_path))},
        jobs=[dg.define_asset_job("ranged", selection=dg.AssetSelection.all())],
    ).resolve_job_def("ranged")
    result = job.execute_in_process(
        instance=instance,
        run_config={"ops": {"interactions": {"config": {"min_rows": 1}}}},
        tags={"dagster/asset_partition_range_start": "Toys", "dagster/asset_partition_range_end": "Books"},
    )
    assert result.success
    rows = {
        e.materialization.partition: e.materialization.metadata["rows_out"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "interactions"
    }
    assert rows == {"Toys": 25, "Books": 35}
    for event in result.get_asset_materialization_events():
        assert not any("/" in key for key in event.materialization.metadata if not key.startswith("variants/")), event
        store = DataLake(data_dir=str(tmp_path)).category(event.materialization.partition or "")
        fingerprint = event.materialization.metadata["content_fingerprint"].value
        assert fingerprint == store.fingerprint(event.asset_key.to_user_string())


def test_an_upstream_handle_reads_only_what_that_asset_writes(tmp_path: Path) -> None:
    from rec_pipeline.warehouse import Artifact
    from rec_pipeline.warehouse_io import stored

    splits = stored(tmp_path, "splits", "Toys")
    assert list(splits) == ["Toys"]
    assert splits["Toys"].path(Artifact.TRAIN) == DataLayout(tmp_path).artifact("Toys", "splits/train.parquet")
    with pytest.raises(ValueError, match="interactions.parquet is not written by splits"):
        splits["Toys"].read(Artifact.INTERACTIONS)


def test_every_asset_receives_each_upstream_it_depends_on_as_a_named_input(tmp_path: Path) -> None:
    from rec_pipeline.definitions import build_definitions

    graph = build_definitions(str(tmp_path)).resolve_asset_graph()
    for assets_def in graph.assets_defs:
        inputs = set(assets_def.keys_by_input_name.values())
        for key in assets_def.keys:
            assert set(graph.get(key).parent_keys) <= inputs, key
