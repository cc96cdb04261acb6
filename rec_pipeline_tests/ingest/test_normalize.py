"""Each release normalizes to the common schema; every bad line is counted and quarantined with its number."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from rec_pipeline.ingest.normalize import IngestOptions, ingest_dump
from rec_pipeline.schema import ITEM_SCHEMA, REVIEW_SCHEMA
from rec_pipeline_tests.conftest import write_lines
from rec_pipeline_tests.ingest.examples import REVIEW_2014, REVIEW_2018, REVIEW_2023

R2018 = {
    **REVIEW_2018,
    "style": {"Size:": " Large"},
    "reviewerName": "x",
    "vote": "1,234",
    "image": ["https://img/1.jpg"],
}
R2014 = dict(REVIEW_2014)
R2023 = {
    **REVIEW_2023,
    "images": [{"small_image_url": "s", "medium_image_url": "m", "large_image_url": "L"}],
}


def _ingest(tmp_path: Path, name: str, lines: list, kind: str = "reviews", chunk_bytes: int = 8 << 20):
    src = write_lines(tmp_path / name, lines)
    out, rej = tmp_path / f"{name}.parquet", tmp_path / f"{name}.rejected.parquet"
    report = ingest_dump(src, kind, out, rej, IngestOptions(chunk_bytes=chunk_bytes))  # type: ignore[arg-type]
    return report, pl.read_parquet(out), pl.read_parquet(rej)


def test_2018_reviews_map_to_the_common_schema(tmp_path: Path) -> None:
    report, frame, rejected = _ingest(tmp_path, "Cat_5.json.gz", [R2018])
    assert report.release == "2018" and rejected.height == 0
    assert frame.schema == pl.Schema(REVIEW_SCHEMA)
    row = frame.row(0, named=True)
    assert (row["user_id"], row["item_id"], row["rating"], row["timestamp"]) == ("A1", "B1", 5.0, 1377129600)
    assert row["votes"] == 1234 and row["verified"] is True and row["image_urls"] == ["https://img/1.jpg"]


def test_2014_reviews_take_votes_from_helpful(tmp_path: Path) -> None:
    report, frame, _ = _ingest(tmp_path, "reviews_Cat_5.json.gz", [R2014])
    assert report.release == "2014"
    row = frame.row(0, named=True)
    assert row["votes"] == 3 and row["timestamp"] == 1300000000 and row["text"] == "fine"


def test_2023_reviews_use_parent_asin_and_convert_milliseconds(tmp_path: Path) -> None:
    report, frame, _ = _ingest(tmp_path, "Cat.jsonl.gz", [R2023])
    assert report.release == "2023"
    row = frame.row(0, named=True)
    assert row["item_id"] == "B3" and row["user_id"] == "U3"
    assert row["timestamp"] == 1588687728
    assert row["image_urls"] == ["L"] and row["summary"] == "meh"
    assert report.ms_timestamps_converted == 1


def test_missing_unix_time_falls_back_to_review_time(tmp_path: Path) -> None:
    line = {k: v for k, v in R2018.items() if k != "unixReviewTime"}
    _, frame, _ = _ingest(tmp_path, "Cat_5.json.gz", [line])
    assert frame["timestamp"][0] == 1377129600


def test_bad_lines_are_counted_and_quarantined_with_line_numbers(tmp_path: Path) -> None:
    good = [dict(R2018, reviewerID=f"U{i}") for i in range(200)]
    lines: list = list(good)
    lines.insert(10, '{"reviewerID": "X", "asin": broken')  # line 11
    lines.insert(20, dict(R2018, reviewerID=None))  # 21: missing user id
    lines.insert(30, dict(R2018, overall="five"))  # 31: non-numeric rating
    lines.insert(40, dict(R2018, overall=7.0))  # 41: out of range
    lines.insert(50, "")  # 51: empty line, not data
    lines.insert(60, "[1, 2, 3]")  # 61: not an object
    lines.insert(70, {k: v for k, v in R2018.items() if k != "asin"})  # 71: missing item id
    lines.insert(80, dict(R2018, unixReviewTime=1377129600123))  # 81: milliseconds: converted, kept
    report, frame, rejected = _ingest(tmp_path, "Cat_5.json.gz", lines, chunk_bytes=4096)
    assert report.lines == 208
    assert report.rows_out == 201
    assert report.empty_lines == 1
    by_line = dict(zip(rejected["source_line"], rejected["reason"], strict=True))
    assert set(by_line) == {11, 21, 31, 41, 61, 71}
    assert by_line[11].startswith("malformed JSON")
    assert by_line[21] == "missing user id" and by_line[71] == "missing item id"
    assert by_line[31].startswith("non-numeric rating") and by_line[41] == "rating out of range"
    assert "broken" in rejected.filter(pl.col("source_line") == 11)["raw"][0]
    assert report.rows_out + report.rejected_total + report.empty_lines == report.lines
    assert frame.filter(pl.col("source_line") == 81)["timestamp"][0] == 1377129600
    # Source lines of kept rows point at the right lines of the file.
    assert frame.filter(pl.col("source_line") == 200)["user_id"][0] == "U191"  # 200 - 1 - 8 inserted lines


def test_truncated_gzip_keeps_rows_and_flags_the_input(tmp_path: Path) -> None:
    lines = "".join(
        f'{{"reviewerID": "U{i}", "asin": "B{i % 50}", "overall": 4.0, "unixReviewTime": {1300000000 + i}, '
        f'"reviewText": "text {i} " }}\n'
        for i in range(20000)
    )
    whole = gzip.compress(lines.encode())
    src = tmp_path / "Cat_5.json.gz"
    src.write_bytes(whole[: int(len(whole) * 0.6)])
    report = ingest_dump(src, "reviews", tmp_path / "o.parquet", tmp_path / "r.parquet")
    assert not report.complete and "truncated" in (report.problem or "")
    assert 5000 < report.rows_out < 20000
    assert report.rows_out + report.rejected_total == report.lines


def test_empty_file_gives_an_empty_table_and_a_problem(tmp_path: Path) -> None:
    src = tmp_path / "Cat_5.json.gz"
    src.write_bytes(gzip.compress(b""))
    report = ingest_dump(src, "reviews", tmp_path / "o.parquet", tmp_path / "r.parquet")
    assert report.rows_out == 0 and report.problem == "empty file: no lines at all"
    assert pl.read_parquet(tmp_path / "o.parquet").schema == pl.Schema(REVIEW_SCHEMA)


def test_2014_metadata_python_literals_are_parsed(tmp_path: Path) -> None:
    lines = [
        "{'asin': 'B1', 'title': \"Kid's guitar\", 'price': 12.5, 'imUrl': 'http://x/1.jpg', "
        "'categories': [['Toys', 'Music']], 'salesRank': {'Toys': 5}, 'related': {'also_bought': ['B2']}}",
        "{'asin': 'B2', 'description': 'A drum', 'categories': [['Toys']]}",
        "{'asin': broken",
    ]
    report, frame, rejected = _ingest(tmp_path, "meta_Cat.json.gz", lines, kind="meta")
    assert report.release == "2014"
    assert frame.schema == pl.Schema(ITEM_SCHEMA)
    first = frame.row(0, named=True)
    assert first["title"] == "Kid's guitar" and first["price"] == 12.5 and first["image_urls"] == ["http://x/1.jpg"]
    assert first["categories"] == ["Toys > Music"]
    assert frame.row(1, named=True)["description"] == ["A drum"]
    assert rejected["source_line"].to_list() == [3]


def test_2018_metadata_prices_and_images(tmp_path: Path) -> None:
    base = {
        "asin": "B1",
        "title": "t",
        "feature": ["f1"],
        "description": ["d"],
        "imageURL": ["lo"],
        "imageURLHighRes": ["hi"],
        "category": ["Beauty"],
        "main_cat": "Beauty",
    }
    lines = [
        dict(base, price="$1,299.99"),
        dict(base, asin="B2", price="$5.00 - $9.00", imageURLHighRes=[]),
        dict(base, asin="B3", price=""),
        dict(base, asin="B4", price=".a-box-inner{background-color:#fff}"),
    ]
    report, frame, _ = _ingest(tmp_path, "meta_Cat.json.gz", lines, kind="meta")
    assert report.release == "2018"
    assert frame["price"].to_list() == [1299.99, None, None, None]
    assert frame["image_urls"].to_list() == [["hi"], ["lo"], ["hi"], ["hi"]]
    assert frame["features"][0].to_list() == ["f1"]


def test_2023_metadata_uses_parent_asin_and_large_images(tmp_path: Path) -> None:
    line = {
        "main_category": "All Beauty",
        "title": "Brush",
        "average_rating": 4.1,
        "rating_number": 10,
        "features": [],
        "description": ["soft"],
        "price": None,
        "images": [{"thumb": "t", "large": "L", "variant": "MAIN", "hi_res": None}],
        "videos": [],
        "store": "Acme",
        "categories": ["Beauty", "Tools"],
        "details": {"a": 1},
        "parent_asin": "P1",
        "bought_together": None,
    }
    report, frame, _ = _ingest(tmp_path, "meta_Cat.jsonl.gz", [line], kind="meta")
    assert report.release == "2023"
    row = frame.row(0, named=True)
    assert row["item_id"] == "P1" and row["brand"] == "Acme" and row["image_urls"] == ["L"]
    assert row["categories"] == ["All Beauty", "Beauty", "Tools"] and row["price"] is None


def test_wrong_type_in_an_optional_field_is_nulled_and_counted(tmp_path: Path) -> None:
    report, frame, rejected = _ingest(
        tmp_path, "Cat_5.json.gz", [R2018, dict(R2018, reviewerID="A9", verified={"odd": 1})]
    )
    assert frame.height == 2 and rejected.height == 0
    assert report.nulled_fields == {"verified": 1}


@pytest.mark.parametrize("name", ["All_Beauty_5.json.gz", "Appliances_5.json.gz"])
def test_real_2018_dumps_ingest_without_loss(real_data_dir: Path, tmp_path: Path, name: str) -> None:
    report = ingest_dump(real_data_dir / name, "reviews", tmp_path / "o.parquet", tmp_path / "r.parquet")
    frame = pl.read_parquet(tmp_path / "o.parquet")
    assert report.release == "2018" and report.complete
    assert report.rows_out + report.rejected_total + report.empty_lines == report.lines
    assert frame["rating"].is_between(1, 5).all()
    # FORMATS.md: these files repeat (user, item) pairs.
    assert frame.select("user_id", "item_id").unique().height < frame.height


def test_real_appliances_reviews_carry_review_images(real_data_dir: Path, tmp_path: Path) -> None:
    ingest_dump(real_data_dir / "Appliances_5.json.gz", "reviews", tmp_path / "o.parquet", tmp_path / "r.parquet")
    frame = pl.read_parquet(tmp_path / "o.parquet")
    assert (frame["image_urls"].list.len() > 0).sum() > 0
