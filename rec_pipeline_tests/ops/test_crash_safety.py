"""A run killed with SIGKILL mid-write leaves no partial artifact, and the next run recovers on its own.

SIGKILL (the OOM killer, a node going away) gives the process no chance to clean up, so the guarantee has to
come from how files are written: to a temporary sibling, renamed over the target only when complete
(``rec_pipeline.atomic``). The orphaned temporary is swept by the next writer of the same target.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rec_pipeline.assets.ingestion import raw_reviews
from rec_pipeline.atomic import _HOST_TAG, remove_orphaned_temporaries, write_bytes
from rec_pipeline.paths import DataLayout
from rec_pipeline.resources import DataLake
from rec_pipeline_tests.ops.conftest import IN_PROCESS_RUN_CONFIG, REPO_ROOT, cli, run_cli, subprocess_env

BIG_LINES = 1_500_000  # about 2 s of ingestion on one core: a wide window to kill in
SMALL_LINES = 1_000


def _write_dump(path: Path, n_lines: int) -> None:
    """A 2018-format reviews dump; level-1 gzip because the test needs volume fast, not a small file."""
    lines = (
        b'{"reviewerID": "U%d", "asin": "B%d", "overall": %d.0, "unixReviewTime": %d, "reviewText": "review %d"}\n'
        % (i % 20011, i % 3001, 1 + i % 5, 1_400_000_000 + i, i)
        for i in range(n_lines)
    )
    tmp = path.with_name(f".{path.name}.part")  # landed by rename, as a downloader would
    with gzip.open(tmp, "wb", compresslevel=1) as handle:
        handle.write(b"".join(lines))
    os.replace(tmp, path)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _temporaries(folder: Path, stem: str) -> list[Path]:
    return sorted(folder.glob(f".{stem}.*.tmp.parquet"))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_sigkill_during_ingestion_keeps_the_previous_version_and_the_rerun_completes(
    dagster_home: Path, data_dir: Path
) -> None:
    layout = DataLayout(data_dir)
    dump = layout.raw_dir / "Big_5.json.gz"
    target = layout.artifact("Big", "raw_reviews.parquet")
    _write_dump(dump, SMALL_LINES)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("category", ["Big"])
        first = dg.materialize(
            [raw_reviews], instance=instance, partition_key="Big", resources={"lake": DataLake(data_dir=str(data_dir))}
        )
    assert first.success and pl.read_parquet(target).height == SMALL_LINES
    previous = _digest(target)

    _write_dump(dump, BIG_LINES)  # a new release of the dump lands: the next run must re-ingest it
    command = [
        cli("dagster"),
        "asset",
        "materialize",
        "-m",
        "rec_pipeline.definitions",
        "--select",
        "raw_reviews",
        "--partition",
        "Big",
        "--config-json",
        IN_PROCESS_RUN_CONFIG,
    ]
    env = subprocess_env(dagster_home, data_dir)
    log_path = dagster_home / "killed_run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        # Mid-write means at least one row group is on disk: a Parquet file starts with a 4-byte magic header.
        while not any(p.stat().st_size > 4 for p in _temporaries(target.parent, "raw_reviews") if p.exists()):
            assert proc.poll() is None, f"the run ended before it was killed:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no temporary raw_reviews file appeared within 120 s"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: no handler, no cleanup, like the OOM killer
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    orphans = _temporaries(target.parent, "raw_reviews")
    assert orphans, "the kill came after the rename; nothing was tested"
    assert _digest(target) == previous  # still the complete previous version, byte for byte
    assert pl.read_parquet(target).height == SMALL_LINES
    report = json.loads(layout.artifact("Big", "raw_reviews.report.json").read_text())
    assert report["report"]["rows_out"] == SMALL_LINES  # the sidecar was not advanced either: the rerun re-reads

    run_cli(command, env, timeout=240)
    assert pl.read_parquet(target).height == BIG_LINES
    assert json.loads(layout.artifact("Big", "raw_reviews.report.json").read_text())["report"]["rows_out"] == BIG_LINES
    assert not any(p.exists() for p in orphans)  # swept by the next writer of the same target
    assert _temporaries(target.parent, "raw_reviews") == [] and _temporaries(target.parent, "rejected_reviews") == []
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        latest = instance.get_latest_materialization_event(dg.AssetKey("raw_reviews"))
        assert latest is not None and instance.get_run_by_id(latest.run_id).status == dg.DagsterRunStatus.SUCCESS


def test_orphaned_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "raw_reviews.parquet"
    orphan = tmp_path / f".raw_reviews.{_HOST_TAG}-{_dead_pid()}.abc12345.tmp.parquet"
    live = tmp_path / f".raw_reviews.{_HOST_TAG}-{os.getpid()}.abc12345.tmp.parquet"
    other_host = tmp_path / f".raw_reviews.00000000-{_dead_pid()}.abc12345.tmp.parquet"  # a shared filesystem
    other_target = tmp_path / f".raw_reviews.report.{_HOST_TAG}-{_dead_pid()}.abc12345.tmp.json"
    for path in (orphan, live, other_host, other_target):
        path.write_bytes(b"PAR1 half written")

    assert remove_orphaned_temporaries(target) == [orphan]
    assert live.exists() and other_host.exists() and other_target.exists()


def test_every_atomic_write_sweeps_orphans_of_its_target(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    orphan = tmp_path / f".model.{_HOST_TAG}-{_dead_pid()}.abc12345.tmp.keras"
    orphan.write_bytes(b"half")
    write_bytes(b"complete", target)
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_model_directories_left_by_killed_saves_are_swept_by_the_next_save(tmp_path: Path) -> None:
    from rec_pipeline.models.artifacts import atomic_directory

    target = tmp_path / "models" / "mf"
    target.parent.mkdir()
    dead, live = _dead_pid(), os.getpid()
    orphans = [
        target.parent / f".mf.{_HOST_TAG}-{dead}.abc123.tmp",
        target.parent / f".mf.{_HOST_TAG}-{dead}.def456.old",
    ]
    kept = [target.parent / f".mf.{_HOST_TAG}-{live}.ghi789.tmp", target.parent / f".mf.00000000-{dead}.jkl012.tmp"]
    for folder in (*orphans, *kept):
        (folder / "variables").mkdir(parents=True)
        (folder / "variables" / "weights.bin").write_bytes(b"half a model")
    with atomic_directory(target) as tmp:
        (tmp / "model.json").write_text("{}")
    assert (target / "model.json").is_file()
    assert not any(p.exists() for p in orphans) and all(p.exists() for p in kept)
