"""Atomic model directories: a saved model appears complete or not at all.

A model is several files (network, vocabularies, arrays, ``model.json``); writing them straight into the target
would let a killed run leave a directory that ``load_model`` half-reads. They are written into a hidden sibling
and swapped in with renames instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rec_pipeline.atomic import remove_orphaned_directories, writer_tag

MANIFEST = "model.json"
FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_directory(target: Path | str) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``target``; on success it replaces ``target``.

    ``os.replace`` cannot replace a non-empty directory, so an existing target is first renamed aside and
    deleted after the swap; the only window without a model is between two renames on the same filesystem.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_directories(target)  # left by saves that were killed (SIGKILL, OOM) before they finished
    prefix = f".{target.name}.{writer_tag()}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        old: Path | None = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=target.parent))
            os.replace(target, old / "previous")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(directory: Path, kind: str, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    payload = {"kind": kind, "format_version": FORMAT_VERSION, "config": config, **(extra or {})}
    (directory / MANIFEST).write_text(json.dumps(payload, indent=2, sort_keys=True))


def read_manifest(directory: Path | str) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a saved rec_pipeline model directory")
    payload = json.loads(path.read_text())
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {payload.get('format_version')!r}")
    return payload


def is_saved_model(directory: Path | str) -> bool:
    """Whether ``directory`` holds a complete saved model (its manifest is written last, inside the swap)."""
    return (Path(directory) / MANIFEST).is_file()
