"""Find dumps in the landing folder and work out which category and kind each file is.

Dumps keep their original names (see FORMATS.md); the category, which becomes the Dagster partition key, is
the name the files give it: ``AMAZON_FASHION`` for ``AMAZON_FASHION_5.json.gz``, ``Musical_Instruments`` for
``reviews_Musical_Instruments_5.json.gz``.

A category name becomes a partition key and a folder name under ``warehouse/``, so it must be a plain word
(``CATEGORY_KEY``): ``reviews_..json.gz`` would otherwise write outside the warehouse. Every entry of the
landing folder that is not used is listed with the reason by ``ignored_files``, so nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from rec_pipeline.ingest.formats import RELEASES
from rec_pipeline.ingest.release import Kind

__all__ = [
    "CATEGORY_KEY",
    "CategoryDumps",
    "DumpFile",
    "IgnoredFile",
    "Kind",
    "categories_with_reviews",
    "classify",
    "discover",
    "fingerprint",
    "id_space",
    "ignored_files",
]

_PARTIAL_SUFFIXES = (".tmp", ".part", ".crdownload", ".partial", ".download")
_DUMP_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")


def _name_patterns() -> tuple[tuple[re.Pattern[str], Kind, str], ...]:
    """Each release's file-name patterns; releases that publish under the same name share one, hinted "2014/2018"."""
    releases: dict[tuple[str, Kind], list[str]] = {}
    for release in RELEASES:
        for kind in ("meta", "reviews"):
            releases.setdefault((release.file(kind).pattern().pattern, kind), []).append(release.name)
    return tuple((re.compile(regex), kind, "/".join(sorted(names))) for (regex, kind), names in releases.items())


_PATTERNS = _name_patterns()
# Releases keying items the same way share item ids: the id space of a release is all of them ("2014/2018").
_ID_SPACES = {
    r.name: "/".join(sorted(other.name for other in RELEASES if other.item_key == r.item_key)) for r in RELEASES
}
# Letters, digits, "_", "-" and "&", starting with a letter or digit (a leading "-" reads as a CLI option);
# no dots (".." is the parent folder), spaces, slashes or non-ASCII letters.
CATEGORY_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_&-]{0,99}")
_NAMED_PREFIXES = ("meta_", "reviews_")


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


class IgnoredFile(NamedTuple):
    """An entry of the landing folder that is not ingested, and why (a plain ``(path, reason)`` tuple)."""

    path: Path
    reason: str


def _match(name: str) -> tuple[re.Match[str], Kind, str] | None:
    """The first name pattern that fits; a ``meta_``/``reviews_`` name only fits the patterns of its prefix.

    Otherwise ``meta_.json.gz`` would fall through to the 2018 pattern and land as a category named ``meta_``.
    """
    prefix = next((p for p in _NAMED_PREFIXES if name.startswith(p)), None)
    for pattern, kind, release in _PATTERNS:
        if prefix is not None and not pattern.pattern.startswith(f"^{prefix}"):
            continue
        match = pattern.match(name)
        if match:
            return match, kind, release
    return None


def _why_not_a_dump(path: Path) -> str | None:
    """Why a landing-folder entry cannot be a dump by its name and type alone; None when it is one."""
    name = path.name
    if name.startswith("."):
        return "hidden file"
    if name.endswith(_PARTIAL_SUFFIXES):
        return "partial download: still being written, or abandoned"
    if path.is_dir():
        return "a directory, not a dump file"
    if not path.is_file():
        return "not a regular file"
    if not name.endswith(_DUMP_SUFFIXES):
        return "not a dump: the name does not end in .json, .json.gz, .jsonl or .jsonl.gz"
    found = _match(name)
    if found is None:
        return (
            "name fits no dump pattern: <Cat>.json.gz, <Cat>_5.json.gz, reviews_<Cat>[_5].json.gz, "
            "<Cat>.jsonl[.gz], meta_<Cat>.json[l][.gz]"
        )
    category = found[0].group("cat")
    if not CATEGORY_KEY.fullmatch(category):
        return (
            f"category name {category!r} is not usable as a partition key: use ASCII letters, digits, "
            "'_', '-' and '&' only (no dots or spaces, at most 100 characters)"
        )
    return None


def classify(path: Path) -> DumpFile | None:
    """Classify a file by name; None for files that are not dumps (README, checksums, partial downloads).

    ``ignored_files`` says why a name was refused.
    """
    name = path.name
    if name.startswith(".") or name.endswith(_PARTIAL_SUFFIXES):
        return None
    found = _match(name)
    if found is None:
        return None
    match, kind, release = found
    category = match.group("cat")
    if not CATEGORY_KEY.fullmatch(category):
        return None
    five = bool(match.groupdict().get("five"))
    return DumpFile(path=path, category=category, kind=kind, release_hint=release, five_core=five)


def id_space(dump: DumpFile) -> str:
    """Which item ids a dump uses: 2023 keys products by ``parent_asin``, 2014/2018 by the variant's ``asin``.

    Reviews and metadata pair only within one id space: 2023 reviews joined to 2018 metadata share no item.
    A hint naming several releases ("2014/2018") names releases of one id space.
    """
    return _ID_SPACES[dump.release_hint.split("/")[0]]


def _choose(category: str, dumps: list[DumpFile]) -> CategoryDumps:
    """The newest complete (reviews + metadata) pair of one release; else the newest reviews alone.

    A full dump is preferred over the 5-core one of the same release: the k-core is recomputed downstream, so
    the full file loses nothing and keeps more history.
    """
    spaces = sorted({id_space(d) for d in dumps}, reverse=True)  # "2023" before "2014/2018": newest first
    reviews = {
        s: sorted(
            (d for d in dumps if d.kind == "reviews" and id_space(d) == s), key=lambda d: (d.five_core, d.path.name)
        )
        for s in spaces
    }
    metas = {
        s: sorted((d for d in dumps if d.kind == "meta" and id_space(d) == s), key=lambda d: d.path.name)
        for s in spaces
    }
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
            why = (
                f"{dump.path.name}: {dump.release_hint} release, not paired with the {space} files used for {category}"
            )
        else:
            used = chosen or meta
            why = (
                f"{dump.path.name}: another {dump.kind} dump of the same release "
                f"({used.path.name if used else '?'} is used)"
            )
        notes.append(why)
    if chosen is not None and meta is None and any(d.kind == "meta" for d in dumps):
        notes.append(
            f"{category}: the metadata present is from another release than {chosen.path.name}: "
            "items get no text or images"
        )
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


def ignored_files(raw_dir: Path) -> list[IgnoredFile]:
    """Every entry of ``raw_dir`` that will not be ingested, with the reason, sorted by name.

    Covers names that are not dumps or not usable category keys, directories, partial downloads, dumps left
    out when pairing a category's files (see ``_choose``), and metadata of a category without reviews. Meant
    for the landing sensor, ``partitions sync`` and the summary: a file the pipeline skips must say so.
    """
    if not raw_dir.is_dir():
        return []
    ignored: list[IgnoredFile] = []
    for path in sorted(raw_dir.iterdir()):
        reason = _why_not_a_dump(path)
        if reason is not None:
            ignored.append(IgnoredFile(path, reason))
    for category, dumps in discover(raw_dir).items():
        for path in dumps.ignored:
            prefix = f"{path.name}: "
            note = next((n[len(prefix) :] for n in dumps.notes if n.startswith(prefix)), "not chosen for the category")
            ignored.append(IgnoredFile(path, note))
        if dumps.reviews is None and dumps.meta is not None:
            ignored.append(
                IgnoredFile(dumps.meta.path, f"metadata without a reviews dump: category {category} is not ingested")
            )
    return sorted(ignored, key=lambda entry: entry.path.name)


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
