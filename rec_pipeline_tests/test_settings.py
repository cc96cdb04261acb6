"""The settings file: one source for every launch path, category overrides, run config on top, typos refused."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rec_pipeline.assets import ingestion, interactions
from rec_pipeline.resources import DataLake
from rec_pipeline.settings import Settings, SettingsError, load_settings, merge_config, parse_settings
from rec_pipeline_tests.conftest import write_lines

DEFAULTS = {"k": 5, "collapse_variants": True}
DOC = {
    "ops": {"interactions": {"config": {"k": 3}}},
    "categories": {"Small": {"ops": {"interactions": {"config": {"k": 2}}}}},
}


def test_layers_apply_in_order_defaults_file_category_run_config(tmp_path: Path) -> None:
    settings = parse_settings(DOC, tmp_path / "settings.yaml")
    assert merge_config(DEFAULTS, settings, "interactions", "Big", {})[0]["k"] == 3
    merged, sources = merge_config(DEFAULTS, settings, "interactions", "Small", {})
    assert merged["k"] == 2 and sources == {"k": "settings file (Small)"}
    merged, sources = merge_config(DEFAULTS, settings, "interactions", "Small", {"k": 7})
    assert merged["k"] == 7 and sources == {"k": "run config"}
    assert merge_config(DEFAULTS, Settings(), "interactions", "Small", {})[0] == DEFAULTS


def test_a_misspelled_setting_is_refused_naming_the_file_and_the_valid_names(tmp_path: Path) -> None:
    settings = parse_settings({"ops": {"interactions": {"config": {"kk": 2}}}}, tmp_path / "settings.yaml")
    with pytest.raises(
        SettingsError,
        match=r"settings.yaml: `interactions` has no setting 'kk'; its settings are: collapse_variants, k",
    ):
        merge_config(DEFAULTS, settings, "interactions", None, {})


@pytest.mark.parametrize(
    "text, message",
    [
        ("ops: [1, 2]", "`ops` must be a mapping"),
        ("opps: {}", "unknown top-level keys"),
        ("ops: {interactions: {k: 2}}", "must hold only `config:"),
        ("categories: {X: {interactions: {}}}", "must hold only an `ops:` block"),
        ("ops: {interactions: {config: [", "not valid YAML"),
    ],
)
def test_malformed_files_get_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(path)


def test_a_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.yaml") == Settings()


def _write_reviews(raw: Path, category: str, n_users: int, n_items: int) -> None:
    """Every user rates every item: a dense block whose k-core is itself for k <= min(users, items)."""
    lines = [
        f'{{"reviewerID": "U{u}", "asin": "I{i}", "overall": {1 + (u + i) % 5}.0, '
        f'"unixReviewTime": {1_500_000_000 + u * 100 + i}, '
        f'"reviewText": "review {u} {i}"}}'
        for u in range(n_users)
        for i in range(n_items)
    ]
    write_lines(raw / f"{category}_5.json.gz", lines)


def test_the_settings_file_reaches_a_plain_materialization_per_category_and_run_config_overrides(
    tmp_path: Path,
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_reviews(raw, "Wide", 12, 12)
    _write_reviews(raw, "Narrow", 12, 3)  # every item has 12 ratings, every user 3: empty 5-core
    (tmp_path / "settings.yaml").write_text(
        "ops: {interactions: {config: {min_rows: 10}}}\ncategories: {Narrow: {ops: {interactions: {config: {k: 3}}}}}\n"
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("category", ["Narrow", "Wide"])
    assets = [ingestion.raw_reviews, interactions.interactions]
    lake = DataLake(data_dir=str(tmp_path))
    for key in ("Narrow", "Wide"):
        result = dg.materialize(assets, instance=instance, partition_key=key, resources={"lake": lake})
        assert result.success
    narrow = result.asset_materializations_for_node("interactions")  # last run: Wide
    assert narrow[0].metadata["kcore_k"].value == 5
    rows = {c: pl.read_parquet(tmp_path / "warehouse" / c / "interactions.parquet").height for c in ("Narrow", "Wide")}
    assert rows == {"Narrow": 36, "Wide": 144}
    # The run's own config wins over the file: k=4 empties Narrow, and the blocking check says which k works.
    result = dg.materialize(
        assets,
        instance=instance,
        partition_key="Narrow",
        resources={"lake": lake},
        run_config={"ops": {"interactions": {"config": {"k": 4}}}},
        raise_on_error=False,
    )
    assert not result.success
    check = next(
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "enough_interactions"
    )
    assert not check.passed
    assert (
        "the 4-core is empty" in check.metadata["details"].value
        and "k=3 keeps 36 interactions" in check.metadata["details"].value
    )
