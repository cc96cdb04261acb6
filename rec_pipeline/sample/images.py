"""Product images for the sample items, written into the local image mirror.

Each image style has its own hue and pattern, with per-item jitter in shade, layout and noise, so a CNN (or even
colour statistics) separates styles while no two items look identical. URLs use the ``.invalid`` TLD, which
never resolves, so a missing mirror file fails fast instead of reaching the network.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from rec_pipeline.atomic import write_bytes

IMAGE_HOST = "images.rec-pipeline.invalid"
STYLE_NAMES = ("Red", "Amber", "Green", "Teal", "Blue", "Violet")
STYLE_HUES = (0.0, 0.11, 0.33, 0.5, 0.62, 0.8)  # HSV hue in [0, 1), well apart so mean colours differ
STYLE_PATTERNS = ("stripes", "dots", "checks", "rings", "diagonal", "gradient")


def image_ext(item_index: int) -> str:
    """PNG and JPEG alternate, so decoding both formats is exercised."""
    return "png" if item_index % 2 == 0 else "jpg"


def image_url(category: str, item_id: str, ext: str) -> str:
    return f"https://{IMAGE_HOST}/{category}/{item_id}.{ext}"


def mirror_path(data_root: Path, category: str, item_id: str, ext: str) -> Path:
    """Where the mirror keeps the file for :func:`image_url` (host and path under ``images/mirror``)."""
    return Path(data_root) / "images" / "mirror" / IMAGE_HOST / category / f"{item_id}.{ext}"


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV -> RGB in [0, 1]; arrays broadcast together."""
    h, s, v = np.broadcast_arrays(np.mod(h, 1.0), s, v)
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [np.stack(c, axis=-1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = np.zeros((*h.shape, 3))
    for k, rgb in enumerate(choices):
        out[i == k] = rgb[i == k]
    return out


def _pattern(kind: str, yy: np.ndarray, xx: np.ndarray, period: float, phase: float) -> np.ndarray:
    """A [0, 1] intensity field for a style's pattern."""
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * yy / period + phase)
    if kind == "dots":
        return (
            (np.mod(yy + phase, period) - period / 2) ** 2 + (np.mod(xx + phase, period) - period / 2) ** 2
            < (period / 3.5) ** 2
        ).astype(np.float64)
    if kind == "checks":
        return ((np.floor((yy + phase) / period) + np.floor((xx + phase) / period)) % 2).astype(np.float64)
    if kind == "rings":
        r = np.hypot(yy - yy.mean(), xx - xx.mean())
        return 0.5 + 0.5 * np.sin(2 * np.pi * r / period + phase)
    if kind == "diagonal":
        return 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * (yy + xx) / period + phase))
    return np.clip((yy + xx) / (yy.max() + xx.max() + 1e-9), 0, 1)  # gradient


def render_item_image(style: int, size: int, seed: int) -> Image.Image:
    """Draw one product image: a patterned background in the style's hue and a darker "product" blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    hue = STYLE_HUES[style] + rng.normal(0, 0.015)
    pattern = _pattern(
        STYLE_PATTERNS[style], yy, xx, period=size / rng.uniform(3.0, 6.0), phase=rng.uniform(0, 2 * np.pi)
    )
    sat = 0.35 + 0.45 * pattern
    val = 0.95 - 0.25 * pattern
    # The product: an ellipse at a jittered position, same hue family, saturated and darker.
    cy, cx = size * rng.uniform(0.35, 0.65, size=2)
    ry, rx = size * rng.uniform(0.15, 0.3, size=2)
    blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0
    sat = np.where(blob, 0.85, sat)
    val = np.where(blob, rng.uniform(0.45, 0.7), val)
    rgb = _hsv_to_rgb(np.full_like(yy, hue), sat, val)
    rgb += rng.normal(0, 0.03, size=rgb.shape)  # sensor-like noise so images are not trivially compressible
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), mode="RGB")


def encode_image(image: Image.Image, ext: str) -> bytes:
    buffer = io.BytesIO()
    if ext == "png":
        image.save(buffer, format="PNG", optimize=False)
    else:
        image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_item_images(
    data_root: Path,
    category: str,
    item_ids: list[str],
    styles: np.ndarray,
    write: np.ndarray,
    size: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write the mirror files for items where ``write`` is True; return the paths written."""
    written = []
    for index, item_id in enumerate(item_ids):
        if not write[index]:
            continue
        ext = image_ext(index)
        image = render_item_image(int(styles[index]), size, seed=seed * 1_000_003 + index)
        written.append(write_bytes(encode_image(image, ext), mirror_path(data_root, category, item_id, ext)))
        if progress is not None and len(written) % 1000 == 0:
            progress(len(written), int(write.sum()))
    return written
