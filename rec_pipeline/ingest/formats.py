"""Per-release source formats: the raw fields read from each dump and how they map to the common schema.

Adding a release means adding one ``SourceFormat``; the reader, the validation and the quarantine are shared.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from rec_pipeline.ingest.sources import Kind

_STR = pl.String()
_F64 = pl.Float64()
_I64 = pl.Int64()
_BOOL = pl.Boolean()
_STRS = pl.List(pl.String())
# ast.literal_eval builds a syntax tree first: about 500 bytes of memory per byte of a line like "[1,1,1,...]",
# so a 16 MB line would take 8 GB. Real 2014 metadata lines are a few kB; longer ones are rejected unread.
MAX_LITERAL_LINE_BYTES = 1 << 20
SNIFF_RECORDS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class SourceFormat:
    """How one release stores one kind of file."""

    release: str
    kind: Kind
    raw_schema: dict[str, pl.DataType]
    python_literals: bool = False  # 2014 metadata lines are Python dict literals, not JSON
    signature: frozenset[str] = frozenset()  # keys that identify this format when sniffing content

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


_IMAGES_2023 = pl.List(pl.Struct({"small_image_url": _STR, "medium_image_url": _STR, "large_image_url": _STR}))
_META_IMAGES_2023 = pl.List(pl.Struct({"thumb": _STR, "large": _STR, "variant": _STR, "hi_res": _STR}))

REVIEWS_2014 = SourceFormat(
    "2014",
    "reviews",
    {
        "reviewerID": _STR,
        "asin": _STR,
        "overall": _F64,
        "unixReviewTime": _I64,
        "reviewTime": _STR,
        "summary": _STR,
        "reviewText": _STR,
        "helpful": pl.List(_I64),
    },
    signature=frozenset({"reviewerID", "helpful"}),
)
REVIEWS_2018 = SourceFormat(
    "2018",
    "reviews",
    {
        "reviewerID": _STR,
        "asin": _STR,
        "overall": _F64,
        "unixReviewTime": _I64,
        "reviewTime": _STR,
        "summary": _STR,
        "reviewText": _STR,
        "vote": _STR,
        "verified": _BOOL,
        "image": _STRS,
    },
    signature=frozenset({"reviewerID", "overall"}),
)
REVIEWS_2023 = SourceFormat(
    "2023",
    "reviews",
    {
        "user_id": _STR,
        "parent_asin": _STR,
        "asin": _STR,
        "rating": _F64,
        "timestamp": _I64,
        "title": _STR,
        "text": _STR,
        "helpful_vote": _I64,
        "verified_purchase": _BOOL,
        "images": _IMAGES_2023,
    },
    signature=frozenset({"user_id", "rating"}),
)
META_2014 = SourceFormat(
    "2014",
    "meta",
    {
        "asin": _STR,
        "title": _STR,
        "price": _F64,
        "imUrl": _STR,
        "brand": _STR,
        "categories": pl.List(_STRS),
        "description": _STR,
    },
    python_literals=True,
    signature=frozenset({"imUrl"}),
)
META_2018 = SourceFormat(
    "2018",
    "meta",
    {
        "asin": _STR,
        "title": _STR,
        "feature": _STRS,
        "description": _STRS,
        "price": _STR,
        "imageURL": _STRS,
        "imageURLHighRes": _STRS,
        "image": _STRS,  # small categories (Appliances, Gift_Cards, Magazine_Subscriptions) use this key instead
        "brand": _STR,
        "category": _STRS,
        "main_cat": _STR,
    },
    signature=frozenset({"asin"}),
)
META_2023 = SourceFormat(
    "2023",
    "meta",
    {
        "parent_asin": _STR,
        "title": _STR,
        "main_category": _STR,
        "features": _STRS,
        "description": _STRS,
        "price": _F64,
        "images": _META_IMAGES_2023,
        "store": _STR,
        "categories": _STRS,
    },
    signature=frozenset({"parent_asin"}),
)

FORMATS: dict[tuple[str, Kind], SourceFormat] = {
    (f.release, f.kind): f for f in (REVIEWS_2014, REVIEWS_2018, REVIEWS_2023, META_2014, META_2018, META_2023)
}


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
    ingest; ``sample_lines`` may be a lazy iterator, consumed only that far. Raises ValueError naming what it
    saw when nothing fits.
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
    if kind == "meta":
        if "parent_asin" in seen or "main_category" in seen:
            return META_2023
        if literal_lines or "imUrl" in seen or "salesRank" in seen or "related" in seen:
            return META_2014
        if "asin" in seen:
            return META_2018
    else:
        if "user_id" in seen and ("parent_asin" in seen or "rating" in seen):
            return REVIEWS_2023
        if "reviewerID" in seen or "overall" in seen:
            newer = {"vote", "verified", "style", "image"} & seen
            return REVIEWS_2014 if ("helpful" in seen and not newer) else REVIEWS_2018
    raise ValueError(
        f"cannot tell which Amazon dump release this {kind} file is: keys seen in the first lines were "
        f"{sorted(seen)[:20] or 'none (no decodable line)'}"
    )


def _clean_price(col: str) -> pl.Expr:
    """2018 prices are strings: "$12.99", "$1,299.00", ranges "$5 - $9", "", or stray HTML. Ranges -> null."""
    extracted = pl.col(col).str.strip_chars().str.extract(r"^\$?\s*([0-9][0-9,]*(?:\.[0-9]+)?)$", 1)
    return extracted.str.replace_all(",", "").cast(pl.Float64, strict=False)


def _votes_2018() -> pl.Expr:
    return pl.col("vote").str.replace_all(",", "").cast(pl.Int32, strict=False)


_EMPTY_STRS = pl.lit([], dtype=_STRS)
# Amazon image URLs carry their rendering in the name: `51Pv.._SX38_SY50_CR,0,0,38,50_.jpg` is a 38x50 thumbnail
# of `51Pv...jpg`. The `image` and `imageURL` lists of 2018 metadata hold such thumbnails; a CNN needs the picture.
_SIZE_SUFFIX = r"\._[A-Za-z0-9_,]+_\.(jpg|jpeg|png|gif)$"


def _full_size(urls: pl.Expr) -> pl.Expr:
    """The full-size image behind each thumbnail URL (see ``_SIZE_SUFFIX``); other URLs pass unchanged."""
    return urls.list.eval(pl.element().str.replace(_SIZE_SUFFIX, ".${1}"))


def _timestamp_2014_2018() -> pl.Expr:
    """Seconds from ``unixReviewTime``, else parsed from ``reviewTime`` ("MM D, YYYY")."""
    parsed = pl.col("reviewTime").str.to_datetime("%m %d, %Y", strict=False).dt.epoch("s")
    return pl.coalesce(pl.col("unixReviewTime"), parsed)


NORMALIZERS: dict[tuple[str, Kind], Callable[[], list[pl.Expr]]] = {
    ("2014", "reviews"): lambda: [
        pl.col("reviewerID").alias("user_id"),
        pl.col("asin").alias("item_id"),
        pl.col("overall").alias("rating"),
        _timestamp_2014_2018().alias("timestamp"),
        pl.col("summary"),
        pl.col("reviewText").alias("text"),
        pl.lit(None, dtype=_BOOL).alias("verified"),
        pl.col("helpful").list.get(0, null_on_oob=True).cast(pl.Int32, strict=False).alias("votes"),
        _EMPTY_STRS.alias("image_urls"),
    ],
    ("2018", "reviews"): lambda: [
        pl.col("reviewerID").alias("user_id"),
        pl.col("asin").alias("item_id"),
        pl.col("overall").alias("rating"),
        _timestamp_2014_2018().alias("timestamp"),
        pl.col("summary"),
        pl.col("reviewText").alias("text"),
        pl.col("verified"),
        _votes_2018().alias("votes"),
        pl.col("image").fill_null(_EMPTY_STRS).alias("image_urls"),
    ],
    ("2023", "reviews"): lambda: [
        pl.col("user_id"),
        pl.coalesce(pl.col("parent_asin"), pl.col("asin")).alias("item_id"),
        pl.col("rating"),
        pl.col("timestamp"),  # milliseconds: converted with every other ms timestamp in validation
        pl.col("title").alias("summary"),
        pl.col("text"),
        pl.col("verified_purchase").alias("verified"),
        pl.col("helpful_vote").cast(pl.Int32, strict=False).alias("votes"),
        pl.col("images")
        .list.eval(
            pl.coalesce(pl.element().struct.field("large_image_url"), pl.element().struct.field("medium_image_url"))
        )
        .list.drop_nulls()
        .fill_null(_EMPTY_STRS)
        .alias("image_urls"),
    ],
    ("2014", "meta"): lambda: [
        pl.col("asin").alias("item_id"),
        pl.col("title"),
        pl.col("brand"),
        pl.col("categories").list.eval(pl.element().list.join(" > ")).fill_null(_EMPTY_STRS).alias("categories"),
        pl.when(pl.col("description").is_not_null())
        .then(pl.concat_list(pl.col("description")))
        .otherwise(_EMPTY_STRS)
        .alias("description"),
        _EMPTY_STRS.alias("features"),
        pl.col("price"),
        pl.when(pl.col("imUrl").is_not_null())
        .then(pl.concat_list(pl.col("imUrl")))
        .otherwise(_EMPTY_STRS)
        .alias("image_urls"),
    ],
    ("2018", "meta"): lambda: [
        pl.col("asin").alias("item_id"),
        pl.col("title"),
        pl.col("brand"),
        pl.col("category").fill_null(_EMPTY_STRS).alias("categories"),
        pl.col("description").fill_null(_EMPTY_STRS),
        pl.col("feature").fill_null(_EMPTY_STRS).alias("features"),
        _clean_price("price").alias("price"),
        # Every key a 2018 metadata file may hold its product images under, best resolution first.
        pl.coalesce(
            pl.when(pl.col("imageURLHighRes").list.len() > 0).then(pl.col("imageURLHighRes")),
            pl.when(pl.col("imageURL").list.len() > 0).then(_full_size(pl.col("imageURL"))),
            _full_size(pl.col("image")),
        )
        .fill_null(_EMPTY_STRS)
        .alias("image_urls"),
    ],
    ("2023", "meta"): lambda: [
        pl.col("parent_asin").alias("item_id"),
        pl.col("title"),
        pl.col("store").alias("brand"),
        pl.concat_list(
            pl.col("main_category").fill_null(pl.lit(None, dtype=_STR)),
        )
        .list.drop_nulls()
        .list.concat(pl.col("categories").fill_null(_EMPTY_STRS))
        .list.unique(maintain_order=True)  # real files often repeat main_category as the first category
        .alias("categories"),
        pl.col("description").fill_null(_EMPTY_STRS),
        pl.col("features").fill_null(_EMPTY_STRS),
        pl.col("price"),
        pl.col("images")
        .list.eval(
            pl.coalesce(
                pl.element().struct.field("large"),
                pl.element().struct.field("hi_res"),
                pl.element().struct.field("thumb"),
            )
        )
        .list.drop_nulls()
        .fill_null(_EMPTY_STRS)
        .alias("image_urls"),
    ],
}
