"""Variant copies collapse to one event each, and only asins sharing a large share of their events merge."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rec_pipeline.ingest.normalize import ingest_dump
from rec_pipeline.interactions.dedup import latest_per_pair
from rec_pipeline.interactions.variants import (
    EVENT_COLUMNS,
    MERGED_ITEM_SCHEMA,
    TEXT_KEY,
    VariantOptions,
    VariantResult,
    collapse_variants,
    merge_family_items,
    review_events,
)
from rec_pipeline.sample import SampleManifest, SampleSpec, write_sample
from rec_pipeline.schema import ITEM_SCHEMA, REVIEW_SCHEMA
from rec_pipeline_tests.conftest import REAL_DATA_DIR

EVENT = ["user_id", "timestamp", "rating", "text"]


def reviews(*rows: tuple[str, str, float, int, str | None]) -> pl.DataFrame:
    """(user, asin, rating, timestamp, text) rows as a normalized reviews frame, source lines 1..n."""
    return pl.DataFrame(
        [
            {
                "user_id": u,
                "item_id": i,
                "rating": r,
                "timestamp": t,
                "summary": "s",
                "text": x,
                "verified": True,
                "votes": 0,
                "image_urls": [],
                "source_line": n,
            }
            for n, (u, i, r, t, x) in enumerate(rows, start=1)
        ],
        schema=REVIEW_SCHEMA,
    )


def copies(asins: list[str], user: str, timestamp: int, text: str, rating: float = 5.0) -> list[tuple]:
    """One review event written on each of ``asins``."""
    return [(user, asin, rating, timestamp, text) for asin in asins]


def own(asin: str, n: int, tag: str = "") -> list[tuple]:
    """``n`` distinct events on ``asin`` alone."""
    return [(f"own_{asin}{tag}_{k}", asin, 4.0, 1000 + k, f"{asin} review {k}") for k in range(n)]


def family_of(result: VariantResult) -> dict[str, str]:
    return dict(result.families.iter_rows())


# --- hand-built frames ---------------------------------------------------------------------------------------------


def test_copies_of_one_review_become_one_event_kept_on_the_smallest_asin() -> None:
    frame = reviews(*copies(["B3", "B1", "B2"], "u1", 100, "great"), ("u2", "B3", 3.0, 200, "fine"))
    result = collapse_variants(frame)
    assert result.reviews.height == result.events == 2 and result.copies_collapsed == 2
    event = result.reviews.filter(pl.col("user_id") == "u1").row(0, named=True)
    assert event["item_id"] == "B1" and event["source_line"] == 2  # the copy on the smallest asin, its own line
    assert result.reviews.columns == frame.columns and result.reviews.schema == frame.schema


def test_an_event_repeated_on_one_asin_is_one_event() -> None:
    frame = reviews(*copies(["B1", "B1", "B1"], "u1", 100, "same words"))
    result = collapse_variants(frame)
    assert result.reviews.height == 1 and result.reviews["source_line"].to_list() == [1]


def test_asins_sharing_two_events_that_are_half_the_smaller_merge_under_the_smallest_asin() -> None:
    frame = reviews(
        *copies(["B2", "B1"], "u1", 100, "a"), *copies(["B2", "B1"], "u2", 100, "b"), *own("B2", 2), *own("C9", 3)
    )
    result = collapse_variants(frame)
    assert family_of(result) == {"B1": "B1", "B2": "B1", "C9": "C9"}
    assert result.reviews.filter(pl.col("user_id").str.starts_with("own_B2"))["item_id"].to_list() == ["B1", "B1"]
    assert (result.items_in, result.families_out, result.items_merged, result.largest_family) == (3, 2, 1, 2)


def test_family_key_is_the_smallest_asin_in_string_order() -> None:
    frame = reviews(*copies(["B9", "B10"], "u1", 100, "a"), *copies(["B9", "B10"], "u2", 100, "b"))
    assert set(collapse_variants(frame).families["family_id"]) == {"B10"}


def test_a_single_shared_event_does_not_merge() -> None:
    frame = reviews(*copies(["B1", "B2"], "u1", 100, "a"), *own("B1", 1), *own("B2", 1))
    result = collapse_variants(frame)
    assert family_of(result) == {"B1": "B1", "B2": "B2"} and result.items_merged == 0
    assert result.events == 3  # the shared review is still one event, attributed to B1


def test_a_weak_partial_overlap_does_not_chain_a_third_product_into_the_family() -> None:
    # B1-B2 share 3 of B1's 3 events; B2-B3 share 2, under half of B3's 5 events.
    frame = reviews(
        *[row for k in range(3) for row in copies(["B1", "B2"], f"u{k}", 100, f"x{k}")],
        *[row for k in range(2) for row in copies(["B2", "B3"], f"v{k}", 200, f"y{k}")],
        *own("B3", 3),
    )
    assert family_of(collapse_variants(frame)) == {"B1": "B1", "B2": "B1", "B3": "B3"}
    loose = collapse_variants(frame, VariantOptions(min_shared_fraction=0.4))
    assert set(loose.families["family_id"]) == {"B1"}  # 2 of 5 clears 0.4: the chain forms


def test_rows_without_text_are_never_grouped_with_anything() -> None:
    frame = reviews(
        ("u1", "B1", 5.0, 100, ""),
        ("u1", "B2", 5.0, 100, ""),
        ("u1", "B1", 5.0, 100, None),
        ("u1", "B2", 5.0, 100, None),
    )
    result = collapse_variants(frame, VariantOptions(min_shared_copies=1, min_shared_fraction=0.01))
    assert result.events == 4 and result.copies_collapsed == 0 and result.items_merged == 0
    assert result.reviews["source_line"].to_list() == [1, 2, 3, 4]


def test_events_with_too_many_copies_collapse_but_link_no_asins() -> None:
    asins = ["B1", "B2", "B3", "B4"]
    frame = reviews(
        *copies(asins, "u1", 100, "pooled"),
        *copies(asins, "u2", 100, "pooled too"),
        *copies(["B1", "B2"], "u3", 300, "pair"),
    )
    result = collapse_variants(frame, VariantOptions(max_copies_per_event=3))
    assert result.events == 3 and result.events_too_many_copies == 2
    assert result.items_merged == 0  # B1-B2 share 3 events, but only one of them links
    assert collapse_variants(frame).items_merged == 3


def test_disabled_passes_reviews_through_with_identity_families() -> None:
    frame = reviews(*copies(["B2", "B1"], "u1", 100, "a"), *copies(["B2", "B1"], "u2", 100, "b"))
    result = collapse_variants(frame.lazy(), VariantOptions(enabled=False))
    assert result.reviews.equals(frame)
    assert family_of(result) == {"B1": "B1", "B2": "B2"}
    assert result.metadata() == {
        "rows_in": 4,
        "events": 4,
        "copies_collapsed": 0,
        "items_in": 2,
        "families_out": 2,
        "items_merged": 0,
        "largest_family": 1,
        "events_too_many_copies": 0,
    }


def test_an_empty_frame_gives_empty_results() -> None:
    result = collapse_variants(reviews())
    assert result.reviews.height == 0 and result.families.height == 0 and result.largest_family == 0


def test_lazy_input_gives_the_same_result_as_eager() -> None:
    frame = reviews(*copies(["B2", "B1"], "u1", 100, "a"), *copies(["B2", "B1"], "u2", 100, "b"), *own("C1", 2))
    assert collapse_variants(frame.lazy()).reviews.equals(collapse_variants(frame).reviews)


@pytest.mark.parametrize(
    "bad",
    [{"min_shared_copies": 0}, {"min_shared_fraction": 0.0}, {"min_shared_fraction": 1.5}, {"max_copies_per_event": 1}],
)
def test_invalid_options_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        VariantOptions(**bad)


def test_merge_family_items_takes_each_field_from_the_key_first_then_members_in_asin_order() -> None:
    items = pl.DataFrame(
        [
            {
                "item_id": "B3",
                "title": "Third",
                "brand": "Z",
                "categories": ["c3"],
                "description": ["d3"],
                "features": [],
                "price": None,
                "image_urls": ["u3", "u1"],
                "source_line": 3,
            },
            {
                "item_id": "B1",
                "title": None,
                "brand": None,
                "categories": [],
                "description": [],
                "features": None,
                "price": None,
                "image_urls": ["u1"],
                "source_line": 7,
            },
            {
                "item_id": "B2",
                "title": "Second",
                "brand": "Y",
                "categories": ["c2"],
                "description": [],
                "features": ["f2"],
                "price": 2.99,
                "image_urls": None,
                "source_line": 5,
            },
            {
                "item_id": "C1",
                "title": "Alone",
                "brand": None,
                "categories": ["c"],
                "description": [],
                "features": [],
                "price": 1.0,
                "image_urls": ["c"],
                "source_line": 9,
            },
            {
                "item_id": "D1",
                "title": "Not in families",
                "brand": None,
                "categories": [],
                "description": [],
                "features": [],
                "price": None,
                "image_urls": [],
                "source_line": 1,
            },
        ],
        schema=ITEM_SCHEMA,
    )
    families = pl.DataFrame({"item_id": ["B1", "B2", "B3", "C1"], "family_id": ["B1", "B1", "B1", "C1"]})
    merged = merge_family_items(items, families)
    assert merged.schema == pl.Schema(MERGED_ITEM_SCHEMA)
    rows = {row["item_id"]: row for row in merged.iter_rows(named=True)}
    assert set(rows) == {"B1", "C1", "D1"}
    assert rows["B1"] == {
        "item_id": "B1",
        "title": "Second",
        "brand": "Y",
        "categories": ["c2"],
        "description": ["d3"],
        "features": ["f2"],
        "price": 2.99,
        "image_urls": ["u1", "u3"],
        "source_line": 3,
        "members": ["B1", "B2", "B3"],
    }
    assert rows["C1"]["members"] == ["C1"] and rows["C1"]["title"] == "Alone"
    assert rows["D1"]["members"] == ["D1"] and rows["D1"]["title"] == "Not in families"


def test_merge_family_items_prefers_the_keys_own_scalar_fields() -> None:
    items = pl.DataFrame(
        [
            {
                "item_id": a,
                "title": a.lower(),
                "brand": None,
                "categories": [],
                "description": [],
                "features": [],
                "price": p,
                "image_urls": [],
                "source_line": n,
            }
            for n, (a, p) in enumerate([("B2", 5.0), ("B1", None)])
        ],
        schema=ITEM_SCHEMA,
    )
    merged = merge_family_items(items, pl.DataFrame({"item_id": ["B1", "B2"], "family_id": ["B1", "B1"]}))
    assert merged.select("item_id", "title", "price").rows() == [("B1", "b1", 5.0)]


# --- real 2018 dumps ----------------------------------------------------------------------------------------------

REAL_FILES = ("All_Beauty_5", "Appliances_5", "Magazine_Subscriptions_5")


@pytest.fixture(scope="module")
def real_reviews(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real dumps not found at {REAL_DATA_DIR} (../shared is absent in this checkout)")
    out = tmp_path_factory.mktemp("real_variants")
    frames = {}
    for name in REAL_FILES:
        ingest_dump(
            REAL_DATA_DIR / f"{name}.json.gz", "reviews", out / f"{name}.parquet", out / f"{name}.rejected.parquet"
        )
        frames[name] = pl.read_parquet(out / f"{name}.parquet")
    return frames


# (rows in, events, families, items merged, largest family, (user, item) pairs before and after collapsing)
REAL_COUNTS = {
    "All_Beauty_5": (5269, 1383, 56, 29, 24, 4092, 1273),
    "Appliances_5": (2277, 157, 43, 5, 4, 183, 136),
    "Magazine_Subscriptions_5": (2375, 1983, 151, 6, 2, 2302, 1960),
}


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_2018_files_collapse_to_one_row_per_review_without_giant_families(
    real_reviews: dict[str, pl.DataFrame], name: str
) -> None:
    frame = real_reviews[name]
    result = collapse_variants(frame)
    pairs_before = frame.select("user_id", "item_id").n_unique()
    pairs_after = latest_per_pair(result.reviews).collect().height
    print(f"{name}: {result.metadata()}, (user, item) pairs {pairs_before} -> {pairs_after}")
    rows_in, events, families, merged, largest, before, after = REAL_COUNTS[name]
    assert (result.rows_in, result.events, result.families_out, result.items_merged, result.largest_family) == (
        rows_in,
        events,
        families,
        merged,
        largest,
    )
    assert (pairs_before, pairs_after) == (before, after)
    assert result.copies_collapsed == rows_in - events and result.events_too_many_copies == 0
    with_text = result.reviews.filter(pl.col("text").str.len_bytes() > 0)
    assert with_text.select(EVENT).n_unique() == with_text.height  # no review event survives twice
    assert result.largest_family < result.items_in / 2


def test_all_beauty_events_match_the_distinct_reviews_of_the_formats_notes(
    real_reviews: dict[str, pl.DataFrame],
) -> None:
    """FORMATS.md counts 1,379 distinct reviews, its five textless rows as one; here each is its own event."""
    frame = real_reviews["All_Beauty_5"]
    textless = frame.filter(pl.col("text").is_null() | (pl.col("text") == "")).height
    assert textless == 5
    assert frame.select(EVENT).n_unique() == 1379
    assert collapse_variants(frame).events == 1379 - 1 + textless


def test_the_fraction_guard_keeps_partial_overlaps_from_chaining_real_products(
    real_reviews: dict[str, pl.DataFrame],
) -> None:
    frame = real_reviews["Magazine_Subscriptions_5"]
    any_shared_pair = collapse_variants(frame, VariantOptions(min_shared_copies=1, min_shared_fraction=1e-9))
    guarded = collapse_variants(frame)
    print(
        f"largest family: {any_shared_pair.largest_family} linking on any shared copy, {guarded.largest_family} guarded"
    )
    assert any_shared_pair.largest_family == 97 and guarded.largest_family == 2


# --- generated samples with planted families ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["2014", "2018"])
def planted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SampleManifest, pl.DataFrame]:
    root = tmp_path_factory.mktemp(f"variants_{request.param}")
    spec = SampleSpec(
        release=request.param,
        n_users=300,
        n_items=60,
        n_reviews=3000,
        image_size=8,
        compresslevel=1,
        variant_families=0.15,
        coincidental_copies=4,
    )
    manifest = write_sample(root, spec)
    report = ingest_dump(manifest.reviews_path, "reviews", root / "reviews.parquet", root / "rejected.parquet")
    assert report.rows_out == manifest.review_records + manifest.copy_lines
    return manifest, pl.read_parquet(root / "reviews.parquet")


def test_collapse_recovers_exactly_the_planted_families(planted: tuple[SampleManifest, pl.DataFrame]) -> None:
    manifest, frame = planted
    result = collapse_variants(frame)
    found = (
        result.families.group_by("family_id")
        .agg(pl.col("item_id").sort())
        .filter(pl.col("item_id").list.len() > 1)["item_id"]
        .to_list()
    )
    assert manifest.variant_families and sorted(map(tuple, found)) == sorted(manifest.variant_families.values())
    assert result.items_merged == sum(len(asins) - 1 for asins in manifest.variant_families.values())


def test_coincidental_copies_merge_nothing_and_stay_one_event(planted: tuple[SampleManifest, pl.DataFrame]) -> None:
    manifest, frame = planted
    result = collapse_variants(frame)
    family = family_of(result)
    assert len(manifest.coincidences) == 4
    for a, b in manifest.coincidences:
        assert family[a] == a and family[b] == b
        shared = (
            frame.filter(pl.col("item_id").is_in([a, b]))
            .group_by(EVENT)
            .agg(pl.col("item_id").n_unique().alias("asins"))
            .filter(pl.col("asins") == 2)
        )
        assert shared.height == 1  # exactly one review on both
    with_text = result.reviews.filter(pl.col("text").str.len_bytes() > 0)
    assert with_text.select(EVENT).n_unique() == with_text.height


def test_collapsed_and_deduplicated_sample_has_the_true_pair_count(
    planted: tuple[SampleManifest, pl.DataFrame],
) -> None:
    manifest, frame = planted
    assert frame.select("user_id", "item_id").n_unique() > manifest.unique_pairs  # the copies inflate it
    assert latest_per_pair(collapse_variants(frame).reviews).collect().height == manifest.unique_pairs


# --- the narrow path: text replaced by its key while the Parquet file is scanned ----------------------------------


def narrow(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """What the interactions asset collapses: ``review_events`` streamed from the frame written as Parquet."""
    frame.write_parquet(path)
    return review_events(pl.scan_parquet(path)).collect(engine="streaming")


def assert_same_collapse(frame: pl.DataFrame, path: Path, options: VariantOptions | None = None) -> None:
    """The narrow frame gives exactly the rows, families, counts and deduplicated pairs of the full-text one."""
    options = options or VariantOptions()
    wide, slim = collapse_variants(frame, options), collapse_variants(narrow(frame, path), options)
    assert slim.reviews.columns == [*EVENT_COLUMNS, *TEXT_KEY]
    assert slim.reviews.select(EVENT_COLUMNS).equals(wide.reviews.select(EVENT_COLUMNS))
    assert slim.families.equals(wide.families)
    assert slim.metadata() == wide.metadata()
    assert latest_per_pair(slim.reviews).collect().equals(latest_per_pair(wide.reviews).collect())


def test_the_text_key_gives_the_events_rows_and_families_of_the_text(tmp_path: Path) -> None:
    frame = reviews(
        *copies(["B3", "B1", "B2"], "u1", 100, "great"),
        *copies(["B2", "B1"], "u2", 100, "good"),
        *copies(["B1", "B1"], "u3", 150, "twice on one asin"),
        # one user, one second, one rating, different texts (the same length too): separate events
        ("u1", "B4", 5.0, 100, "grand"),
        ("u1", "B5", 5.0, 100, "gREAT"),
        # the same text by another user, or with another rating: separate events
        ("u9", "B4", 5.0, 100, "great"),
        ("u1", "B6", 4.0, 100, "great"),
        # no text: never grouped, neither empty nor null
        ("u4", "B1", 3.0, 200, ""),
        ("u4", "B2", 3.0, 200, ""),
        ("u4", "B1", 3.0, 200, None),
        ("u4", "B2", 3.0, 200, None),
        *own("B6", 3),
    )
    result = collapse_variants(narrow(frame, tmp_path / "reviews.parquet"))
    assert result.events == 14 and family_of(result)["B2"] == "B1"
    assert_same_collapse(frame, tmp_path / "reviews.parquet")
    assert_same_collapse(frame, tmp_path / "reviews.parquet", VariantOptions(min_shared_copies=1))
    assert_same_collapse(frame, tmp_path / "reviews.parquet", VariantOptions(enabled=False))


_TEXTS = st.sampled_from([None, "", "a", "b", "ab", "ba", "a long review"])
_ROWS = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        st.sampled_from(["B1", "B2", "B3", "B4"]),
        st.sampled_from([4.0, 5.0]),
        st.sampled_from([100, 101]),
        _TEXTS,
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(rows=_ROWS)
def test_the_text_key_matches_the_text_on_any_frame(tmp_path_factory: pytest.TempPathFactory, rows: list) -> None:
    path = tmp_path_factory.mktemp("narrow") / "reviews.parquet"
    assert_same_collapse(reviews(*rows), path, VariantOptions(min_shared_copies=1, min_shared_fraction=0.3))


def test_a_frame_without_text_or_its_key_is_refused() -> None:
    with pytest.raises(ValueError, match="text_bytes"):
        collapse_variants(reviews(*copies(["B1", "B2"], "u1", 100, "a")).drop("text"))


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_2018_files_collapse_the_same_through_the_text_key(
    real_reviews: dict[str, pl.DataFrame], name: str, tmp_path: Path
) -> None:
    assert_same_collapse(real_reviews[name], tmp_path / "reviews.parquet")


def test_planted_samples_collapse_the_same_through_the_text_key(
    planted: tuple[SampleManifest, pl.DataFrame], tmp_path: Path
) -> None:
    assert_same_collapse(planted[1], tmp_path / "reviews.parquet")
