"""Small charts and thumbnail grids as markdown with base64-embedded PNGs, for Dagster ``MetadataValue.md``.

Dagster has no image metadata type, but its markdown renderer shows ``![alt](data:image/png;base64,...)``.
Metadata is stored in the event log (a database row per materialization), so every PNG is kept small: 4x3 inch
figures at 80 dpi, and a size guard that re-renders smaller (lower dpi; fewer colours and smaller thumbnails
for photo grids) until the PNG fits ``MAX_PNG_BYTES``.

Matplotlib is used through ``Figure`` + ``FigureCanvasAgg`` directly, never ``pyplot``: pyplot keeps global
figure state and picks a GUI backend, neither of which belongs in a worker process that may render from
several threads. Empty inputs give a short italic note instead of an exception, because a metadata helper must
never fail the asset it decorates.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageOps

MAX_PNG_BYTES = 60_000
FIGURE_SIZE_IN = (4.0, 3.0)
DPI = 80
# Each step down is tried only when the previous PNG was too large.
FALLBACK_DPIS = (DPI, 64, 48, 36)
# Thumbnails are decoded only when the header promises a sane size; the cache holds small images, but this
# helper may be pointed at anything.
MAX_THUMBNAIL_SOURCE_PIXELS = 50_000_000
GRID_GAP_PX = 2
GRID_BACKGROUND = (255, 255, 255)


def png_md(png_bytes: bytes, alt: str) -> str:
    """Markdown image with the PNG inlined as a data URI (the one place the format is spelled out)."""
    encoded = base64.b64encode(png_bytes).decode("ascii")
    return f"![{_clean_alt(alt)}](data:image/png;base64,{encoded})"


def _clean_alt(alt: str) -> str:
    # Brackets and newlines would end the alt text early and break the image syntax.
    return " ".join(alt.replace("[", "(").replace("]", ")").split()) or "plot"


def _no_data(title: str, what: str = "no data") -> str:
    return f"_{_clean_alt(title)}: {what}_"


def _render(draw: Callable[[Figure], None]) -> bytes:
    """Draw into a fresh figure and return PNG bytes, lowering the dpi until the PNG fits ``MAX_PNG_BYTES``."""
    png = b""
    for dpi in FALLBACK_DPIS:
        figure = Figure(figsize=FIGURE_SIZE_IN, dpi=dpi, layout="constrained")
        FigureCanvasAgg(figure)
        draw(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi)
        png = buffer.getvalue()
        if len(png) <= MAX_PNG_BYTES:
            break
    return png


def line_plot_md(series: Mapping[str, Sequence[float]], title: str, xlabel: str, ylabel: str) -> str:
    """One line per named series (e.g. train and validation loss per epoch); x counts from 1.

    Non-finite values (a diverged epoch) become gaps rather than wrecking the axis range.
    """
    curves = {name: np.asarray(values, dtype=np.float64) for name, values in series.items() if len(values)}
    curves = {name: np.where(np.isfinite(v), v, np.nan) for name, v in curves.items() if np.isfinite(v).any()}
    if not curves:
        return _no_data(title)

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        for name, values in curves.items():
            x = np.arange(1, len(values) + 1)
            axes.plot(x, values, marker="o" if len(values) <= 30 else None, markersize=3, linewidth=1.2, label=name)
        axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")

    return png_md(_render(draw), title)


def scatter_md(
    x: Sequence[float],
    y: Sequence[float],
    title: str,
    xlabel: str,
    ylabel: str,
    max_points: int = 2000,
    seed: int = 0,
    diagonal: bool = False,
) -> str:
    """Scatter of paired values (e.g. actual vs predicted rating), seeded-subsampled to ``max_points``.

    Subsampling keeps the PNG small and the rendering fast for millions of predictions; the title says how many
    points are shown. ``diagonal`` draws ``y = x`` so over- and under-prediction are visible at a glance.
    """
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    finite = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[finite], ys[finite]
    if xs.size == 0:
        return _no_data(title)
    total = xs.size
    if total > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(total, size=max_points, replace=False))
        xs, ys = xs[keep], ys[keep]
    shown_title = title if total <= max_points else f"{title} ({xs.size:,} of {total:,} points)"

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        axes.scatter(xs, ys, s=6, alpha=0.35, linewidths=0)
        if diagonal:
            low, high = float(min(xs.min(), ys.min())), float(max(xs.max(), ys.max()))
            axes.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
        axes.set(title=shown_title, xlabel=xlabel, ylabel=ylabel)
        axes.grid(alpha=0.3)

    return png_md(_render(draw), shown_title)


def bar_md(labels: Sequence[object], values: Sequence[float], title: str) -> str:
    """Bars with their values printed on top (e.g. a rating histogram: labels 1..5, counts)."""
    if len(labels) != len(values):
        raise ValueError(f"labels and values must have the same length, got {len(labels)} and {len(values)}")
    if not len(labels):
        return _no_data(title)
    names = [str(label) for label in labels]
    heights = np.asarray(values, dtype=np.float64)

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        bars = axes.bar(range(len(names)), np.nan_to_num(heights), color="#4C72B0")
        axes.set_xticks(range(len(names)), names, rotation=0 if len(names) <= 8 else 60, fontsize="small")
        if len(names) <= 20:
            axes.bar_label(bars, labels=[_compact_number(v) for v in heights], fontsize="x-small")
        axes.set_title(title)
        axes.margins(y=0.12)  # room for the value labels above the tallest bar

    return png_md(_render(draw), title)


def _compact_number(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if value == int(value):
        number = int(value)
        return (
            f"{number / 1e6:.1f}M"
            if abs(number) >= 1e6
            else f"{number / 1e3:.1f}k"
            if abs(number) >= 1e4
            else str(number)
        )
    return f"{value:.3g}"


def image_grid_md(
    paths: Sequence[Path | str | None],
    columns: int = 8,
    thumb: int = 48,
    title: str = "",
    max_images: int = 64,
) -> str:
    """A grid of thumbnails (aspect kept, centred on white), skipping files that are missing or do not decode.

    At most ``max_images`` readable images are shown. If the PNG is too large (photos compress poorly), the
    grid is reduced to a 256-colour palette, then to smaller thumbnails, until it fits ``MAX_PNG_BYTES``.
    """
    label = title or "images"
    if columns < 1 or thumb < 1:
        raise ValueError(f"columns and thumb must be positive, got {columns} and {thumb}")
    thumbnails: list[Image.Image] = []
    skipped = 0
    for path in paths:
        if len(thumbnails) >= max_images:
            break
        image = _thumbnail(path, thumb)
        if image is None:
            skipped += 1
        else:
            thumbnails.append(image)
    if not thumbnails:
        return _no_data(label, "no readable images")

    size = thumb
    png = _grid_png(thumbnails, columns, size)
    while len(png) > MAX_PNG_BYTES and size > 8:
        size = max(8, int(size * 0.75))
        png = _grid_png([t.resize(_fit(t.size, size), Image.Resampling.LANCZOS) for t in thumbnails], columns, size)
    caption = f"**{_clean_alt(title)}** " if title else ""
    caption += f"({len(thumbnails)} images" + (f", {skipped} unreadable skipped)" if skipped else ")")
    return f"{caption}\n\n{png_md(png, label)}"


def _thumbnail(path: Path | str | None, thumb: int) -> Image.Image | None:
    """An RGB thumbnail no larger than ``thumb`` x ``thumb``, or ``None`` for anything unreadable."""
    if path is None or not Path(path).is_file():
        return None
    try:
        with Image.open(path) as source:
            image: Image.Image = source
            if image.width * image.height > MAX_THUMBNAIL_SOURCE_PIXELS:
                return None
            image.draft("RGB", (thumb, thumb))  # JPEG: decode at reduced scale, far cheaper for big photos
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "P"):
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size, GRID_BACKGROUND)
                flat.paste(rgba, mask=rgba.getchannel("A"))
                image = flat
            else:
                image = image.convert("RGB")
            image.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
            return image
    except Exception:  # noqa: BLE001 - untrusted files: any decoder error (truncated, bomb, unknown format) just means "skip"
        return None


def _fit(size: tuple[int, int], box: int) -> tuple[int, int]:
    scale = min(1.0, box / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _grid_png(thumbnails: Sequence[Image.Image], columns: int, cell: int) -> bytes:
    columns = min(columns, len(thumbnails))
    rows = math.ceil(len(thumbnails) / columns)
    step = cell + GRID_GAP_PX
    grid = Image.new("RGB", (columns * step - GRID_GAP_PX, rows * step - GRID_GAP_PX), GRID_BACKGROUND)
    for index, image in enumerate(thumbnails):
        row, column = divmod(index, columns)
        # Centre each thumbnail in its cell so tall and wide products line up.
        grid.paste(image, (column * step + (cell - image.width) // 2, row * step + (cell - image.height) // 2))
    png = _encode_png(grid)
    if len(png) > MAX_PNG_BYTES:
        png = _encode_png(grid.quantize(colors=256, method=Image.Quantize.MEDIANCUT))
    return png


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
