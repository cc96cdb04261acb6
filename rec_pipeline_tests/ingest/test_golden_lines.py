"""Golden lines: the reader pinned to the real dumps in ../shared, not to the sample writer's beliefs.

Each real file is read in place (never copied into the repository): its head is sniffed, parsed and normalized
by the release format the registry holds, and a few named lines must come out with the values read off the
files by hand. The format objects' field lists are checked against the keys the real lines carry, so a key
the reader does not know (as 2018's small-category ``image`` once was) fails here, whatever the sample does.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rec_pipeline.ingest import release_2018
from rec_pipeline.ingest.formats import META_2018, META_2023, REVIEWS_2018, SourceFormat, sniff_format
from rec_pipeline.ingest.lines import parse_block
from rec_pipeline.ingest.release import Kind, MetaFields, ReviewFields

HEAD_LINES = 200


def _head(path: Path, n: int = HEAD_LINES) -> list[bytes]:
    lines = []
    with gzip.open(path, "rb") as handle:
        for line in handle:
            lines.append(line.rstrip(b"\n"))
            if len(lines) == n:
                break
    return lines


def _normalized(path: Path, kind: Kind) -> tuple[SourceFormat, dict[int, dict[str, Any]]]:
    """The file's sniffed format and its head's normalized rows, by line number (1-based)."""
    lines = _head(path)
    fmt = sniff_format(kind, lines)
    block = parse_block(b"\n".join(lines) + b"\n", 1, fmt, path.name, fmt.required)
    assert block.rejected == [] and block.empty_lines == 0
    frame = block.frame.select(*fmt.normalize(), pl.col("source_line"))
    assert frame.height == len(lines)
    return fmt, {row["source_line"]: row for row in frame.iter_rows(named=True)}


def _all_keys(path: Path) -> tuple[set[str], set[str]]:
    """(keys found on any line, keys found on every line) of a whole real file."""
    union: set[str] = set()
    every: set[str] | None = None
    with gzip.open(path, "rb") as handle:
        for line in handle:
            keys = set(json.loads(line))
            union |= keys
            every = keys if every is None else every & keys
    return union, every or set()


def test_2018_reviews_golden_lines(real_data_dir: Path) -> None:
    fmt, rows = _normalized(real_data_dir / "All_Beauty_5.json.gz", "reviews")
    assert fmt is REVIEWS_2018
    first = rows[1]
    assert (first["user_id"], first["item_id"], first["rating"], first["timestamp"]) == (
        "A3CIUOJXQ5VDQ2",
        "B0000530HU",
        5.0,
        1472688000,
    )
    assert (first["summary"], first["text"], first["verified"], first["votes"], first["image_urls"]) == (
        "Five Stars",
        "As advertised. Reasonably priced",
        True,
        None,
        [],
    )
    fourth = rows[4]  # "vote": "25", "verified": false
    assert (fourth["user_id"], fourth["timestamp"], fourth["votes"], fourth["verified"]) == (
        "A2UEO5XR3598GI",
        1304380800,
        25,
        False,
    )


def test_2018_review_photos_golden_line(real_data_dir: Path) -> None:
    fmt, rows = _normalized(real_data_dir / "Appliances_5.json.gz", "reviews")
    assert fmt is REVIEWS_2018
    row = rows[34]  # the file's first line with review photos
    assert (row["user_id"], row["item_id"], row["rating"], row["timestamp"], row["votes"]) == (
        "A1T1YSCDW0PD25",
        "B0013DN4NI",
        5.0,
        1221523200,
        11,
    )
    assert row["summary"] == "Great little power tool"
    assert row["image_urls"] == [
        "https://images-na.ssl-images-amazon.com/images/I/418i+RDczcL._SY88.jpg",
        "https://images-na.ssl-images-amazon.com/images/I/51VvC6xqLKL._SY88.jpg",
        "https://images-na.ssl-images-amazon.com/images/I/41lsJSgwysL._SY88.jpg",
        "https://images-na.ssl-images-amazon.com/images/I/412IrI4ha8L._SY88.jpg",
    ]
    _, magazine = _normalized(real_data_dir / "Magazine_Subscriptions_5.json.gz", "reviews")
    assert (magazine[2]["user_id"], magazine[2]["item_id"], magazine[2]["votes"], magazine[2]["timestamp"]) == (
        "A5RHZE7B8SV5Q",
        "B00005N7PS",
        3,
        1078531200,
    )


def test_2018_small_category_metadata_golden_lines(real_data_dir: Path) -> None:
    fmt, rows = _normalized(real_data_dir / "meta_Appliances.json.gz", "meta")
    assert fmt is META_2018
    first, second = rows[1], rows[2]
    assert (first["item_id"], first["title"], first["brand"], first["price"], first["image_urls"]) == (
        "7301113188",
        "Tupperware Freezer Square Round Container Set of 6",
        "Tupperware",
        None,  # "price": ""
        [],  # "image": []
    )
    assert first["categories"] == ["Appliances", "Refrigerators, Freezers & Ice Makers"]
    assert (second["item_id"], second["price"], len(second["image_urls"])) == ("7861850250", 3.62, 6)
    assert second["title"].startswith("2 X Tupperware Pure &amp; Fresh Unique Covered Cool Cubes")
    # The `image` list holds 38x50 thumbnails; the reader asks for the picture behind each.
    assert second["image_urls"][0] == "https://images-na.ssl-images-amazon.com/images/I/51PvoOANRZL.jpg"
    fmt, rows = _normalized(real_data_dir / "meta_Magazine_Subscriptions.json.gz", "meta")
    assert fmt is META_2018
    magazine = rows[1]
    assert (magazine["item_id"], magazine["title"], magazine["brand"], len(magazine["image_urls"])) == (
        "B00005N7NQ",
        '<span class="a-size-medium a-color-secondary"',
        "Reason Magazine",
        6,
    )
    assert magazine["image_urls"][1] == "https://images-na.ssl-images-amazon.com/images/I/51se%2BqMOjGL.jpg"


def test_2023_metadata_golden_lines(real_data_dir: Path) -> None:
    fmt, rows = _normalized(real_data_dir / "meta_Health_and_Personal_Care.jsonl.gz", "meta")
    assert fmt is META_2023
    first, second = rows[1], rows[2]
    assert (first["item_id"], first["brand"], first["price"], len(first["image_urls"])) == (
        "B075ZXP9XL",
        "Buff Juice",
        None,
        5,
    )
    assert first["title"].startswith("Pre Workout Powder Energy Drink (30 Servings) \u2013 Caffeine Free")
    assert first["image_urls"][0] == "https://m.media-amazon.com/images/I/41ad7xYaIkL._AC_.jpg"  # "large"
    assert first["categories"] == ["Health & Personal Care"]  # "categories": [], main_category kept
    assert (second["item_id"], second["brand"], second["price"], len(second["image_urls"])) == (
        "B099GTM278",
        "NoYo Nutrition",
        27.95,
        7,
    )


@pytest.mark.parametrize("name", ["All_Beauty_5.json.gz", "Appliances_5.json.gz", "Magazine_Subscriptions_5.json.gz"])
def test_2018_review_fields_are_the_real_files_keys(real_data_dir: Path, name: str) -> None:
    union, every = _all_keys(real_data_dir / name)
    fields = REVIEWS_2018.fields
    assert isinstance(fields, ReviewFields)
    assert union == fields.keys()
    assert set(REVIEWS_2018.required) <= every


@pytest.mark.parametrize("name", ["meta_Appliances.json.gz", "meta_Magazine_Subscriptions.json.gz"])
def test_2018_small_category_metadata_keys_are_the_format_s(real_data_dir: Path, name: str) -> None:
    union, every = _all_keys(real_data_dir / name)
    fields = META_2018.fields
    assert isinstance(fields, MetaFields)
    category = name.removeprefix("meta_").removesuffix(".json.gz")
    assert release_2018.image_key_variant(category) == release_2018.SMALL_CATEGORY_IMAGES
    assert union == every == fields.keys(release_2018.SMALL_CATEGORY_IMAGES)
    assert not {"imageURL", "imageURLHighRes"} & union  # neither large-category image key is there


def test_2023_metadata_keys_are_the_format_s(real_data_dir: Path) -> None:
    union, every = _all_keys(real_data_dir / "meta_Health_and_Personal_Care.jsonl.gz")
    fields = META_2023.fields
    assert isinstance(fields, MetaFields)
    assert union == every == fields.keys()
