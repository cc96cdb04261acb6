"""The shape of one dump release: what each of ``release_2014``, ``release_2018`` and ``release_2023`` fills in.

A release is described once, in its own module: its file names, the field names of its review and metadata
records (ids, rating, time, text, image keys), the rule that recognises its files from their content and the
expressions that map its records to the common schema. The reader (``formats``, ``lines``, ``normalize``,
``sources``) and the sample writer (``rec_pipeline.sample.dumps``) both ask these objects; neither spells a
release's field name itself, and the golden-line tests pin the objects to the real files.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

Kind = Literal["reviews", "meta"]

STR = pl.String()
F64 = pl.Float64()
I64 = pl.Int64()
BOOL = pl.Boolean()
STRS = pl.List(pl.String())
EMPTY_STRS = pl.lit([], dtype=STRS)
# ast.literal_eval builds a syntax tree first: about 500 bytes of memory per byte of a line like "[1,1,1,...]",
# so a 16 MB line would take 8 GB. Real 2014 metadata lines are a few kB; longer ones are rejected unread.
MAX_LITERAL_LINE_BYTES = 1 << 20
_SURROGATE = re.compile("[\ud800-\udfff]")
# Sniffing confidence (see ``SourceFormat.sniff``): a key only this release writes, or merely its family's keys.
CONFIRMED = 2
POSSIBLE = 1
NO = 0


@dataclass(frozen=True)
class ReviewFields:
    """The key each part of a review record is written under in one release (None: the release has none)."""

    user: str
    item: str  # the item the rating is about (2023: the product, ``parent_asin``)
    rating: str
    time: str  # seconds (2014/2018) or milliseconds (2023)
    text: str
    summary: str
    variant: str | None = None  # the variant bought, where ``item`` is the product (2023 ``asin``)
    date: str | None = None  # the day as text, beside ``time`` ("MM D, YYYY")
    votes: str | None = None
    verified: str | None = None
    images: str | None = None  # review photos
    style: str | None = None
    user_name: str | None = None

    def keys(self) -> frozenset[str]:
        """Every key a review record of the release may carry."""
        return frozenset(v for v in vars(self).values() if v is not None)


@dataclass(frozen=True)
class MetaFields:
    """The key each part of a metadata record is written under in one release (None: the release has none).

    ``image_keys`` lists the alternative key sets a file may hold its product images under, each best first
    (2018: large categories write ``imageURLHighRes`` and ``imageURL``, small ones ``image``); a file uses one of
    them, the reader reads them all. ``other`` are keys the release writes that the reader does not use.
    """

    item: str
    title: str
    brand: str
    price: str
    description: str
    categories: str
    image_keys: tuple[tuple[str, ...], ...]
    features: str | None = None
    main_category: str | None = None
    other: tuple[str, ...] = ()

    def keys(self, image_variant: int | None = None) -> frozenset[str]:
        """Every key a metadata record of the release may carry: with all image variants, or only one of them."""
        variants = self.image_keys if image_variant is None else (self.image_keys[image_variant],)
        named = (self.item, self.title, self.brand, self.price, self.description, self.categories)
        optional = (self.features, self.main_category)
        return frozenset(
            [*named, *(k for k in optional if k is not None), *self.other, *(k for v in variants for k in v)]
        )


@dataclass(frozen=True)
class SniffEvidence:
    """What the head of a file showed: the keys of its first records, and how many lines were Python literals."""

    seen: frozenset[str]
    literal_lines: int


@dataclass(frozen=True, eq=False)
class SourceFormat:
    """How one release stores one kind of file, and how its records map to the common schema.

    ``raw_schema`` is what the reader extracts (its order is the order fields are checked in); ``normalize``
    gives the expressions from the raw columns to the common schema; ``sniff`` rates how well the keys seen at
    the head of a file fit this format (``CONFIRMED``, ``POSSIBLE`` or ``NO``; see ``formats.sniff_format``).
    """

    release: str
    kind: Kind
    fields: ReviewFields | MetaFields
    raw_schema: dict[str, pl.DataType]
    normalize: Callable[[], list[pl.Expr]]
    sniff: Callable[[SniffEvidence], int]
    python_literals: bool = False  # 2014 metadata lines are Python dict literals, not JSON

    @property
    def id_fields(self) -> frozenset[str]:
        """Keys holding ids: an id must be exact text or nothing (a replaced byte would merge two ids)."""
        f = self.fields
        if isinstance(f, ReviewFields):
            return frozenset(k for k in (f.user, f.item, f.variant) if k is not None)
        return frozenset({f.item})

    @property
    def required(self) -> tuple[str, ...]:
        """Keys whose wrong type rejects the record (ids and rating): any other field is only nulled."""
        f = self.fields
        if isinstance(f, ReviewFields):
            return (f.user, f.item, f.rating)
        return (f.item,)

    def required_reasons(self) -> dict[str, str]:
        """The rejection reason for a wrong-typed field, by meaning rather than by this release's field name."""
        f = self.fields
        if isinstance(f, ReviewFields):
            reasons = {f.user: "invalid user id", f.item: "invalid item id", f.rating: "non-numeric rating"}
            if f.variant is not None:
                reasons[f.variant] = "invalid item id"
            return reasons
        return {f.item: "invalid item id"}

    def decode_line(self, line: bytes) -> Any:
        """Decode one line the slow, forgiving way (used only for lines the fast reader refused).

        Bytes that are not UTF-8 survive as lone surrogates (``surrogateescape``), so the caller can tell an id
        that held them (rejected) from free text (repaired); replacing them here would hide both.
        """
        text = line.decode("utf-8", errors="surrogateescape")
        try:
            return json.loads(text, object_pairs_hook=_first_key_wins)
        except json.JSONDecodeError:
            if not self.python_literals:
                raise
            if len(line) > MAX_LITERAL_LINE_BYTES:
                raise ValueError(
                    f"{len(line):,} bytes, more than the {MAX_LITERAL_LINE_BYTES:,} the Python-literal decoder is given"
                ) from None
            # The parser refuses lone surrogates in its source; as escapes they reach the strings they sat in.
            return ast.literal_eval(text if text.isascii() else _SURROGATE.sub(_escape_surrogate, text))


def _first_key_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose repeated keys keep their first value, as polars reads them.

    Python's default keeps the last; then ``{"asin": "B1", "asin": null}`` would be kept on the fast path and
    rejected on this one, its fate decided by its neighbours.
    """
    obj: dict[str, Any] = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


@dataclass(frozen=True)
class FileName:
    """A dump's published name: ``template`` with ``{category}`` and, for 5-core files, ``{five}`` ("_5").

    The template is the name without ".gz"; files are published gzipped and read either way.
    """

    template: str

    def name(self, category: str, five_core: bool = False) -> str:
        return self.template.format(category=category, five="_5" if five_core else "") + ".gz"

    @property
    def has_five_core(self) -> bool:
        return "{five}" in self.template

    def pattern(self) -> re.Pattern[str]:
        """The regular expression that recognises the name (groups ``cat`` and, where 5-core files exist, ``five``)."""
        parts = re.split(r"(\{category\}|\{five\})", self.template)
        regex = "".join(
            "(?P<cat>.+?)" if p == "{category}" else "(?P<five>_5)?" if p == "{five}" else re.escape(p) for p in parts
        )
        return re.compile(f"^{regex}(\\.gz)?$")


@dataclass(frozen=True, eq=False)
class Release:
    """One dump release: its two file formats and their published names."""

    name: str
    reviews: SourceFormat
    meta: SourceFormat
    reviews_file: FileName
    meta_file: FileName

    def format(self, kind: Kind) -> SourceFormat:
        return self.reviews if kind == "reviews" else self.meta

    def file(self, kind: Kind) -> FileName:
        return self.reviews_file if kind == "reviews" else self.meta_file

    @property
    def item_key(self) -> str:
        """The key items are identified by: releases with the same one share item ids (2014 and 2018: ``asin``)."""
        assert isinstance(self.reviews.fields, ReviewFields)
        return self.reviews.fields.item


def present(key: str | None) -> str:
    """A field the release has: its ``ReviewFields`` or ``MetaFields`` entry, known not to be None."""
    assert key is not None
    return key


def seconds_or_date(time: str, date: str) -> pl.Expr:
    """Seconds from ``time``, else parsed from ``date`` ("MM D, YYYY"), as 2014 and 2018 write them."""
    parsed = pl.col(date).str.to_datetime("%m %d, %Y", strict=False).dt.epoch("s")
    return pl.coalesce(pl.col(time), parsed)
