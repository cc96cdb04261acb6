"""Markdown plots for Dagster metadata: every image must be a real, decodable, small PNG."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rec_pipeline.plots import MAX_PNG_BYTES, bar_md, image_grid_md, line_plot_md, png_md, scatter_md

DATA_URI = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def decode_pngs(markdown: str) -> list[tuple[str, bytes]]:
    return [(alt, base64.b64decode(payload, validate=True)) for alt, payload in DATA_URI.findall(markdown)]


def only_png(markdown: str) -> tuple[str, bytes, Image.Image]:
    found = decode_pngs(markdown)
    assert len(found) == 1, markdown[:200]
    alt, png = found[0]
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    assert len(png) <= MAX_PNG_BYTES
    return alt, png, image


def test_png_md_round_trips_the_bytes_and_sanitises_the_alt_text():
    png = io.BytesIO()
    Image.new("RGB", (3, 2), (1, 2, 3)).save(png, format="PNG")
    markdown = png_md(png.getvalue(), "loss [train]\nand more")
    alt, data = decode_pngs(markdown)[0]
    assert data == png.getvalue()
    assert alt == "loss (train) and more"


def test_line_plot_is_a_small_decodable_png():
    markdown = line_plot_md(
        {"train": [1.2, 0.9, 0.7, 0.65], "validation": [1.3, 1.0, 0.9, 0.88]}, "MF training", "epoch", "MSE"
    )
    alt, _, image = only_png(markdown)
    assert alt == "MF training"
    assert image.size == (320, 240)  # 4x3 in at 80 dpi


def test_line_plot_with_long_noisy_series_stays_under_the_size_limit():
    rng = np.random.default_rng(0)
    series = {f"run {i}": rng.normal(size=5000).cumsum().tolist() for i in range(5)}
    only_png(line_plot_md(series, "noisy", "step", "value"))


def test_line_plot_skips_empty_and_non_finite_series():
    only_png(line_plot_md({"train": [1.0, float("nan"), 0.5], "empty": [], "diverged": [float("inf")]}, "t", "x", "y"))


@pytest.mark.parametrize("series", [{}, {"train": []}, {"train": [float("nan")]}])
def test_line_plot_without_data_is_a_short_note(series):
    markdown = line_plot_md(series, "MF training", "epoch", "MSE")
    assert markdown == "_MF training: no data_"


def test_scatter_subsamples_to_max_points_and_says_so():
    rng = np.random.default_rng(1)
    actual = rng.integers(1, 6, size=50_000).astype(float)
    predicted = actual + rng.normal(scale=0.8, size=actual.size)
    alt, _, _ = only_png(
        scatter_md(actual, predicted, "predicted vs actual", "actual", "predicted", max_points=500, diagonal=True)
    )
    assert alt == "predicted vs actual (500 of 50,000 points)"


def test_scatter_is_deterministic_for_a_seed():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=3000), rng.normal(size=3000)
    assert scatter_md(x, y, "s", "x", "y", max_points=100, seed=5) == scatter_md(
        x, y, "s", "x", "y", max_points=100, seed=5
    )
    assert scatter_md(x, y, "s", "x", "y", max_points=100, seed=5) != scatter_md(
        x, y, "s", "x", "y", max_points=100, seed=6
    )


def test_scatter_of_few_points_keeps_the_plain_title():
    alt, _, _ = only_png(scatter_md([1, 2, 3], [1.1, 2.2, 2.9], "fit", "actual", "predicted"))
    assert alt == "fit"


def test_scatter_drops_non_finite_pairs_and_notes_when_nothing_is_left():
    assert scatter_md([float("nan")], [1.0], "fit", "x", "y") == "_fit: no data_"
    assert scatter_md([], [], "fit", "x", "y") == "_fit: no data_"


def test_scatter_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        scatter_md([1, 2], [1], "fit", "x", "y")


def test_bar_chart_of_a_rating_histogram_is_a_decodable_png():
    alt, _, image = only_png(bar_md([1, 2, 3, 4, 5], [120, 80, 300, 1_500, 42_000], "ratings"))
    assert alt == "ratings"
    assert image.size == (320, 240)


def test_bar_chart_with_many_labels_stays_under_the_size_limit():
    only_png(bar_md([f"category {i}" for i in range(60)], list(range(60)), "items per category"))


def test_bar_chart_without_bars_is_a_short_note():
    assert bar_md([], [], "ratings") == "_ratings: no data_"


def test_bar_chart_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        bar_md(["a", "b"], [1], "t")


def write_photo(path: Path, seed: int, size: tuple[int, int] = (120, 90)) -> Path:
    """Random noise: the worst case for PNG compression, standing in for real product photos."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_image_grid_lays_out_thumbnails_in_columns(tmp_path):
    paths = [write_photo(tmp_path / f"{i}.png", i, size=(48, 48)) for i in range(3)]
    paths.append(tmp_path / "wide.jpg")
    Image.new("RGB", (200, 50), (0, 128, 0)).save(paths[-1])
    markdown = image_grid_md(paths, columns=2, thumb=16, title="sample images")
    assert markdown.startswith("**sample images** (4 images)")
    _, _, image = only_png(markdown)
    assert image.size == (2 * 16 + 2, 2 * 16 + 2)  # two columns, two rows, 2 px gap


def test_image_grid_skips_unreadable_files(tmp_path):
    good = [write_photo(tmp_path / f"{i}.png", i, size=(30, 30)) for i in range(2)]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not a png at all")
    markdown = image_grid_md(
        [corrupt, good[0], tmp_path / "missing.jpg", None, good[1]], columns=8, thumb=20, title="t"
    )
    assert "(2 images, 3 unreadable skipped)" in markdown
    _, _, image = only_png(markdown)
    assert image.size == (2 * 20 + 2, 20)


def test_image_grid_flattens_transparency_onto_white(tmp_path):
    path = tmp_path / "transparent.png"
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(path)
    _, _, image = only_png(image_grid_md([path], thumb=10))
    assert image.convert("RGB").getpixel((5, 5)) == (255, 255, 255)


def test_image_grid_of_many_photos_shrinks_until_under_the_size_limit(tmp_path):
    paths = [write_photo(tmp_path / f"{i}.png", i) for i in range(32)]
    markdown = image_grid_md(paths, columns=8, thumb=48, title="photos")
    _, png, image = only_png(markdown)
    assert len(png) <= MAX_PNG_BYTES
    assert image.width <= 8 * 50


def test_image_grid_shows_at_most_max_images(tmp_path):
    paths = [write_photo(tmp_path / f"{i}.png", i, size=(8, 8)) for i in range(5)]
    assert "(3 images)" in image_grid_md(paths, max_images=3, thumb=8)


def test_image_grid_without_readable_images_is_a_short_note(tmp_path):
    assert image_grid_md([], title="sample images") == "_sample images: no readable images_"
    assert image_grid_md([tmp_path / "missing.png"]) == "_images: no readable images_"
