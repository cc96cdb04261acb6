"""Incremental re-runs: the feature assets redo work only for what a newer dump adds.

One small sample category is materialized three times on fresh ephemeral instances (the caches live in the lake
on disk): first, again unchanged, and after its dumps are replaced by a newer version with ~4% new items. The
dump rewriting and the materialization helper are the ones ``bench/incremental.py`` times at scale. The sample
gets one extra "variant" listing (a copy of another item's metadata under a new asin, as real dumps have), so
items sharing a text and an image are covered too.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pytest

from rec_pipeline.paths import DataLayout
from rec_pipeline.sample import SampleSpec, dump_file_names, write_sample

REPO_ROOT = Path(__file__).resolve().parents[2]
CATEGORY = "Incr_Toys"
SPEC = SampleSpec(category=CATEGORY, n_users=300, n_items=120, n_reviews=4000, image_size=32, seed=3)
NEW_ITEM_SHARE = 0.04
VARIANT_ID = "B0VARIANT1"
# Smaller images and vectors than the demo: the counts under test do not depend on sizes.
OPS = {
    "item_images": {"config": {"image_size": 32}},
    "image_embeddings": {"config": {"image_size": 32, "projection_dim": 16}},
}


def _load_bench() -> ModuleType:
    """bench/ is not a package; load the script as a module (registered first, as dataclasses require)."""
    name = "bench_incremental"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / "incremental.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _add_variant_listing(root: Path) -> str:
    """Append a copy of the first item with a mirrored image under ``VARIANT_ID``; return the copied item's id.

    The listing also gets reviews of its own (new texts by existing users, not copies of the original's
    reviews, so it stays an item of its own): only items in the k-core have their images fetched.
    """
    reviews_path, meta_path = (
        root / "raw" / name for name in dump_file_names(SPEC.category, SPEC.release, SPEC.five_core_name)
    )
    with gzip.open(reviews_path, "rt", encoding="utf-8") as handle:
        review_lines = handle.read().splitlines()
    reviews = [
        r for r in map(_json_or_none, review_lines) if isinstance(r, dict) and r.get("reviewerID") and r.get("asin")
    ]
    users = sorted({r["reviewerID"] for r in reviews})[:8]
    extra = [
        json.dumps(
            {
                **reviews[0],
                "reviewerID": user,
                "asin": VARIANT_ID,
                "reviewText": f"variant listing review {n}",
                "unixReviewTime": reviews[0]["unixReviewTime"] + n,
            }
        )
        for n, user in enumerate(users)
    ]
    with gzip.open(reviews_path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join([*review_lines, *extra]) + "\n")
    with gzip.open(meta_path, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    mirror = DataLayout(root).image_mirror_dir
    record = next(
        r
        for r in map(json.loads, lines)
        if r["imageURL"] and (mirror / r["imageURL"][0].removeprefix("https://")).is_file()
    )
    original, record["asin"] = record["asin"], VARIANT_ID
    with gzip.open(meta_path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join([*lines, json.dumps(record)]) + "\n")
    return original


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None  # the sample's deliberate dirt lines


@dataclass(frozen=True)
class Runs:
    root: Path
    first: dict[str, Any]
    unchanged: dict[str, Any]
    appended: dict[str, Any]
    added: Any  # bench_incremental.AppendReport
    variant_of: str  # the item VARIANT_ID copies
    text_before: pl.DataFrame  # item_text_vectors.parquet after the unchanged re-run
    embeddings_before: pl.DataFrame
    hashes_before: set[str]


def _meta(runs: dict[str, Any], asset: str) -> dict[str, Any]:
    return runs[asset].metadata


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    bench = _load_bench()
    root = tmp_path_factory.mktemp("incremental")
    write_sample(root, SPEC)
    variant_of = _add_variant_listing(root)
    layout = DataLayout(root)
    first = bench.materialize_features(root, CATEGORY, ops_config=OPS)
    unchanged = bench.materialize_features(root, CATEGORY, ops_config=OPS)
    text_before = pl.read_parquet(layout.artifact(CATEGORY, "item_text_vectors.parquet"))
    embeddings_before = pl.read_parquet(layout.artifact(CATEGORY, "image_embeddings.parquet"))
    hashes_before = set(pl.read_parquet(layout.artifact(CATEGORY, "item_text.parquet"))["content_hash"].to_list())
    added = bench.append_new_items(root, SPEC, item_share=NEW_ITEM_SHARE)
    appended = bench.materialize_features(root, CATEGORY, ops_config=OPS)
    return Runs(root, first, unchanged, appended, added, variant_of, text_before, embeddings_before, hashes_before)


@pytest.mark.slow
def test_first_run_computes_every_item(runs: Runs) -> None:
    assert _meta(runs.first, "word2vec_model")["retrained"] is True
    text = _meta(runs.first, "item_text_vectors")
    assert text["items"] == SPEC.n_items + 1
    assert (text["computed_now"], text["reused"]) == (len(runs.hashes_before), 0)
    images = _meta(runs.first, "item_images")
    assert images["from_cache"] == 0 and images["from_mirror"] == images["ok"] > 0
    embeddings = _meta(runs.first, "image_embeddings")
    # The variant shares its original's image: one embedding computed for the two of them.
    assert (embeddings["embedded_now"], embeddings["reused"], embeddings["items_with_embedding"]) == (
        images["ok"] - 1,
        0,
        images["ok"],
    )


@pytest.mark.slow
def test_items_sharing_a_text_and_an_image_get_one_row_each_with_the_same_vectors(runs: Runs) -> None:
    layout = DataLayout(runs.root)
    pair = [runs.variant_of, VARIANT_ID]
    for name in ("item_text_vectors.parquet", "image_embeddings.parquet"):
        table = pl.read_parquet(layout.artifact(CATEGORY, name))
        assert table["item_id"].n_unique() == table.height, name
        rows = table.filter(pl.col("item_id").is_in(pair))
        assert rows.height == 2 and rows["vector"][0].to_list() == rows["vector"][1].to_list(), name


@pytest.mark.slow
def test_unchanged_rerun_skips_ingestion_and_computes_no_feature(runs: Runs) -> None:
    first_images = _meta(runs.first, "item_images")
    assert _meta(runs.unchanged, "raw_items")["skipped_unchanged"] is True
    assert _meta(runs.unchanged, "word2vec_model")["retrained"] is False
    assert _meta(runs.unchanged, "item_text")["cleaned_now"] == 0
    assert _meta(runs.unchanged, "word2vec_model")["new_text_share"] == 0.0
    text = _meta(runs.unchanged, "item_text_vectors")
    assert (text["computed_now"], text["reused"]) == (0, text["items"])
    images = _meta(runs.unchanged, "item_images")
    assert images["network_requests"] == 0 and images["from_mirror"] == 0
    # Every first-run outcome is final (images, and broken `.invalid` links recorded as permanent failures),
    # so the whole re-run is served by the cache.
    assert images["from_cache"] == first_images["with_url"] and first_images["ok"] == images["ok"]
    embeddings = _meta(runs.unchanged, "image_embeddings")
    assert (embeddings["embedded_now"], embeddings["reused"]) == (0, first_images["ok"])


@pytest.mark.slow
def test_rerun_after_append_vectorizes_only_the_new_items_and_keeps_word2vec(runs: Runs) -> None:
    layout = DataLayout(runs.root)
    new_ids = set(runs.added.new_item_ids)
    assert len(new_ids) == round(NEW_ITEM_SHARE * (SPEC.n_items + 1))
    texts = pl.read_parquet(layout.artifact(CATEGORY, "item_text.parquet"))
    new_hashes = set(texts["content_hash"].to_list()) - runs.hashes_before
    # Every unseen text belongs to a new item; a new item may repeat an old text (then its vector is reused).
    assert (
        new_hashes and set(texts.filter(pl.col("content_hash").is_in(list(new_hashes)))["item_id"].to_list()) <= new_ids
    )
    items_with_new_text = texts.filter(pl.col("content_hash").is_in(list(new_hashes))).height
    text = _meta(runs.appended, "item_text_vectors")
    assert text["items"] == SPEC.n_items + 1 + len(new_ids)
    assert (text["computed_now"], text["reused"]) == (len(new_hashes), text["items"] - items_with_new_text)
    assert _meta(runs.appended, "item_text")["cleaned_now"] == len(runs.added.new_item_ids)
    word2vec = _meta(runs.appended, "word2vec_model")
    assert word2vec["retrained"] is False and 0 < word2vec["new_text_share"] <= NEW_ITEM_SHARE + 0.01


@pytest.mark.slow
def test_rerun_after_append_fetches_and_embeds_only_the_new_images(runs: Runs) -> None:
    first_ok = _meta(runs.first, "item_images")["ok"]
    first_with_url = _meta(runs.first, "item_images")["with_url"]
    images = _meta(runs.appended, "item_images")
    assert images["network_requests"] == 0
    assert (images["from_mirror"], images["from_cache"]) == (runs.added.new_image_files, first_with_url)
    assert images["ok"] == first_ok + runs.added.new_image_files
    embeddings = _meta(runs.appended, "image_embeddings")
    assert (embeddings["embedded_now"], embeddings["reused"]) == (runs.added.new_image_files, first_ok)
    fetched = pl.read_parquet(DataLayout(runs.root).artifact(CATEGORY, "item_images.parquet"))
    assert set(fetched.filter(pl.col("source") == "mirror")["item_id"].to_list()) <= set(runs.added.new_item_ids)


@pytest.mark.slow
def test_reused_vectors_are_the_ones_computed_before(runs: Runs) -> None:
    layout = DataLayout(runs.root)
    for name, before in (
        ("item_text_vectors.parquet", runs.text_before),
        ("image_embeddings.parquet", runs.embeddings_before),
    ):
        after = pl.read_parquet(layout.artifact(CATEGORY, name))
        joined = before.select("item_id", "vector").join(
            after.select("item_id", "vector"), on="item_id", suffix="_after"
        )
        assert joined.height == before.height, name
        assert joined.filter(pl.col("vector") != pl.col("vector_after")).height == 0, name
        assert set(runs.added.new_item_ids) & set(after["item_id"].to_list()), name
