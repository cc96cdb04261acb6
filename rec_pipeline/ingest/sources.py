"""Find dumps in the landing folder and work out which category and kind each file is.

Dumps keep their original names (see FORMATS.md); the category, which becomes the Dagster partition key, is
the name the files give it: ``AMAZON_FASHION`` for ``AMAZON_FASHION_5.json.gz``, ``Musical_Instruments`` for
``reviews_Musical_Instruments_5.json.gz``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["reviews", "meta"]

_PATTERNS: tuple[tuple[re.Pattern[str], Kind, str], ...] = (
    (re.compile(r"^meta_(?P<cat>.+?)\.jsonl(\.gz)?$"), "meta", "2023"),
    (re.compile(r"^meta_(?P<cat>.+?)\.json(\.gz)?$"), "meta", "2014/2018"),
    (re.compile(r"^reviews_(?P<cat>.+?)(?P<five>_5)?\.json(\.gz)?$"), "reviews", "2014"),
    (re.compile(r"^(?P<cat>.+?)\.jsonl(\.gz)?$"), "reviews", "2023"),
    (re.compile(r"^(?P<cat>.+?)(?P<five>_5)?\.json(\.gz)?$"), "reviews", "2018"),
)
_VALID_KEY = re.compile(r"^[A-Za-z0-9_.\-&]+$")


@dataclass(frozen=True)
class DumpFile:
    """One file in the landing folder, classified by name (the release is confirmed from content later)."""

    path: Path
    category: str
    kind: Kind
    release_hint: str
    five_core: bool


@dataclass(frozen=True)
class CategoryDumps:
    """The reviews (required) and metadata (optional) dump of one category."""

    category: str
    reviews: DumpFile | None
    meta: DumpFile | None
    ignored: tuple[Path, ...] = ()


def classify(path: Path) -> DumpFile | None:
    """Classify a file by name; None for files that are not dumps (README, checksums, partial downloads)."""
    name = path.name
    if name.startswith(".") or name.endswith((".tmp", ".part", ".crdownload")):
        return None
    for pattern, kind, release in _PATTERNS:
        match = pattern.match(name)
        if match:
            category = match.group("cat")
            if not _VALID_KEY.match(category):
                return None
            five = bool(match.groupdict().get("five"))
            return DumpFile(path=path, category=category, kind=kind, release_hint=release, five_core=five)
    return None


def discover(raw_dir: Path) -> dict[str, CategoryDumps]:
    """Map category name to its dumps. A full dump is preferred over the 5-core one when both landed.

    The k-core is recomputed downstream anyway, so the full file loses nothing and keeps more history.
    """
    found: dict[str, list[DumpFile]] = {}
    if not raw_dir.is_dir():
        return {}
    for path in sorted(raw_dir.iterdir()):
        if path.is_file():
            dump = classify(path)
            if dump is not None:
                found.setdefault(dump.category, []).append(dump)
    result: dict[str, CategoryDumps] = {}
    for category, dumps in found.items():
        reviews = sorted((d for d in dumps if d.kind == "reviews"), key=lambda d: (d.five_core, d.path.name))
        metas = [d for d in dumps if d.kind == "meta"]
        chosen = reviews[0] if reviews else None
        ignored = tuple(d.path for d in reviews[1:])
        result[category] = CategoryDumps(category, chosen, metas[0] if metas else None, ignored)
    return result


def categories_with_reviews(raw_dir: Path) -> list[str]:
    """Categories that can be ingested (a metadata file alone is not enough)."""
    return sorted(c for c, d in discover(raw_dir).items() if d.reviews is not None)


def fingerprint(paths: Iterable[Path]) -> str:
    """A cheap identity of files: name, size and mtime (hashing 10 GB dumps on every sensor tick would be absurd)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]
