from pathlib import Path

import pytest

from rec_pipeline.ingest.sources import categories_with_reviews, classify, discover


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
