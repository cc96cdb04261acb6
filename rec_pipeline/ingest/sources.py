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
    """The reviews (required) and metadata (optional) dump of one category, from one release.

    ``ignored`` lists the other dumps of the category that landed, and ``notes`` says why each was left out.
    """

    category: str
    reviews: DumpFile | None
    meta: DumpFile | None
    ignored: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()


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


def id_space(dump: DumpFile) -> str:
    """Which item ids a dump uses: 2023 keys products by ``parent_asin``, 2014/2018 by the variant's ``asin``.

    Reviews and metadata pair only within one id space: 2023 reviews joined to 2018 metadata share no item.
    """
    return "2023" if dump.release_hint == "2023" else "2014/2018"


def _choose(category: str, dumps: list[DumpFile]) -> CategoryDumps:
    """The newest complete (reviews + metadata) pair of one release; else the newest reviews alone.

    A full dump is preferred over the 5-core one of the same release: the k-core is recomputed downstream, so
    the full file loses nothing and keeps more history.
    """
    spaces = sorted({id_space(d) for d in dumps}, reverse=True)  # "2023" before "2014/2018": newest first
    reviews = {s: sorted((d for d in dumps if d.kind == "reviews" and id_space(d) == s), key=lambda d: (d.five_core, d.path.name)) for s in spaces}
    metas = {s: sorted((d for d in dumps if d.kind == "meta" and id_space(d) == s), key=lambda d: d.path.name) for s in spaces}
    complete = [s for s in spaces if reviews[s] and metas[s]]
    with_reviews = [s for s in spaces if reviews[s]]
    space = complete[0] if complete else (with_reviews[0] if with_reviews else spaces[0])
    chosen = reviews[space][0] if reviews[space] else None
    meta = metas[space][0] if metas[space] else None
    notes: list[str] = []
    for dump in dumps:
        if dump is chosen or dump is meta:
            continue
        if id_space(dump) != space:
            why = f"{dump.path.name}: {dump.release_hint} release, not paired with the {space} files used for {category}"
        else:
            why = f"{dump.path.name}: another {dump.kind} dump of the same release ({(chosen or meta).path.name if (chosen or meta) else '?'} is used)"
        notes.append(why)
    if chosen is not None and meta is None and any(d.kind == "meta" for d in dumps):
        notes.append(f"{category}: the metadata present is from another release than {chosen.path.name}: items get no text or images")
    ignored = tuple(d.path for d in dumps if d is not chosen and d is not meta)
    return CategoryDumps(category, chosen, meta, ignored, tuple(notes))


def discover(raw_dir: Path) -> dict[str, CategoryDumps]:
    """Map category name to its dumps: reviews and metadata of one release (see ``_choose``)."""
    found: dict[str, list[DumpFile]] = {}
    if not raw_dir.is_dir():
        return {}
    for path in sorted(raw_dir.iterdir()):
        if path.is_file():
            dump = classify(path)
            if dump is not None:
                found.setdefault(dump.category, []).append(dump)
    return {category: _choose(category, dumps) for category, dumps in found.items()}


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
