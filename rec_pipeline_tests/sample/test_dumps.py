"""The dump files look like each release's originals: names, syntax, fields, dirt and duplicates."""

from __future__ import annotations

import ast
import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rec_pipeline.sample import DIRT_KINDS, SampleManifest, dump_file_names, write_sample
from rec_pipeline.sample.dumps import _vote_fragments, corrupt_line
from rec_pipeline.sample.truth import noise_floor_rmse
from rec_pipeline_tests.sample.conftest import small_spec

REVIEW_FIELDS = {
    "2014": {"reviewerID", "asin", "helpful", "reviewText", "overall", "summary", "unixReviewTime", "reviewTime"},
    "2018": {"overall", "verified", "reviewTime", "reviewerID", "asin", "reviewText", "summary", "unixReviewTime"},
    "2023": {
        "rating",
        "title",
        "text",
        "images",
        "asin",
        "parent_asin",
        "user_id",
        "timestamp",
        "helpful_vote",
        "verified_purchase",
    },
}
KEYS = {
    "2014": ("reviewerID", "asin", "overall"),
    "2018": ("reviewerID", "asin", "overall"),
    "2023": ("user_id", "parent_asin", "rating"),
}


def read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]  # the file ends with a newline


def classify(line: str, release: str) -> str | None:
    """Which dirt kind a reviews line is (None for a valid record), judged independently of the generator."""
    if not line:
        return "empty_line"
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return "malformed_json"
    user_key, _, rating_key = KEYS[release]
    if user_key not in record:
        return "missing_user_id"
    if not isinstance(record[rating_key], float):
        return "non_numeric_rating"
    if not 1.0 <= record[rating_key] <= 5.0:
        return "out_of_range_rating"
    return None


def valid_records(path: Path, release: str) -> list[dict]:
    return [json.loads(line) for line in read_lines(path) if classify(line, release) is None]


@pytest.mark.parametrize(
    ("release", "five_core", "expected"),
    [
        ("2014", True, ("reviews_Cat_5.json.gz", "meta_Cat.json.gz")),
        ("2014", False, ("reviews_Cat.json.gz", "meta_Cat.json.gz")),
        ("2018", True, ("Cat_5.json.gz", "meta_Cat.json.gz")),
        ("2018", False, ("Cat.json.gz", "meta_Cat.json.gz")),
        ("2023", True, ("Cat.jsonl.gz", "meta_Cat.jsonl.gz")),
    ],
)
def test_file_names_follow_each_release(release: str, five_core: bool, expected: tuple[str, str]) -> None:
    assert dump_file_names("Cat", release, five_core) == expected


@pytest.mark.parametrize("release", ["2014", "2018", "2023"])
def test_reviews_are_written_under_raw_with_the_release_name(samples: dict, release: str) -> None:
    root, manifest = samples[release]
    reviews_name, meta_name = dump_file_names("Sample_Toys", release)
    assert manifest.reviews_path == root / "raw" / reviews_name and manifest.reviews_path.is_file()
    assert manifest.meta_path == root / "raw" / meta_name and manifest.meta_path.is_file()
    assert all(p.is_file() for p in manifest.paths)


@pytest.mark.parametrize("release", ["2014", "2018", "2023"])
def test_valid_review_lines_carry_the_release_fields(samples: dict, release: str) -> None:
    _, manifest = samples[release]
    records = valid_records(manifest.reviews_path, release)
    assert len(records) == manifest.review_records == 3000
    for record in records[:200]:
        assert REVIEW_FIELDS[release] <= set(record)
        assert record[KEYS[release][2]] in {1.0, 2.0, 3.0, 4.0, 5.0}
    if release == "2018":
        assert any("style" in r for r in records) and any("vote" not in r for r in records)
        assert all(isinstance(r.get("vote", ""), str) for r in records)
    if release == "2014":
        assert not any({"vote", "verified", "style", "image"} & set(r) for r in records)
        assert all(len(r["helpful"]) == 2 and r["helpful"][0] <= r["helpful"][1] for r in records)


def test_2014_and_2018_ids_look_like_amazon_ids(samples: dict) -> None:
    _, manifest = samples["2018"]
    record = valid_records(manifest.reviews_path, "2018")[0]
    assert record["reviewerID"].startswith("A") and 12 <= len(record["reviewerID"]) <= 14
    assert record["asin"].startswith("B0") and len(record["asin"]) == 10


def test_2014_and_2018_dates_agree_with_unix_time(samples: dict) -> None:
    _, manifest = samples["2014"]
    for record in valid_records(manifest.reviews_path, "2014")[:100]:
        day = np.datetime64(record["unixReviewTime"], "s").astype("datetime64[D]").item()
        assert record["reviewTime"] == f"{day.month:02d} {day.day}, {day.year}"


def test_2023_timestamps_are_milliseconds_and_items_keyed_by_parent_asin(samples: dict) -> None:
    _, manifest = samples["2023"]
    records = valid_records(manifest.reviews_path, "2023")
    stamps = np.array([r["timestamp"] for r in records])
    assert stamps.min() > 10**12  # milliseconds: seconds would be ~1.5e9
    assert (stamps % 1000 != 0).mean() > 0.9  # real milliseconds, not seconds * 1000
    items = set(pl.read_parquet(manifest.truth_items_path)["item_id"])
    assert {r["parent_asin"] for r in records} <= items
    assert any(r["asin"] != r["parent_asin"] for r in records)
    assert all(len(r["user_id"]) == 28 for r in records[:50])


@pytest.mark.parametrize("release", ["2014", "2018", "2023"])
def test_dirt_lines_match_the_manifest_counts(samples: dict, release: str) -> None:
    _, manifest = samples[release]
    lines = read_lines(manifest.reviews_path)
    found = Counter(kind for line in lines if (kind := classify(line, release)) is not None)
    assert len(lines) == manifest.review_lines == manifest.review_records + manifest.dirt_lines
    assert dict(found) == {k: v for k, v in manifest.dirt.items() if v}
    assert set(manifest.dirt) == set(DIRT_KINDS) and all(v == 6 for v in manifest.dirt.values())  # 1% of 3000


def test_corrupt_line_produces_each_kind_from_a_valid_line() -> None:
    line = json.dumps({"reviewerID": "A1", "asin": "B0", "overall": 5.0})
    rng = np.random.default_rng(0)
    for kind in DIRT_KINDS:
        assert classify(corrupt_line(line, kind, "2018", rng), "2018") == kind


@pytest.mark.parametrize("release", ["2014", "2018", "2023"])
def test_duplicate_pairs_are_present_and_the_later_copy_is_latest(samples: dict, release: str) -> None:
    root, manifest = samples[release]
    user_key, item_key, rating_key = KEYS[release]
    time_key = "timestamp" if release == "2023" else "unixReviewTime"
    frame = pl.DataFrame(
        [(r[user_key], r[item_key], r[rating_key], r[time_key]) for r in valid_records(manifest.reviews_path, release)],
        schema=["user_id", "item_id", "rating", "ts"],
        orient="row",
    )
    pairs = frame.group_by("user_id", "item_id").agg(pl.len().alias("n"), pl.col("ts").n_unique().alias("times"))
    assert pairs.height == manifest.unique_pairs
    assert int((pairs["n"] - 1).sum()) == manifest.duplicates == 150
    assert pairs.filter(pl.col("n") > 1)["times"].min() == 2  # the copy is strictly later


@pytest.mark.parametrize("release", ["2014", "2018", "2023"])
def test_written_ratings_reproduce_the_truth_noise_floor(samples: dict, release: str) -> None:
    """The file's latest ratings, joined with the truth parameters, give the floor the truth JSON reports."""
    _, manifest = samples[release]
    user_key, item_key, rating_key = KEYS[release]
    time_key = "timestamp" if release == "2023" else "unixReviewTime"
    reviews = (
        pl.DataFrame(
            [
                (r[user_key], r[item_key], r[rating_key], r[time_key])
                for r in valid_records(manifest.reviews_path, release)
            ],
            schema=["user_id", "item_id", "rating", "ts"],
            orient="row",
        )
        .sort("ts")
        .group_by("user_id", "item_id")
        .last()
    )
    users = pl.read_parquet(manifest.truth_users_path).rename({"bias": "bu", "factors": "pu"})
    items = pl.read_parquet(manifest.truth_items_path).rename({"bias": "bi", "factors": "qi"})
    joined = reviews.join(users, on="user_id").join(items, on="item_id")
    assert joined.height == reviews.height
    truth = json.loads(manifest.truth_path.read_text())
    dot = np.einsum("nk,nk->n", np.array(joined["pu"].to_list()), np.array(joined["qi"].to_list()))
    r_star = truth["mu"] + joined["bu"].to_numpy() + joined["bi"].to_numpy() + dot
    floor = noise_floor_rmse(r_star, joined["rating"].to_numpy(), truth["sigma"])
    assert floor == pytest.approx(truth["noise_floor_rmse"], abs=1e-9)


def test_2014_metadata_is_python_literals_not_json(samples: dict) -> None:
    _, manifest = samples["2014"]
    lines = read_lines(manifest.meta_path)
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])
    records = [ast.literal_eval(line) for line in lines]
    assert len(records) == manifest.items == manifest.meta_lines
    assert all({"asin", "related", "salesRank", "categories", "brand"} <= set(r) for r in records)
    assert all(isinstance(r["categories"][0], list) for r in records)
    assert any(isinstance(r.get("price"), float) for r in records) and any("imUrl" in r for r in records)


def test_2018_metadata_has_string_prices_and_duplicated_asins(tmp_path: Path) -> None:
    # Larger catalogue so the 1% duplicated-asin lines show up.
    manifest = write_sample(tmp_path, small_spec("2018", n_items=600, n_users=400, n_reviews=2500, image_size=8))
    records = [json.loads(line) for line in read_lines(manifest.meta_path)]
    asins = Counter(r["asin"] for r in records)
    assert manifest.meta_dirt["duplicate_asin_lines"] == sum(n - 1 for n in asins.values()) > 0
    assert len(asins) == manifest.items
    prices = [r["price"] for r in records]
    assert all(isinstance(p, str) for p in prices)
    assert any(p.startswith("$") for p in prices) and "" in prices and any(" - " in p for p in prices)
    assert all(
        {"imageURL", "imageURLHighRes", "feature", "description", "category", "main_cat"} <= set(r) for r in records
    )
    assert any(r["title"].startswith("<!DOCTYPE html>") for r in records)
    assert any(r["description"] == [] for r in records)


def test_2023_metadata_fields_and_image_dicts(samples: dict) -> None:
    _, manifest = samples["2023"]
    records = [json.loads(line) for line in read_lines(manifest.meta_path)]
    assert len(records) == manifest.items
    for r in records:
        assert {
            "parent_asin",
            "main_category",
            "title",
            "features",
            "description",
            "price",
            "images",
            "store",
            "categories",
            "average_rating",
            "rating_number",
        } <= set(r)
        assert r["price"] is None or isinstance(r["price"], float)
        for image in r["images"]:
            assert set(image) == {"thumb", "large", "variant", "hi_res"}
    assert sum(r["rating_number"] for r in records) == manifest.unique_pairs


def test_vote_fragments_use_thousands_separators() -> None:
    assert _vote_fragments(np.array([0, 7, 1234])) == ["", '"vote": "7", ', '"vote": "1,234", ']


def test_same_spec_writes_the_same_reviews_bytes(tmp_path: Path, samples: dict) -> None:
    _, manifest = samples["2018"]
    again = write_sample(tmp_path, small_spec("2018"))
    assert again.reviews_path.read_bytes() == manifest.reviews_path.read_bytes()
    assert again.meta_path.read_bytes() == manifest.meta_path.read_bytes()
    other_seed = write_sample(tmp_path / "other", small_spec("2018", seed=8))
    assert other_seed.reviews_path.read_bytes() != manifest.reviews_path.read_bytes()


def test_manifest_counts_are_saved_in_the_truth_json(samples: dict) -> None:
    _, manifest = samples["2018"]
    truth = json.loads(manifest.truth_path.read_text())
    assert isinstance(manifest, SampleManifest)
    assert truth["counts"]["dirt"] == manifest.dirt
    assert truth["counts"]["review_lines"] == manifest.review_lines
    assert truth["counts"]["duplicates"] == manifest.duplicates
    assert truth["spec"]["release"] == "2018" and truth["sigma"] == 0.5
