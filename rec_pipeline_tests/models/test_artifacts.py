from __future__ import annotations

from pathlib import Path

import pytest

from rec_pipeline.models.artifacts import atomic_directory, read_manifest, write_manifest


def test_atomic_directory_replaces_an_existing_model(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary leftovers


def test_failed_write_leaves_the_previous_model_untouched(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("killed mid-save")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_manifest_round_trip_and_missing_manifest(tmp_path: Path) -> None:
    write_manifest(tmp_path, "mf", {"x": 1})
    assert read_manifest(tmp_path)["config"] == {"x": 1}
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "nothing")
