"""Atomic file writes: write to a temporary sibling, fsync, then rename.

A run killed half-way (SIGKILL, OOM) must never leave a half-written artifact that a later run would read, so
every writer in the project goes through these helpers. ``os.replace`` is atomic on POSIX within a filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl


@contextlib.contextmanager
def atomic_path(target: Path | str, *, sweep: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it over ``target``, else delete it.

    ``sweep`` first removes the orphaned temporaries of ``target`` (``remove_orphaned_temporaries``), which lists
    the whole directory: fine for a few big artifacts, but a cache writing thousands of small files into large
    directories passes ``sweep=False`` and sweeps each directory once per run instead (``sweep_orphaned_temporaries``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        remove_orphaned_temporaries(target)
    # The temporary name keeps the target's suffix (Keras and gensim pick formats by extension) and names its
    # writer (host tag and pid) so that a later writer can tell an orphan from a live sibling's file.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.{_HOST_TAG}-{os.getpid()}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
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
# Hostnames may contain dots and dashes; a short hash keeps temporary names parseable.
_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether a process of this host exists (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_orphaned_temporaries(target: Path | str) -> list[Path]:
    """Delete temporaries of ``target`` left by writers on this host that no longer exist; return them.

    A writer killed with SIGKILL (or by the OOM killer) cannot run its cleanup, so its half-written temporary
    stays behind; nothing reads it (targets are only ever replaced by rename), but a killed ingestion of a big
    dump can leave gigabytes. Files of live processes and of other hosts (shared filesystems) are left alone.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.stem)}\.([0-9a-f]{{8}})-(\d+)\.[^.]+\.tmp{re.escape(target.suffix)}$")
    return _remove_orphaned_files(target.parent, pattern)


# The name ``atomic_path`` gives any temporary: ``.<stem>.<host tag>-<pid>.<random>.tmp<suffix>``.
_ANY_TEMPORARY = re.compile(r"^\..+\.([0-9a-f]{8})-(\d+)\.[^.]+\.tmp(?:\.[^.]+)?$")


def sweep_orphaned_temporaries(directory: Path | str) -> list[Path]:
    """Delete the temporaries of *any* target in ``directory`` whose writer on this host is gone; return them.

    The once-per-run counterpart of ``remove_orphaned_temporaries`` for writers that pass ``atomic_path(...,
    sweep=False)``: one listing of the directory instead of one per write.
    """
    return _remove_orphaned_files(Path(directory), _ANY_TEMPORARY)


def _remove_orphaned_files(directory: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Delete the files in ``directory`` whose name matches ``pattern`` (groups: host tag, pid) of dead writers."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or match.group(1) != _HOST_TAG or pid_alive(int(match.group(2))):
            continue
        if entry.is_dir(follow_symlinks=False):  # a model save's temporary directory: remove_orphaned_directories
            continue
        with contextlib.suppress(FileNotFoundError):  # a concurrent writer may have removed it first
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def writer_tag() -> str:
    """``<host tag>-<pid>``: names a temporary's writer, so a later writer can tell an orphan from a live one."""
    return f"{_HOST_TAG}-{os.getpid()}"


def remove_orphaned_directories(target: Path | str) -> list[Path]:
    """Delete temporary sibling *directories* of ``target`` (``.<name>.<writer>.<random>.tmp|.old``) whose writer
    on this host is gone: what a model save killed mid-way leaves behind (``models.artifacts``)."""
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.([0-9a-f]{{8}})-(\d+)\.[^.]+\.(tmp|old)$")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if (
            match is None
            or not entry.is_dir(follow_symlinks=False)
            or match.group(1) != _HOST_TAG
            or pid_alive(int(match.group(2)))
        ):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def write_parquet(frame: pl.DataFrame, target: Path | str) -> Path:
    """Write a frame as Parquet (zstd) atomically."""
    with atomic_path(target) as tmp:
        frame.write_parquet(tmp, compression="zstd")
    return Path(target)


def write_json(payload: Any, target: Path | str, *, sweep: bool = True) -> Path:
    """Write JSON atomically (sorted keys, so files diff cleanly); ``sweep`` as in ``atomic_path``."""
    with atomic_path(target, sweep=sweep) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    return Path(target)


def write_bytes(data: bytes, target: Path | str, *, sweep: bool = True) -> Path:
    """Write bytes atomically; ``sweep`` as in ``atomic_path``."""
    with atomic_path(target, sweep=sweep) as tmp:
        tmp.write_bytes(data)
    return Path(target)


class ArtifactError(RuntimeError):
    """An artifact on disk cannot be read; the message names the file and how to rebuild it."""


def parquet_problem(path: Path | str, expected_rows: int | None = None, full: bool = False) -> str | None:
    """Why ``path`` cannot be trusted, or None when it reads: the footer (cheap, catches truncation), the row count
    when one is expected, and with ``full`` every page (catches flipped bytes in any column)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        parquet = pq.ParquetFile(path)
        rows = parquet.metadata.num_rows
        if expected_rows is not None and rows != expected_rows:
            return f"holds {rows} rows, {expected_rows} expected"
        if full:
            for batch in parquet.iter_batches(batch_size=1 << 16):
                del batch
    except Exception as exc:  # noqa: BLE001 - any reader error means the file is not to be trusted
        return f"{type(exc).__name__}: {exc}"
    return None


def read_artifact(path: Path | str, columns: list[str] | None = None) -> pl.DataFrame:
    """``pl.read_parquet`` that names the file and the fix when it fails ("File out of specification" alone does
    not)."""
    path = Path(path)
    try:
        return pl.read_parquet(path, columns=columns)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path} does not exist: materialize the asset that writes it first") from exc
    except Exception as exc:  # noqa: BLE001 - re-raised with the path and the fix
        raise ArtifactError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}); it is damaged: materialize the asset that writes it "
            "again (with `force: true` for raw_reviews/raw_items), which replaces it atomically"
        ) from exc


def read_cache(path: Path | str, log: Any = None) -> pl.DataFrame | None:
    """A cache table from an earlier run, or None when there is none or it is damaged (then it is rebuilt: a cache
    is only ever an optimisation, so a bad one must cost a recomputation, never a failed run)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader error: recompute
        if log is not None:
            log.warning(f"cache {path} is damaged ({type(exc).__name__}: {exc}); recomputing what it held")
        return None
