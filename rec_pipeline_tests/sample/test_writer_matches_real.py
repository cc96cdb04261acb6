"""The sample writer writes each release as the real dumps do: same release when sniffed, same keys.

Writer and reader take their field names from one place (``rec_pipeline.ingest.release_*``), so a shared
misreading would pass every round trip; here the writer's lines are compared with the real files in ../shared
(2018 reviews and small-category metadata, 2023 metadata), and, where no real file is at hand (2014, 2023
reviews, 2018 large-category metadata), with the release's documented fields.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from rec_pipeline.ingest import release_2018
from rec_pipeline.ingest.formats import format_for, sniff_format
from rec_pipeline.ingest.normalize import ingest_dump
from rec_pipeline.ingest.release import Kind, MetaFields, ReviewFields, SourceFormat
from rec_pipeline.sample import SampleManifest, write_sample
from rec_pipeline_tests.sample.conftest import small_spec


def _lines(path: Path) -> list[bytes]:
    with gzip.open(path, "rb") as handle:
        return [line.rstrip(b"\n") for line in handle]


def _record_keys(fmt: SourceFormat, lines: list[bytes]) -> tuple[set[str], set[str]]:
    """(keys on any decodable record line, keys on every one); dirt lines are skipped."""
    union: set[str] = set()
    every: set[str] | None = None
    for line in lines:
        try:
            record = fmt.decode_line(line)
        except (ValueError, SyntaxError):
            continue
        if not isinstance(record, dict):
            continue
        keys = set(record)
        union |= keys
        every = keys if every is None else every & keys
    return union, every or set()


def _path(manifest: SampleManifest, kind: Kind) -> Path:
    return manifest.reviews_path if kind == "reviews" else manifest.meta_path


@pytest.mark.parametrize("release", ["2014", "2018", "2023"])
@pytest.mark.parametrize("kind", ["reviews", "meta"])
def test_sample_lines_are_sniffed_as_their_release_and_carry_its_fields(
    samples: dict, release: str, kind: Kind
) -> None:
    _, manifest = samples[release]
    fmt = format_for(release, kind)
    lines = _lines(_path(manifest, kind))
    assert sniff_format(kind, lines) is fmt
    union, every = _record_keys(fmt, lines)
    fields = fmt.fields
    documented = (
        fields.keys(release_2018.LARGE_CATEGORY_IMAGES)
        if isinstance(fields, MetaFields) and release == "2018"
        else fields.keys()
    )
    assert union == documented
    # Dirt lines drop an id or carry a bad rating; the other lines carry every field the reader requires.
    if kind == "meta":
        assert set(fmt.required) <= every


@pytest.fixture(scope="module")
def appliances(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleManifest]:
    """A 2018 sample of a small category, which keeps its product images under ``image``, as the real one does."""
    root = tmp_path_factory.mktemp("sample_appliances")
    return root, write_sample(root, small_spec("2018", category="Appliances"))


@pytest.mark.parametrize(
    ("kind", "real_name"),
    [("reviews", "Appliances_5.json.gz"), ("meta", "meta_Appliances.json.gz")],
)
def test_sample_2018_lines_carry_the_real_files_keys(
    appliances: tuple[Path, SampleManifest], real_data_dir: Path, kind: Kind, real_name: str
) -> None:
    _, manifest = appliances
    fmt = format_for("2018", kind)
    sample, real = _lines(_path(manifest, kind)), _lines(real_data_dir / real_name)
    assert sniff_format(kind, sample) is sniff_format(kind, real) is fmt
    sample_union, sample_every = _record_keys(fmt, sample)
    real_union, real_every = _record_keys(fmt, real)
    assert sample_union == real_union
    if kind == "meta":
        assert sample_every == real_every == real_union  # every metadata line carries every key
    else:
        assert isinstance(fmt.fields, ReviewFields)
        assert set(fmt.required) <= real_every


def test_sample_2023_metadata_carries_the_real_files_keys(samples: dict, real_data_dir: Path) -> None:
    _, manifest = samples["2023"]
    fmt = format_for("2023", "meta")
    sample = _lines(manifest.meta_path)
    real = _lines(real_data_dir / "meta_Health_and_Personal_Care.jsonl.gz")
    assert sniff_format("meta", sample) is sniff_format("meta", real) is fmt
    assert _record_keys(fmt, sample) == _record_keys(fmt, real)


def test_small_category_thumbnails_lead_back_to_the_mirrored_pictures(
    appliances: tuple[Path, SampleManifest], tmp_path: Path
) -> None:
    root, manifest = appliances
    records = [json.loads(line) for line in _lines(manifest.meta_path)]
    assert all("imageURL" not in r and "imageURLHighRes" not in r for r in records)
    thumbnails = [url for r in records for url in r["image"]]
    assert thumbnails and all("._SX38_SY50_CR,0,0,38,50_." in url for url in thumbnails)
    ingest_dump(manifest.meta_path, "meta", tmp_path / "items.parquet", tmp_path / "rejected.parquet")
    urls = pl.read_parquet(tmp_path / "items.parquet")["image_urls"].explode().drop_nulls().unique().to_list()
    mirror = root / "images" / "mirror"
    found = [url for url in urls if (mirror / url.removeprefix("https://")).is_file()]
    assert len(found) == manifest.images["written"] > 0
    assert len(urls) == manifest.images["written"] + manifest.images["broken"]
