"""The on-disk image cache: processed images plus one small status record per URL, keyed by sha256(url).

Layout under ``cache_dir``::

    status/ab/<sha256>.json                    what happened to the URL last time (ok / failure / deferred + reason)
    images/<variant>/ab/<sha256>.png|.jpg      the processed image, for one processing variant

``variant`` names the processing (``224x224-pad-png``): changing the target size or resize mode must not serve
images processed for another configuration, so a record says which variant it was made for and an ``ok``
record of another variant counts as not cached. Failures are variant-independent (a 404 stays a 404).
The two-character fan-out keeps directories small for millions of URLs.

A URL without a final answer (``failed_transient``, or ``deferred`` because its host was unreachable) carries
``failed_runs`` (runs in a row that ended so) and ``next_attempt_at``: later runs leave it alone until then, so
an outage costs each later run nothing instead of a full round of retries (``retry.rerun_backoff``).
Both fields have defaults, so records written before they existed still load.

Every write goes through ``rec_pipeline.atomic``: the image is written first, then its status record, so a
run killed in between leaves at worst an image without a record, which the next run simply redoes. A writer
killed mid-write leaves a temporary behind; the writes here do not look for those (``atomic_path``'s per-write
sweep lists the whole directory: 6 ms per write at 4,000 entries, more than the fsynced write), so each fetch run
sweeps the cache's folders once, at its start (``sweep_orphans``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from rec_pipeline.atomic import sweep_orphaned_temporaries, write_bytes, write_json

Status = Literal["ok", "failed_permanent", "failed_transient", "deferred"]
STATUS_VERSION = 1
RETRYABLE: frozenset[str] = frozenset({"failed_transient", "deferred"})


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def variant_name(size: tuple[int, int], resize_mode: str, output_format: str) -> str:
    return f"{size[0]}x{size[1]}-{resize_mode}-{output_format.lower()}"


@dataclass(frozen=True)
class StatusRecord:
    """One URL's outcome. ``source`` says where the bytes came from when the record was made.

    ``attempts`` counts the tries of the run that wrote the record; ``failed_runs`` and ``next_attempt_at``
    (epoch seconds) are set for retryable outcomes only (see the module docstring).
    """

    url: str
    status: Status
    reason: str | None
    detail: str | None
    variant: str | None
    source: str
    n_bytes: int | None
    width: int | None
    height: int | None
    attempts: int
    recorded_at: float
    version: int = STATUS_VERSION
    failed_runs: int = 0
    next_attempt_at: float | None = None

    @property
    def is_retryable(self) -> bool:
        return self.status in RETRYABLE

    def is_backing_off(self, now: float) -> bool:
        """Whether a run at ``now`` should leave this URL alone: retryable, and its next attempt not yet due."""
        return self.is_retryable and self.next_attempt_at is not None and self.next_attempt_at > now


@dataclass(frozen=True)
class ImageCache:
    """Paths and reads/writes for one cache folder and one processing variant (no in-memory state)."""

    root: Path
    variant: str
    extension: str

    def status_path(self, digest: str) -> Path:
        return self.root / "status" / digest[:2] / f"{digest}.json"

    def image_path(self, digest: str) -> Path:
        return self.root / "images" / self.variant / digest[:2] / f"{digest}.{self.extension}"

    def read_status(self, digest: str) -> StatusRecord | None:
        """The stored record, or None when absent or unreadable (an unreadable record means "not cached")."""
        try:
            payload = json.loads(self.status_path(digest).read_text())
            if payload.get("version") != STATUS_VERSION:
                return None
            return StatusRecord(**payload)
        except (OSError, ValueError, TypeError):
            return None

    def is_usable(self, record: StatusRecord | None, digest: str, retry_permanent: bool) -> bool:
        """Whether ``record`` answers the URL without fetching: a same-variant image, or a permanent failure."""
        if record is None:
            return False
        if record.status == "ok":
            return record.variant == self.variant and self.image_path(digest).is_file()
        return record.status == "failed_permanent" and not retry_permanent

    def write_image(self, digest: str, data: bytes) -> Path:
        return write_bytes(data, self.image_path(digest), sweep=False)  # swept per run: ``sweep_orphans``

    def write_status(self, digest: str, record: StatusRecord) -> Path:
        return write_json(asdict(record), self.status_path(digest), sweep=False)  # swept per run: ``sweep_orphans``

    def sweep_orphans(self) -> list[Path]:
        """Delete the temporaries of writers that died mid-write anywhere in the cache (every variant); return them.

        One listing per fan-out folder, so call it once per run, before the run writes: a temporary of a live
        writer (this process or another) is never touched.
        """
        removed: list[Path] = []
        for fan_outs in (self.root / "status", *_subfolders(self.root / "images")):
            for folder in _subfolders(fan_outs):
                removed += sweep_orphaned_temporaries(folder)
        return removed


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
