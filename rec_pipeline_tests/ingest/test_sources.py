from pathlib import Path

import pytest

from rec_pipeline.ingest.sources import CATEGORY_KEY, categories_with_reviews, classify, discover, ignored_files
from rec_pipeline_tests.conftest import write_lines


@pytest.mark.parametrize(
    ("name", "category", "kind", "release"),
    [
        ("AMAZON_FASHION_5.json.gz", "AMAZON_FASHION", "reviews", "2018"),
        ("AMAZON_FASHION.json.gz", "AMAZON_FASHION", "reviews", "2018"),
        ("reviews_Musical_Instruments_5.json.gz", "Musical_Instruments", "reviews", "2014"),
        ("meta_Musical_Instruments.json.gz", "Musical_Instruments", "meta", "2014/2018"),
        ("All_Beauty.jsonl.gz", "All_Beauty", "reviews", "2023"),
        ("All_Beauty.jsonl", "All_Beauty", "reviews", "2023"),
        ("meta_All_Beauty.jsonl.gz", "All_Beauty", "meta", "2023"),
    ],
)
def test_partition_key_is_the_category_the_file_names_give(name: str, category: str, kind: str, release: str) -> None:
    dump = classify(Path(name))
    assert dump is not None
    assert (dump.category, dump.kind, dump.release_hint) == (category, kind, release)


@pytest.mark.parametrize("name", ["README.md", "Cat_5.json.gz.part", ".hidden.json.gz", "notes.txt"])
def test_non_dump_files_are_ignored(name: str) -> None:
    assert classify(Path(name)) is None


def test_discover_pairs_reviews_with_metadata_and_prefers_the_full_dump(tmp_path: Path) -> None:
    for name in ["Toys_5.json.gz", "Toys.json.gz", "meta_Toys.json.gz", "meta_Lonely.json.gz", "README.md"]:
        (tmp_path / name).write_bytes(b"")
    found = discover(tmp_path)
    assert found["Toys"].reviews is not None and found["Toys"].reviews.path.name == "Toys.json.gz"
    assert found["Toys"].meta is not None and [p.name for p in found["Toys"].ignored] == ["Toys_5.json.gz"]
    assert categories_with_reviews(tmp_path) == ["Toys"]


@pytest.mark.parametrize(
    "name",
    [
        "reviews_...json.gz",
        "reviews_..json.gz",
        "reviews_.json.gz",
        "meta_.json.gz",
        "Toys and Games_5.json.gz",
        "Jeux_vidéo.json.gz",
        "a.b.json.gz",
        "-rf.json.gz",
        "Cat;rm.json.gz",
        "x" * 101 + ".json.gz",
    ],
)
def test_unsafe_category_names_are_never_classified(name: str) -> None:
    assert classify(Path(name)) is None


@pytest.mark.parametrize(
    "name", ["Toys&Games_5.json.gz", "Home-Kitchen.jsonl.gz", "meta_CDs_and_Vinyl.jsonl.gz", "reviews_Books_5.json.gz"]
)
def test_safe_category_names_with_dashes_and_ampersands_are_kept(name: str) -> None:
    dump = classify(Path(name))
    assert dump is not None and CATEGORY_KEY.fullmatch(dump.category)


def test_dotted_names_never_become_categories_or_paths_outside_the_warehouse(tmp_path: Path) -> None:
    for name in ["reviews_..json.gz", "reviews_...json.gz", "reviews_._5.json.gz", "Toys_5.json.gz"]:
        write_lines(tmp_path / name, [{"reviewerID": "A", "asin": "B", "overall": 5.0}])
    assert list(discover(tmp_path)) == ["Toys"]
    assert categories_with_reviews(tmp_path) == ["Toys"]


def test_every_unused_entry_of_raw_is_listed_with_its_reason(tmp_path: Path) -> None:
    for name in [
        "Toys_5.json.gz",
        "Toys.json.gz",
        "meta_Lonely.json.gz",
        "README.md",
        "Cat_5.json.gz.part",
        ".DS_Store",
        "reviews_..json.gz",
        "Toys and Games.json.gz",
        "Jeux_vidéo_5.json.gz",
        "weird.json.gz.bak",
        "ratings_only.csv",
    ]:
        write_lines(tmp_path / name, [{"a": 1}])
    (tmp_path / "Dir_5.json.gz").mkdir()
    reasons = {path.name: reason for path, reason in ignored_files(tmp_path)}
    assert set(reasons) == {
        "Toys_5.json.gz",
        "meta_Lonely.json.gz",
        "README.md",
        "Cat_5.json.gz.part",
        ".DS_Store",
        "reviews_..json.gz",
        "Toys and Games.json.gz",
        "Jeux_vidéo_5.json.gz",
        "weird.json.gz.bak",
        "ratings_only.csv",
        "Dir_5.json.gz",
    }
    assert "Toys.json.gz" in reasons["Toys_5.json.gz"]  # the chosen dump of the category is named
    assert reasons["meta_Lonely.json.gz"].startswith("metadata without a reviews dump")
    assert reasons["Dir_5.json.gz"] == "a directory, not a dump file"
    assert reasons["Cat_5.json.gz.part"].startswith("partial download")
    assert reasons[".DS_Store"] == "hidden file"
    for bad in ("reviews_..json.gz", "Toys and Games.json.gz", "Jeux_vidéo_5.json.gz"):
        assert reasons[bad].startswith("category name") and "not usable as a partition key" in reasons[bad]
    assert reasons["README.md"].startswith("not a dump") and reasons["weird.json.gz.bak"].startswith("not a dump")
    assert all(isinstance(entry, tuple) and len(entry) == 2 for entry in ignored_files(tmp_path))


def test_ignored_files_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert ignored_files(tmp_path / "absent") == []
