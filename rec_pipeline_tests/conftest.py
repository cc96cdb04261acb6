"""Shared fixtures. Real files only: gzip dumps written by the tests, the real dumps in ../shared when present."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests build their own instances; never register partitions into a developer's DAGSTER_HOME on import.
os.environ["REC_PIPELINE_REGISTER_ON_LOAD"] = "0"

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture
def real_data_dir() -> Path:
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real dumps not found at {REAL_DATA_DIR} (../shared is absent in this checkout)")
    return REAL_DATA_DIR


def write_lines(path: Path, lines: Iterable[str | bytes | dict], compress: bool = True) -> Path:
    """Write JSON lines (dicts are serialized, str/bytes written as they are) to a real (gzip) file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = b"".join(
        (json.dumps(line).encode() if isinstance(line, dict) else line.encode() if isinstance(line, str) else line)
        + b"\n"
        for line in lines
    )
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)
    return path
