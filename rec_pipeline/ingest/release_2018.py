"""The 2018 release (Ni, Li & McAuley, EMNLP 2019): everything the pipeline knows of it.

Reviews and metadata are JSON lines. Prices are strings, votes are strings with thousands separators, and
product images sit under one of two key sets: ``imageURLHighRes``/``imageURL`` in the large categories,
``image`` in the small ones (Appliances, Gift_Cards, Magazine_Subscriptions), whose files hold neither of the
other two. The metadata file has the same name as 2014's, so only content tells them apart.
"""

from __future__ import annotations

import polars as pl

from rec_pipeline.ingest.release import (
    BOOL,
    CONFIRMED,
    EMPTY_STRS,
    F64,
    I64,
    NO,
    POSSIBLE,
    STR,
    STRS,
    FileName,
    MetaFields,
    Release,
    ReviewFields,
    SniffEvidence,
    SourceFormat,
    present,
    seconds_or_date,
)

REVIEW = ReviewFields(
    user="reviewerID",
    item="asin",
    rating="overall",
    time="unixReviewTime",
    text="reviewText",
    summary="summary",
    date="reviewTime",
    votes="vote",  # a string: "1,234"
    verified="verified",
    images="image",  # review photos
    style="style",
    user_name="reviewerName",
)
# The key sets product images are found under, in the order of META.image_keys.
LARGE_CATEGORY_IMAGES = 0
SMALL_CATEGORY_IMAGES = 1
META = MetaFields(
    item="asin",
    title="title",
    brand="brand",
    price="price",  # a string: "$12.99", a range, empty, or stray HTML
    description="description",
    categories="category",
    image_keys=(("imageURLHighRes", "imageURL"), ("image",)),
    features="feature",
    main_category="main_cat",
    other=("tech1", "fit", "also_buy", "tech2", "rank", "also_view", "details", "similar_item", "date"),
)
# Categories known to write their product images under ``image`` (FORMATS.md; the first two seen in real files).
SMALL_IMAGE_KEY_CATEGORIES = frozenset({"Appliances", "Magazine_Subscriptions", "Gift_Cards"})
_DATE, _VOTES, _VERIFIED, _PHOTOS = present(REVIEW.date), present(REVIEW.votes), REVIEW.verified, REVIEW.images
(_HIGH_RES, _LOW_RES), (_SMALL,) = META.image_keys
_FEATURES, _MAIN_CATEGORY = present(META.features), present(META.main_category)
# Amazon image URLs carry their rendering in the name: `51Pv.._SX38_SY50_CR,0,0,38,50_.jpg` is a 38x50 thumbnail
# of `51Pv...jpg`. The `image` and `imageURL` lists of 2018 metadata hold such thumbnails; a CNN needs the picture.
SIZE_SUFFIX = r"\._[A-Za-z0-9_,]+_\.(jpg|jpeg|png|gif)$"


def image_key_variant(category: str) -> int:
    """Which of ``META.image_keys`` a category's metadata file uses."""
    return SMALL_CATEGORY_IMAGES if category in SMALL_IMAGE_KEY_CATEGORIES else LARGE_CATEGORY_IMAGES


def _full_size(urls: pl.Expr) -> pl.Expr:
    """The full-size image behind each thumbnail URL (see ``SIZE_SUFFIX``); other URLs pass unchanged."""
    return urls.list.eval(pl.element().str.replace(SIZE_SUFFIX, ".${1}"))


def _clean_price(col: str) -> pl.Expr:
    """Prices are strings: "$12.99", "$1,299.00", ranges "$5 - $9", "", or stray HTML. Ranges -> null."""
    extracted = pl.col(col).str.strip_chars().str.extract(r"^\$?\s*([0-9][0-9,]*(?:\.[0-9]+)?)$", 1)
    return extracted.str.replace_all(",", "").cast(pl.Float64, strict=False)


def _normalize_reviews() -> list[pl.Expr]:
    f = REVIEW
    return [
        pl.col(f.user).alias("user_id"),
        pl.col(f.item).alias("item_id"),
        pl.col(f.rating).alias("rating"),
        seconds_or_date(f.time, _DATE).alias("timestamp"),
        pl.col(f.summary).alias("summary"),
        pl.col(f.text).alias("text"),
        pl.col(present(_VERIFIED)).alias("verified"),
        pl.col(_VOTES).str.replace_all(",", "").cast(pl.Int32, strict=False).alias("votes"),
        pl.col(present(_PHOTOS)).fill_null(EMPTY_STRS).alias("image_urls"),
    ]


def _normalize_meta() -> list[pl.Expr]:
    f = META
    return [
        pl.col(f.item).alias("item_id"),
        pl.col(f.title).alias("title"),
        pl.col(f.brand).alias("brand"),
        pl.col(f.categories).fill_null(EMPTY_STRS).alias("categories"),
        pl.col(f.description).fill_null(EMPTY_STRS).alias("description"),
        pl.col(_FEATURES).fill_null(EMPTY_STRS).alias("features"),
        _clean_price(f.price).alias("price"),
        # Every key a 2018 metadata file may hold its product images under, best resolution first.
        pl.coalesce(
            pl.when(pl.col(_HIGH_RES).list.len() > 0).then(pl.col(_HIGH_RES)),
            pl.when(pl.col(_LOW_RES).list.len() > 0).then(_full_size(pl.col(_LOW_RES))),
            _full_size(pl.col(_SMALL)),
        )
        .fill_null(EMPTY_STRS)
        .alias("image_urls"),
    ]


def _sniff_reviews(evidence: SniffEvidence) -> int:
    """A review key of the 2014/2018 family; confirmed by a key 2018 added (then even beside 2014's ``helpful``)."""
    seen, f = evidence.seen, REVIEW
    if not (f.user in seen or f.rating in seen):
        return NO
    return CONFIRMED if {_VOTES, _VERIFIED, f.style, _PHOTOS} & seen else POSSIBLE


def _sniff_meta(evidence: SniffEvidence) -> int:
    """Possible wherever an ``asin`` is: 2014 metadata has one too and is told apart by its own keys."""
    return POSSIBLE if META.item in evidence.seen else NO


REVIEWS = SourceFormat(
    "2018",
    "reviews",
    REVIEW,
    {
        REVIEW.user: STR,
        REVIEW.item: STR,
        REVIEW.rating: F64,
        REVIEW.time: I64,
        _DATE: STR,
        REVIEW.summary: STR,
        REVIEW.text: STR,
        _VOTES: STR,
        present(_VERIFIED): BOOL,
        present(_PHOTOS): STRS,
    },
    _normalize_reviews,
    _sniff_reviews,
)
METADATA = SourceFormat(
    "2018",
    "meta",
    META,
    {
        META.item: STR,
        META.title: STR,
        _FEATURES: STRS,
        META.description: STRS,
        META.price: STR,
        _LOW_RES: STRS,
        _HIGH_RES: STRS,
        _SMALL: STRS,
        META.brand: STR,
        META.categories: STRS,
        _MAIN_CATEGORY: STR,
    },
    _normalize_meta,
    _sniff_meta,
)
RELEASE = Release(
    "2018",
    REVIEWS,
    METADATA,
    reviews_file=FileName("{category}{five}.json"),
    meta_file=FileName("meta_{category}.json"),
)
