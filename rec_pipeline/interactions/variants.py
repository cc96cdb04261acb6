"""Collapse the variant copies of 2014/2018 dumps: one review event, one interaction, one item family.

Amazon shows a product's reviews on every variant (size, colour, edition) and the 2014/2018 dumps repeat each
such review once per variant asin. Left in, a user's held-out rating is "predicted" from the same review copied
onto a sibling asin in training. Two things are done about it:

* A *review event* is (reviewer, timestamp, rating, non-empty text); its copies on several asins are one event
  and become one row. Rows without text carry nothing that could identify a copy, so each is its own event.
* Two asins are *variants* when they share at least ``min_shared_copies`` events and those are at least
  ``min_shared_fraction`` of the smaller asin's events. Pooled reviews drift over time, so partial overlaps
  are common; linking on any shared copy would chain unrelated products (on one real 2018 file, 103 gift-card
  brands fall into one "family"). Families are the connected components of the variant graph, keyed by
  their smallest asin.

Everything is polars group-bys and joins plus one sparse connected-components call; pair edges come only from
events with 2..``max_copies_per_event`` copies, so memory grows with the copies, never with asins squared.

The text only tells copies apart, and it is most of a dump's bytes: ``review_events`` replaces it, while the
Parquet file is scanned, by a fixed-width key (byte length and a 64-bit hash), so a whole category's text is
never in memory at once and grouping compares 12 bytes per row instead of a few hundred.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rec_pipeline.schema import ITEM_SCHEMA

EVENT_KEYS = ("user_id", "timestamp", "rating", "text")
# ``text``'s stand-in in an event key, from ``review_events``: the byte length (null for null text) and a hash.
TEXT_KEY = ("text_bytes", "text_hash")
# What collapsing and ``latest_per_pair`` read of a review besides its text.
EVENT_COLUMNS = ("user_id", "item_id", "rating", "timestamp", "source_line")
# Any fixed seed: hashes are compared only within one run (polars does not promise them stable across versions).
_TEXT_HASH_SEED = 0x7E47
FAMILY_SCHEMA: dict[str, pl.DataType] = {"item_id": pl.String(), "family_id": pl.String()}
MERGED_ITEM_SCHEMA: dict[str, pl.DataType] = {**ITEM_SCHEMA, "members": pl.List(pl.String())}
_SCALAR_FIELDS = ("title", "brand", "price")
_LIST_FIELDS = ("categories", "description", "features")


@dataclass(frozen=True)
class VariantOptions:
    """How variant copies are collapsed; the defaults suit the real 2014/2018 files."""

    enabled: bool = True
    min_shared_copies: int = 2  # one shared event is a coincidence as often as a variant
    min_shared_fraction: float = 0.5  # of the smaller asin's events: stops partial overlaps from chaining
    # An event copied onto more asins than this still becomes one row but links no asins: such blanket copies
    # (a seller pooling a whole catalogue) say little about families and cost pairs quadratic in the copies.
    max_copies_per_event: int = 50

    def __post_init__(self) -> None:
        if self.min_shared_copies < 1:
            raise ValueError("min_shared_copies must be >= 1")
        if not 0.0 < self.min_shared_fraction <= 1.0:
            raise ValueError("min_shared_fraction must lie in (0, 1]")
        if self.max_copies_per_event < 2:
            raise ValueError("max_copies_per_event must be >= 2")


@dataclass(frozen=True)
class VariantResult:
    """Reviews with one row per event and ``item_id`` set to the family key, the families, and the counts."""

    reviews: pl.DataFrame
    families: pl.DataFrame  # item_id (asin) -> family_id (its family's smallest asin), every asin seen
    rows_in: int
    events: int
    copies_collapsed: int  # rows_in - events
    items_in: int
    families_out: int
    items_merged: int  # items_in - families_out
    largest_family: int
    events_too_many_copies: int

    def metadata(self) -> dict[str, int]:
        """The counts, ready for asset metadata or the category summary."""
        return {k: v for k, v in asdict(self).items() if isinstance(v, int)}


def review_events(reviews: pl.LazyFrame) -> pl.LazyFrame:
    """``EVENT_COLUMNS`` and ``TEXT_KEY`` of normalized reviews: what ``collapse_variants`` needs, a fraction of the
    bytes.

    On a ``pl.scan_parquet`` collected with the streaming engine, each batch's text is read, measured, hashed and
    dropped, so peak memory holds the narrow columns only. The key is exact enough: two different texts share it
    only when their byte lengths and 64-bit hashes both agree, and only texts with the same user, second and rating
    are ever compared (the other event keys tell all others apart). Such groups hold a handful of texts at most,
    so over a 10M-review dump the expected number of wrongly merged events is about 10^7 x 2 / 2^64 ~ 1e-12.
    """
    text = pl.col("text")
    return reviews.select(
        *EVENT_COLUMNS,
        text.str.len_bytes().alias("text_bytes"),
        text.hash(seed=_TEXT_HASH_SEED).alias("text_hash"),
    )


def collapse_variants(
    reviews: pl.DataFrame | pl.LazyFrame, options: VariantOptions = VariantOptions()
) -> VariantResult:
    """One row per review event, attributed to the family of the smallest asin among the event's copies.

    The kept row is the event's copy on that smallest asin (the first such row in input order, whose
    ``source_line`` it keeps); the output has the input's columns and order, with ``item_id`` replaced by
    the family key. With ``options.enabled`` false the reviews pass through and every asin is its own family.

    Events are told apart by ``text`` when the input has it, else by ``TEXT_KEY`` (the narrow frame of
    ``review_events``, which gives the same events, rows and families at a fraction of the memory).
    """
    frame = reviews.collect() if isinstance(reviews, pl.LazyFrame) else reviews
    rows_in = frame.height
    asins = frame.get_column("item_id").unique().sort()
    if not options.enabled or rows_in == 0:
        identity = pl.DataFrame({"item_id": asins, "family_id": asins}, schema=FAMILY_SCHEMA)
        return VariantResult(
            frame, identity, rows_in, rows_in, 0, asins.len(), asins.len(), 0, 1 if asins.len() else 0, 0
        )

    events = _with_event_ids(frame)
    event_asins = events.select("_event", "item_id").unique()
    families = _families(event_asins, asins, options)
    copies = event_asins.group_by("_event").agg(pl.len().alias("_copies"))
    too_many = copies.filter(pl.col("_copies") > options.max_copies_per_event).height

    # The event's copy on its smallest asin stands for it; ties (an event repeated on one asin) go to input order.
    # Only the three key columns are sorted, then the kept rows are taken once: the whole frame is never sorted.
    first_copies = (
        events.select("_event", "item_id", "_row")
        .sort("_event", "item_id", "_row")
        .unique(subset="_event", keep="first", maintain_order=True)
        .get_column("_row")
        .sort()
    )
    kept = (frame if first_copies.len() == rows_in else frame.select(pl.all().gather(first_copies))).with_columns(
        pl.col("item_id").replace_strict(families.get_column("item_id"), families.get_column("family_id"))
    )
    sizes = families.group_by("family_id").agg(pl.len().alias("size"))
    n_families = sizes.height
    return VariantResult(
        reviews=kept,
        families=families,
        rows_in=rows_in,
        events=kept.height,
        copies_collapsed=rows_in - kept.height,
        items_in=asins.len(),
        families_out=n_families,
        items_merged=asins.len() - n_families,
        largest_family=int(sizes.get_column("size").max()),  # type: ignore[arg-type]
        events_too_many_copies=too_many,
    )


def _with_event_ids(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``_row`` (input position) and ``_event`` (the first row of the row's review event)."""
    if "text" in frame.columns:
        text_keys, text_length = ["text"], pl.col("text").str.len_bytes()
    elif set(TEXT_KEY) <= set(frame.columns):
        text_keys, text_length = list(TEXT_KEY), pl.col("text_bytes")
    else:
        raise ValueError(f"reviews need `text` or {', '.join(TEXT_KEY)} (review_events) to tell events apart")
    groupable = text_length.is_not_null() & (text_length > 0)
    for key in EVENT_KEYS[:-1]:
        groupable = groupable & pl.col(key).is_not_null()
    keys = [*EVENT_KEYS[:-1], *text_keys]
    return frame.with_row_index("_row").with_columns(
        pl.when(groupable).then(pl.col("_row").min().over(keys)).otherwise(pl.col("_row")).alias("_event")
    )


def _families(event_asins: pl.DataFrame, asins: pl.Series, options: VariantOptions) -> pl.DataFrame:
    """Map every asin to its family key: connected components of the variant graph, smallest asin first."""
    per_asin = event_asins.group_by("item_id").agg(pl.len().alias("_n"))
    linking = (
        event_asins.with_columns(pl.len().over("_event").alias("_copies"))
        .filter(pl.col("_copies").is_between(2, options.max_copies_per_event))
        .select("_event", "item_id")
    )
    shared = (
        linking.join(linking, on="_event", suffix="_b")
        .filter(pl.col("item_id") < pl.col("item_id_b"))
        .group_by("item_id", "item_id_b")
        .agg(pl.len().alias("_shared"))
        .join(per_asin, on="item_id")
        .join(per_asin.rename({"item_id": "item_id_b", "_n": "_n_b"}), on="item_id_b")
    )
    edges = shared.filter(
        (pl.col("_shared") >= options.min_shared_copies)
        & (pl.col("_shared") >= options.min_shared_fraction * pl.min_horizontal("_n", "_n_b"))
    )
    # Asins are numbered in sorted order, so a component's smallest index is its smallest asin.
    index = pl.DataFrame({"item_id": asins, "_idx": np.arange(asins.len(), dtype=np.int64)})
    pairs = (
        edges.select("item_id", "item_id_b")
        .join(index, on="item_id")
        .join(index.rename({"item_id": "item_id_b", "_idx": "_idx_b"}), on="item_id_b")
    )
    n = asins.len()
    graph = coo_matrix(
        (
            np.ones(pairs.height, dtype=np.int8),
            (pairs.get_column("_idx").to_numpy(), pairs.get_column("_idx_b").to_numpy()),
        ),
        shape=(n, n),
    )
    _, labels = connected_components(graph, directed=False)
    key_index = (
        pl.DataFrame({"_label": labels, "_idx": np.arange(n, dtype=np.int64)})
        .select(pl.col("_idx").min().over("_label"))
        .get_column("_idx")
    )
    return pl.DataFrame({"item_id": asins, "family_id": asins.gather(key_index)}, schema=FAMILY_SCHEMA)


def merge_family_items(items: pl.DataFrame, families: pl.DataFrame) -> pl.DataFrame:
    """One metadata row per family key, so item features line up with the collapsed interactions.

    Fields come from the key's own row where it has them, else from the first member (asin order) that does:
    scalars when non-null, lists when non-empty. Image URLs are pooled (unique, the key's first) so a family
    keeps a picture when only a variant listing has one. ``members`` lists the family's asins that have
    metadata; asins missing from ``families`` are families of their own.
    """
    ranked = (
        items.join(families, on="item_id", how="left")
        .with_columns(pl.col("family_id").fill_null(pl.col("item_id")))
        .with_columns((pl.col("item_id") != pl.col("family_id")).alias("_not_key"))
        .sort("family_id", "_not_key", "item_id", "source_line", nulls_last=True)
    )
    merged = ranked.group_by("family_id", maintain_order=True).agg(
        *[pl.col(name).drop_nulls().first() for name in _SCALAR_FIELDS],
        *[
            pl.coalesce(pl.col(name).filter(pl.col(name).list.len() > 0).first(), pl.col(name).first())
            for name in _LIST_FIELDS
        ],
        pl.col("image_urls").explode().drop_nulls().unique(maintain_order=True).alias("image_urls"),
        pl.col("source_line").min(),
        pl.col("item_id").unique().sort().alias("members"),
    )
    return merged.rename({"family_id": "item_id"}).select(list(MERGED_ITEM_SCHEMA)).cast(pl.Schema(MERGED_ITEM_SCHEMA))
