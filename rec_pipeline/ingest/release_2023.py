"""The 2023 release (Hou et al., 2024): everything the pipeline knows of it.

JSON lines; items are keyed by the product (``parent_asin``), the variant bought is ``asin``; review timestamps
are milliseconds (converted with every other millisecond timestamp in validation). There are no 5-core files.
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
    STR,
    STRS,
    FileName,
    MetaFields,
    Release,
    ReviewFields,
    SniffEvidence,
    SourceFormat,
    present,
)

REVIEW = ReviewFields(
    user="user_id",
    item="parent_asin",
    rating="rating",
    time="timestamp",  # milliseconds
    text="text",
    summary="title",
    variant="asin",
    votes="helpful_vote",
    verified="verified_purchase",
    images="images",  # a list of {small_image_url, medium_image_url, large_image_url}
)
META = MetaFields(
    item="parent_asin",
    title="title",
    brand="store",
    price="price",  # a float or null
    description="description",
    categories="categories",
    image_keys=(("images",),),  # a list of {thumb, large, variant, hi_res}
    features="features",
    main_category="main_category",
    other=("average_rating", "rating_number", "videos", "details", "bought_together"),
)
_VARIANT, _VOTES, _VERIFIED, _PHOTOS = (
    present(REVIEW.variant),
    present(REVIEW.votes),
    present(REVIEW.verified),
    present(REVIEW.images),
)
((_IMAGES,),) = META.image_keys
_FEATURES, _MAIN_CATEGORY = present(META.features), present(META.main_category)
REVIEW_IMAGE = pl.Struct({"small_image_url": STR, "medium_image_url": STR, "large_image_url": STR})
META_IMAGE = pl.Struct({"thumb": STR, "large": STR, "variant": STR, "hi_res": STR})


def _normalize_reviews() -> list[pl.Expr]:
    f = REVIEW
    return [
        pl.col(f.user).alias("user_id"),
        pl.coalesce(pl.col(f.item), pl.col(_VARIANT)).alias("item_id"),
        pl.col(f.rating).alias("rating"),
        pl.col(f.time).alias("timestamp"),  # milliseconds: converted with every other ms timestamp in validation
        pl.col(f.summary).alias("summary"),
        pl.col(f.text).alias("text"),
        pl.col(_VERIFIED).alias("verified"),
        pl.col(_VOTES).cast(pl.Int32, strict=False).alias("votes"),
        pl.col(_PHOTOS)
        .list.eval(
            pl.coalesce(pl.element().struct.field("large_image_url"), pl.element().struct.field("medium_image_url"))
        )
        .list.drop_nulls()
        .fill_null(EMPTY_STRS)
        .alias("image_urls"),
    ]


def _normalize_meta() -> list[pl.Expr]:
    f = META
    return [
        pl.col(f.item).alias("item_id"),
        pl.col(f.title).alias("title"),
        pl.col(f.brand).alias("brand"),
        pl.concat_list(
            pl.col(_MAIN_CATEGORY).fill_null(pl.lit(None, dtype=STR)),
        )
        .list.drop_nulls()
        .list.concat(pl.col(f.categories).fill_null(EMPTY_STRS))
        .list.unique(maintain_order=True)  # real files often repeat main_category as the first category
        .alias("categories"),
        pl.col(f.description).fill_null(EMPTY_STRS).alias("description"),
        pl.col(_FEATURES).fill_null(EMPTY_STRS).alias("features"),
        pl.col(f.price).alias("price"),
        pl.col(_IMAGES)
        .list.eval(
            pl.coalesce(
                pl.element().struct.field("large"),
                pl.element().struct.field("hi_res"),
                pl.element().struct.field("thumb"),
            )
        )
        .list.drop_nulls()
        .fill_null(EMPTY_STRS)
        .alias("image_urls"),
    ]


def _sniff_reviews(evidence: SniffEvidence) -> int:
    seen = evidence.seen
    return CONFIRMED if REVIEW.user in seen and (REVIEW.item in seen or REVIEW.rating in seen) else NO


def _sniff_meta(evidence: SniffEvidence) -> int:
    return CONFIRMED if META.item in evidence.seen or _MAIN_CATEGORY in evidence.seen else NO


REVIEWS = SourceFormat(
    "2023",
    "reviews",
    REVIEW,
    {
        REVIEW.user: STR,
        REVIEW.item: STR,
        _VARIANT: STR,
        REVIEW.rating: F64,
        REVIEW.time: I64,
        REVIEW.summary: STR,
        REVIEW.text: STR,
        _VOTES: I64,
        _VERIFIED: BOOL,
        _PHOTOS: pl.List(REVIEW_IMAGE),
    },
    _normalize_reviews,
    _sniff_reviews,
)
METADATA = SourceFormat(
    "2023",
    "meta",
    META,
    {
        META.item: STR,
        META.title: STR,
        _MAIN_CATEGORY: STR,
        _FEATURES: STRS,
        META.description: STRS,
        META.price: F64,
        _IMAGES: pl.List(META_IMAGE),
        META.brand: STR,
        META.categories: STRS,
    },
    _normalize_meta,
    _sniff_meta,
)
RELEASE = Release(
    "2023",
    REVIEWS,
    METADATA,
    reviews_file=FileName("{category}.jsonl"),
    meta_file=FileName("meta_{category}.jsonl"),
)
