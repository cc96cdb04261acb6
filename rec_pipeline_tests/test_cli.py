"""The `rec-pipeline` console script, run as a user runs it: a real subprocess with its own DAGSTER_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rec_pipeline import cli
from rec_pipeline_tests.conftest import write_lines

SCRIPT = Path(sys.executable).parent / "rec-pipeline"


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "REC_PIPELINE_REGISTER_ON_LOAD": "1"}
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "rec_pipeline.cli"]
    return subprocess.run(command + args, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_make_sample_then_partitions_sync_registers_the_category(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    made = _run(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "make-sample",
            "--category",
            "Mini_Toys",
            "--release",
            "2023",
            "--users",
            "120",
            "--items",
            "30",
            "--reviews",
            "1200",
        ],
        home,
    )
    assert made.returncode == 0, made.stderr
    files = json.loads(made.stdout)["files"]
    assert any(f.endswith("raw/Mini_Toys.jsonl.gz") for f in files) and any(
        f.endswith("raw/meta_Mini_Toys.jsonl.gz") for f in files
    )
    synced = _run(["--data-dir", str(tmp_path / "data"), "partitions", "sync"], home)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout.strip().splitlines()[-1]) == {
        "added": ["Mini_Toys"],
        "partitions": ["Mini_Toys"],
        "ignored": {},
    }


def test_recommend_before_materializing_says_which_asset_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(
        tmp_path / "raw" / "Toys_5.json.gz", [{"reviewerID": "U1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1}]
    )
    assert cli.main(["--data-dir", str(tmp_path), "recommend", "--category", "Toys", "--user", "U1"]) == 2
    assert "materialize the `recommendations` asset" in capsys.readouterr().err


def test_recommend_for_an_unknown_category_names_the_known_ones_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(
        tmp_path / "raw" / "Toys_5.json.gz", [{"reviewerID": "U1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1}]
    )
    assert cli.main(["--data-dir", str(tmp_path), "recommend", "--category", "Books", "--user", "U1"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("rec-pipeline: no category 'Books' under ")
        and err.rstrip().endswith("known: Toys")
        and err.count("\n") == 1
    )


def test_summary_of_an_unmaterialized_category_is_empty_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--data-dir", str(tmp_path), "summary", "--category", "Toys"]) == 0
    assert json.loads(capsys.readouterr().out)["assets"] == {}
