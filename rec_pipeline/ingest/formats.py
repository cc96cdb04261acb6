"""The registry of dump releases, and release detection from content.

Each release is described once, in its own module (``release_2014``, ``release_2018``, ``release_2023``; the
shape is in ``release``). Adding a release means adding one such module and listing it in ``RELEASES``; the
reader, the validation, the quarantine and the sample writer are shared.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from typing import Any

from rec_pipeline.ingest import release_2014, release_2018, release_2023
from rec_pipeline.ingest.release import (
    MAX_LITERAL_LINE_BYTES,
    NO,
    Kind,
    Release,
    SniffEvidence,
    SourceFormat,
)

__all__ = [
    "MAX_LITERAL_LINE_BYTES",
    "META_2014",
    "META_2018",
    "META_2023",
    "RELEASES",
    "REVIEWS_2014",
    "REVIEWS_2018",
    "REVIEWS_2023",
    "SNIFF_RECORDS",
    "SOURCE_FORMATS",
    "SourceFormat",
    "format_for",
    "release",
    "sniff_format",
]

SNIFF_RECORDS = 200
# Newest first: when two releases fit the evidence equally well, the newer one is taken.
RELEASES: tuple[Release, ...] = (release_2023.RELEASE, release_2018.RELEASE, release_2014.RELEASE)
SOURCE_FORMATS: tuple[SourceFormat, ...] = tuple(r.format(kind) for r in RELEASES for kind in ("reviews", "meta"))

REVIEWS_2014, META_2014 = release_2014.REVIEWS, release_2014.METADATA
REVIEWS_2018, META_2018 = release_2018.REVIEWS, release_2018.METADATA
REVIEWS_2023, META_2023 = release_2023.REVIEWS, release_2023.METADATA


def release(name: str) -> Release:
    """The release called ``name`` ("2014", "2018", "2023")."""
    for candidate in RELEASES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown release {name!r}: choose one of {[r.name for r in RELEASES]}")


def format_for(name: str, kind: Kind) -> SourceFormat:
    """The format of one release's reviews or metadata files."""
    return release(name).format(kind)


def _sniff_decode(line: bytes) -> tuple[Any, bool]:
    """(decoded value or None, whether it was a Python literal); any failure just means "no evidence"."""
    try:
        return json.loads(line), False
    except Exception:  # noqa: BLE001 - bad JSON, bad UTF-8, nesting too deep, out of memory: all mean "skip"
        pass
    if len(line) > MAX_LITERAL_LINE_BYTES or not line.startswith(b"{"):
        return None, False
    try:
        return ast.literal_eval(line.decode("utf-8", errors="surrogateescape")), True
    except Exception:  # noqa: BLE001 - as above, and literal_eval also raises TypeError ({[1]: 2})
        return None, False


def sniff_format(kind: Kind, sample_lines: Iterable[bytes], max_records: int = SNIFF_RECORDS) -> SourceFormat:
    """Detect the release from content (names lie: 2014 and 2018 metadata share ``meta_<Cat>.json.gz``).

    Looks at the keys of the first ``max_records`` lines that decode to a record, skipping anything else
    (blank, malformed, nested too deep, not an object), so bad lines at the top cannot decide or abort the
    ingest; ``sample_lines`` may be a lazy iterator, consumed only that far. Each release's format rates the
    evidence (its ``sniff``); the best rating wins, the newest release on a tie. Raises ValueError naming what
    it saw when nothing fits.
    """
    seen: set[str] = set()
    literal_lines = 0
    records = 0
    for line in sample_lines:
        line = line.strip()
        if not line:
            continue
        obj, literal = _sniff_decode(line)
        if not isinstance(obj, dict):
            continue
        seen.update(key for key in obj if isinstance(key, str))
        literal_lines += literal
        records += 1
        if records >= max_records:
            break
    evidence = SniffEvidence(frozenset(seen), literal_lines)
    rated = [(fmt.sniff(evidence), fmt) for fmt in SOURCE_FORMATS if fmt.kind == kind]
    best = max((rating for rating, _ in rated), default=NO)
    if best > NO:
        return next(fmt for rating, fmt in rated if rating == best)
    raise ValueError(
        f"cannot tell which Amazon dump release this {kind} file is: keys seen in the first lines were "
        f"{sorted(seen)[:20] or 'none (no decodable line)'}"
    )
