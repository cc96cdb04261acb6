"""Turn untrusted image bytes into one fixed-size RGB image, or say precisely why not.

Order of checks, each cheaper than the next, so hostile input is rejected before it costs memory:

1. ``Image.open`` parses only the header; the declared ``width * height`` is compared with ``max_pixels``
   *before* any pixel is decoded (a 100,000 x 100,000 PNG is a few hundred bytes on the wire but 30 GB
   decoded). Pillow's own guard (``Image.MAX_IMAGE_PIXELS``) raises ``DecompressionBombError`` at twice its
   limit and is caught too; its warning band can only be reached when ``max_pixels`` is set above Pillow's
   limit (89.5 MP), and the warning is not turned into an error here because ``warnings`` filters are
   process-global and decoding runs in threads.
2. ``verify()`` walks the file structure (PNG chunk CRCs, truncation) without decoding.
3. A fresh ``open`` + ``load()`` decodes (``verify`` leaves the image object unusable, per Pillow's docs);
   JPEGs use ``draft`` so a 4000 px photo is decoded at 1/2-1/8 scale when the target is small.
4. EXIF orientation is applied, transparency is flattened onto white (product photos sit on white; converting
   RGBA straight to RGB would turn transparent backgrounds black), then the image becomes RGB.
5. Resizing, by ``resize_mode``:
   - ``"pad"`` (default): keep the aspect ratio, fit inside the target and pad with white. Nothing of the
     product is cut off, which matters for tall or wide items (a rug, a pen);
   - ``"crop"``: keep the aspect ratio, scale to cover the target and cut the overflow equally from both
     sides (center crop), the usual ImageNet-style preprocessing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps

ResizeMode = Literal["pad", "crop"]
OutputFormat = Literal["PNG", "JPEG"]

PAD_COLOR = (255, 255, 255)
JPEG_QUALITY = 90


class ImageRejected(Exception):
    """Bytes that cannot become a usable image. ``reason`` is a short, stable category for reports."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    """The encoded, resized image plus the *source* dimensions (the output size is always the target size)."""

    data: bytes
    source_width: int
    source_height: int
    source_format: str


def header_size(data: bytes) -> tuple[int, int, str]:
    """Width, height and format from the header alone (no pixel decoding)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size[0], image.size[1], image.format or "unknown"
    except Image.DecompressionBombError as error:
        raise ImageRejected("too_many_pixels", str(error)) from error
    # Pillow raises a wide range of exception types on malformed input (OSError, SyntaxError, ValueError,
    # struct.error, EOFError ...); for untrusted bytes any of them just means "not an image we can use".
    except Exception as error:
        raise ImageRejected("undecodable", f"{type(error).__name__}: {error}") from error


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; broken EXIF keeps the image as stored rather than rejecting usable pixels."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises assorted errors on malformed tags
        return image


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, PAD_COLOR)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def resize_image(image: Image.Image, size: tuple[int, int], mode: ResizeMode) -> Image.Image:
    """Resize an RGB image to exactly ``size`` (width, height) by padding or center-cropping."""
    if mode == "pad":
        return ImageOps.pad(image, size, method=Image.Resampling.BICUBIC, color=PAD_COLOR, centering=(0.5, 0.5))
    if mode == "crop":
        return ImageOps.fit(image, size, method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
    raise ValueError(f"unknown resize mode {mode!r}; expected 'pad' or 'crop'")


def encode_image(image: Image.Image, output_format: OutputFormat) -> bytes:
    buffer = io.BytesIO()
    if output_format == "JPEG":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    elif output_format == "PNG":
        # compress_level 1: cache images are small and written once per run; level 6 costs ~3x the CPU for ~10%.
        image.save(buffer, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unknown output format {output_format!r}; expected 'PNG' or 'JPEG'")
    return buffer.getvalue()


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    size: tuple[int, int],
    resize_mode: ResizeMode = "pad",
    output_format: OutputFormat = "PNG",
) -> DecodedImage:
    """Validate, decode, flatten, resize and re-encode ``data``; raise ``ImageRejected`` with a reason."""
    width, height, source_format = header_size(data)
    if width <= 0 or height <= 0:
        raise ImageRejected("undecodable", f"degenerate size {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height} exceeds max_pixels={max_pixels:,}")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG":
                image.draft("RGB", size)
            image.load()
            rgb = _flatten_to_rgb(_upright(image))
    except Image.DecompressionBombError as error:
        raise ImageRejected("too_many_pixels", str(error)) from error
    except Exception as error:  # see header_size: any Pillow failure on untrusted bytes is "undecodable"
        raise ImageRejected("undecodable", f"{type(error).__name__}: {error}") from error
    resized = resize_image(rgb, size, resize_mode)
    return DecodedImage(encode_image(resized, output_format), width, height, source_format)
