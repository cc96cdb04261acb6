"""The 2014 release (McAuley et al., SIGIR 2015; He & McAuley, WWW 2016): everything the pipeline knows of it.

Reviews are JSON lines; metadata lines are Python dict literals (single quotes), which ``json`` cannot parse.
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
    votes="helpful",  # [helpful votes, total votes]
    user_name="reviewerName",
)
META = MetaFields(
    item="asin",
    title="title",
    brand="brand",
    price="price",  # a float
    description="description",  # one string
    categories="categories",  # a list of category paths
    image_keys=(("imUrl",),),  # one URL
    other=("related", "salesRank"),
)
_DATE, _HELPFUL = present(REVIEW.date), present(REVIEW.votes)
((_IMAGE,),) = META.image_keys


def _normalize_reviews() -> list[pl.Expr]:
    f = REVIEW
    return [
        pl.col(f.user).alias("user_id"),
        pl.col(f.item).alias("item_id"),
        pl.col(f.rating).alias("rating"),
        seconds_or_date(f.time, _DATE).alias("timestamp"),
        pl.col(f.summary).alias("summary"),
        pl.col(f.text).alias("text"),
        pl.lit(None, dtype=BOOL).alias("verified"),
        pl.col(_HELPFUL).list.get(0, null_on_oob=True).cast(pl.Int32, strict=False).alias("votes"),
        EMPTY_STRS.alias("image_urls"),
    ]


def _normalize_meta() -> list[pl.Expr]:
    f = META
    return [
        pl.col(f.item).alias("item_id"),
        pl.col(f.title).alias("title"),
        pl.col(f.brand).alias("brand"),
        pl.col(f.categories).list.eval(pl.element().list.join(" > ")).fill_null(EMPTY_STRS).alias("categories"),
        pl.when(pl.col(f.description).is_not_null())
        .then(pl.concat_list(pl.col(f.description)))
        .otherwise(EMPTY_STRS)
        .alias("description"),
        EMPTY_STRS.alias("features"),
        pl.col(f.price).alias("price"),
        pl.when(pl.col(_IMAGE).is_not_null())
        .then(pl.concat_list(pl.col(_IMAGE)))
        .otherwise(EMPTY_STRS)
        .alias("image_urls"),
    ]


def _sniff_reviews(evidence: SniffEvidence) -> int:
    """Confirmed by ``helpful`` beside a review key of the family; a 2018 key outranks it (see ``release_2018``)."""
    seen = evidence.seen
    return CONFIRMED if (REVIEW.user in seen or REVIEW.rating in seen) and _HELPFUL in seen else NO


def _sniff_meta(evidence: SniffEvidence) -> int:
    """Confirmed by Python-literal lines or by a key only 2014 metadata has (2018's files have the same name)."""
    return CONFIRMED if evidence.literal_lines or {_IMAGE, *META.other} & evidence.seen else NO


REVIEWS = SourceFormat(
    "2014",
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
        _HELPFUL: pl.List(I64),
    },
    _normalize_reviews,
    _sniff_reviews,
)
METADATA = SourceFormat(
    "2014",
    "meta",
    META,
    {
        META.item: STR,
        META.title: STR,
        META.price: F64,
        _IMAGE: STR,
        META.brand: STR,
        META.categories: pl.List(STRS),
        META.description: STR,
    },
    _normalize_meta,
    _sniff_meta,
    python_literals=True,
)
RELEASE = Release(
    "2014",
    REVIEWS,
    METADATA,
    reviews_file=FileName("reviews_{category}{five}.json"),
    meta_file=FileName("meta_{category}.json"),
)
