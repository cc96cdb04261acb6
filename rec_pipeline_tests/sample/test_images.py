"""Product images: decodable PNG/JPEG in the mirror, one colour family per style, failures on purpose."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from rec_pipeline.sample.images import IMAGE_HOST, mirror_path, render_item_image
from rec_pipeline.sample.world import IMAGE_BROKEN, IMAGE_NONE, IMAGE_OK


def test_mirror_files_decode_with_pillow_in_both_formats(samples: dict) -> None:
    root, manifest = samples["2018"]
    assert manifest.images["written"] == len(manifest.image_paths) > 0
    formats = set()
    for path in manifest.image_paths:
        with Image.open(path) as image:
            image.load()
            formats.add(image.format)
            assert image.size == (24, 24)
        assert path.is_relative_to(root / "images" / "mirror" / IMAGE_HOST / "Sample_Toys")
    assert formats == {"PNG", "JPEG"}


def test_styles_differ_in_mean_colour() -> None:
    means = np.array(
        [
            [np.asarray(render_item_image(style, 32, seed)).reshape(-1, 3).mean(axis=0) for seed in range(5)]
            for style in range(6)
        ]
    )  # (style, sample, rgb)
    centre = means.mean(axis=1)
    spread_within = np.linalg.norm(means - centre[:, None, :], axis=2).max()
    gaps = [np.linalg.norm(centre[a] - centre[b]) for a in range(6) for b in range(a + 1, 6)]
    assert min(gaps) > 2 * spread_within


def test_meta_urls_map_to_mirror_files_except_broken_ones(samples: dict) -> None:
    root, manifest = samples["2018"]
    truth = pl.read_parquet(manifest.truth_items_path)
    state = dict(zip(truth["item_id"], truth["image_state"], strict=True))
    with gzip.open(manifest.meta_path, "rt") as handle:
        records = {r["asin"]: r for r in map(json.loads, handle)}
    seen = set()
    for asin, record in records.items():
        urls = record["imageURL"]
        seen.add(state[asin])
        if state[asin] == IMAGE_NONE:
            assert urls == []
            continue
        (url,) = urls
        assert url.startswith(f"https://{IMAGE_HOST}/Sample_Toys/{asin}.")
        ext = url.rsplit(".", 1)[1]
        assert mirror_path(root, "Sample_Toys", asin, ext).is_file() == (state[asin] == IMAGE_OK)
    assert manifest.images["broken"] == sum(1 for s in state.values() if s == IMAGE_BROKEN)
    assert IMAGE_OK in seen


def test_rendering_is_deterministic_per_seed() -> None:
    a, b = render_item_image(2, 16, seed=3), render_item_image(2, 16, seed=3)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(render_item_image(2, 16, seed=4)))


def test_mirror_path_follows_the_url(tmp_path: Path) -> None:
    assert (
        mirror_path(tmp_path, "Cat", "B0ABC", "png")
        == tmp_path / "images/mirror/images.rec-pipeline.invalid/Cat/B0ABC.png"
    )
