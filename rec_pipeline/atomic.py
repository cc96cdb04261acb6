"""Atomic file writes: write to a temporary sibling, fsync, then rename.

A run killed half-way (SIGKILL, OOM) must never leave a half-written artifact that a later run would read, so
every writer in the project goes through these helpers. ``os.replace`` is atomic on POSIX within a filesystem.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it over ``target``, else delete it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the target's suffix: Keras and gensim pick formats by extension.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            # mkstemp creates 0600; give the file the mode a plain open() would (0666 less the umask).
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _read_umask() -> int:
    # os.umask can only be read by setting it; do that once, at import, before any writer threads exist.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_parquet(frame: pl.DataFrame, target: Path | str) -> Path:
    """Write a frame as Parquet (zstd) atomically."""
    with atomic_path(target) as tmp:
        frame.write_parquet(tmp, compression="zstd")
    return Path(target)


def write_json(payload: Any, target: Path | str) -> Path:
    """Write JSON atomically (sorted keys, so files diff cleanly)."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    return Path(target)


def write_bytes(data: bytes, target: Path | str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)
