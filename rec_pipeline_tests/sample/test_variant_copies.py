"""Variant copies in 2014/2018 samples: each review repeated on its item's variant asins, listings for them,
a few coincidental copies, and everything recorded in the manifest and the truth JSON."""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from pathlib import Path

import pytest

from rec_pipeline.sample import SampleManifest, SampleSpec, write_sample
from rec_pipeline_tests.sample.conftest import small_spec
from rec_pipeline_tests.sample.test_dumps import classify, read_lines, valid_records

VARIANTS = {"variant_families": 0.15, "coincidental_copies": 4}


@pytest.fixture(scope="module", params=["2014", "2018"])
def planted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SampleManifest]:
    root = tmp_path_factory.mktemp(f"variant_copies_{request.param}")
    return request.param, write_sample(root, small_spec(request.param, image_size=8, **VARIANTS))


def _copy_groups(records: list[dict]) -> dict[str, list[str]]:
    """Every valid line keyed by all its fields but the asin -> the asins it appears on."""
    groups: dict[str, list[str]] = defaultdict(list)
    for record in records:
        groups[json.dumps({k: v for k, v in record.items() if k != "asin"}, sort_keys=True)].append(record["asin"])
    return groups


def test_each_copy_line_repeats_a_review_on_another_asin_and_the_counts_add_up(
    planted: tuple[str, SampleManifest],
) -> None:
    release, manifest = planted
    lines = read_lines(manifest.reviews_path)
    records = valid_records(manifest.reviews_path, release)
    assert len(lines) == manifest.review_lines == manifest.review_records + manifest.copy_lines + manifest.dirt_lines
    assert len(records) == manifest.review_records + manifest.copy_lines and manifest.copy_lines > 0
    groups = _copy_groups(records)
    assert len(groups) == manifest.review_records  # a copy differs from its review in the asin only
    assert all(len(set(asins)) == len(asins) for asins in groups.values())


def test_reviews_of_a_family_item_appear_on_its_variant_asins_only(planted: tuple[str, SampleManifest]) -> None:
    release, manifest = planted
    family_of = {asin: item for item, asins in manifest.variant_families.items() for asin in asins}
    coincidental = {frozenset(pair) for pair in manifest.coincidences}
    for asins in _copy_groups(valid_records(manifest.reviews_path, release)).values():
        if len(asins) < 2 or frozenset(asins) in coincidental:
            continue
        assert {family_of[a] for a in asins} == {family_of[asins[0]]}  # every copy within one planted family
    variant_asins = {a for item, asins in manifest.variant_families.items() for a in asins if a != item}
    on_file = {r["asin"] for r in valid_records(manifest.reviews_path, release)}
    assert variant_asins <= on_file and all(1 <= len(asins) - 1 <= 3 for asins in manifest.variant_families.values())


def test_coincidences_join_items_outside_any_family_and_share_one_review(planted: tuple[str, SampleManifest]) -> None:
    release, manifest = planted
    in_family = {a for asins in manifest.variant_families.values() for a in asins}
    shared: defaultdict[frozenset[str], int] = defaultdict(int)
    for asins in _copy_groups(valid_records(manifest.reviews_path, release)).values():
        if len(asins) == 2:
            shared[frozenset(asins)] += 1
    assert len(set(manifest.coincidences)) == len(manifest.coincidences) == 4
    for a, b in manifest.coincidences:
        assert a < b and a not in in_family and b not in in_family
        assert shared[frozenset((a, b))] == 1


def test_variant_asins_get_metadata_listings_like_their_item(planted: tuple[str, SampleManifest]) -> None:
    release, manifest = planted
    parse = ast.literal_eval if release == "2014" else json.loads
    records = [parse(line) for line in read_lines(manifest.meta_path)]
    by_asin = {r["asin"]: r for r in records}
    n_variant_asins = sum(len(asins) - 1 for asins in manifest.variant_families.values())
    assert len(by_asin) == manifest.items == 60 + n_variant_asins
    image_key = "imUrl" if release == "2014" else "imageURL"
    for item, asins in manifest.variant_families.items():
        for asin in asins:
            if asin == item:
                continue
            original, listing = by_asin[item], by_asin[asin]
            assert listing.get(image_key) == original.get(image_key) and listing["brand"] == original["brand"]
            if original.get("title") and not original["title"].startswith("<"):
                assert listing["title"].startswith(original["title"] + ", ")


def test_the_truth_json_records_the_planted_families_and_coincidences(planted: tuple[str, SampleManifest]) -> None:
    _, manifest = planted
    truth = json.loads(manifest.truth_path.read_text())
    assert {k: tuple(v) for k, v in truth["variants"]["families"].items()} == manifest.variant_families
    assert [tuple(p) for p in truth["variants"]["coincidences"]] == list(manifest.coincidences)
    assert truth["counts"]["copy_lines"] == manifest.copy_lines and truth["counts"]["items"] == manifest.items
    assert all(item in asins for item, asins in manifest.variant_families.items())


def test_dirt_lines_are_still_counted_exactly_with_copies(planted: tuple[str, SampleManifest]) -> None:
    release, manifest = planted
    kinds = [kind for line in read_lines(manifest.reviews_path) if (kind := classify(line, release)) is not None]
    assert len(kinds) == manifest.dirt_lines


def test_2023_samples_have_no_variant_copies(tmp_path: Path) -> None:
    """The 2023 release keys items by parent_asin, so its dumps never repeat a review per variant."""
    manifest = write_sample(tmp_path, small_spec("2023", image_size=8, **VARIANTS))
    assert (manifest.copy_lines, manifest.variant_families, manifest.coincidences) == (0, {}, ())
    assert len(valid_records(manifest.reviews_path, "2023")) == manifest.review_records


@pytest.mark.parametrize("bad", [{"variant_families": -0.1}, {"variant_families": 1.5}, {"coincidental_copies": -1}])
def test_invalid_variant_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        SampleSpec(**bad)
