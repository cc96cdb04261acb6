"""Decoding untrusted image bytes: guards, RGB conversion and the two resize modes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from rec_pipeline.images.decode import ImageRejected, decode_image
from rec_pipeline_tests.images.http_server import bomb_png, make_image_bytes


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_pad_keeps_the_whole_image_and_pads_with_white() -> None:
    # 40x20: black left half, red right half. Padded into 32x32 it becomes 32x16 with white bands above/below.
    decoded = decode_image(make_image_bytes((40, 20)), max_pixels=10_000, size=(32, 32), resize_mode="pad")
    image = _open(decoded.data)
    assert image.size == (32, 32) and image.mode == "RGB"
    assert image.getpixel((16, 1)) == (255, 255, 255)
    assert image.getpixel((16, 30)) == (255, 255, 255)
    assert image.getpixel((2, 16)) == (0, 0, 0)
    assert image.getpixel((29, 16)) == (200, 30, 30)
    assert (decoded.source_width, decoded.source_height, decoded.source_format) == (40, 20, "PNG")


def test_crop_fills_the_target_and_cuts_the_sides_equally() -> None:
    # 40x20 scaled to cover 32x32 is 64x32; 16 px are cut from each side, so the split stays in the middle.
    decoded = decode_image(make_image_bytes((40, 20)), max_pixels=10_000, size=(32, 32), resize_mode="crop")
    image = _open(decoded.data)
    assert image.size == (32, 32)
    assert image.getpixel((2, 1)) == (0, 0, 0)
    assert image.getpixel((29, 30)) == (200, 30, 30)


def test_non_square_targets_are_width_by_height() -> None:
    decoded = decode_image(make_image_bytes((30, 30)), max_pixels=10_000, size=(48, 24))
    assert _open(decoded.data).size == (48, 24)


def test_transparent_pixels_become_white_not_black() -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    image = _open(decode_image(buffer.getvalue(), max_pixels=10_000, size=(10, 10)).data)
    assert image.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P"])
def test_other_colour_modes_are_converted_to_rgb(mode: str) -> None:
    buffer = io.BytesIO()
    Image.new(mode, (12, 12)).save(buffer, format="JPEG" if mode == "CMYK" else "PNG")
    assert _open(decode_image(buffer.getvalue(), max_pixels=10_000, size=(8, 8)).data).mode == "RGB"


def test_jpeg_output_is_a_jpeg_of_the_target_size() -> None:
    data = make_image_bytes((64, 48), image_format="JPEG")
    image = _open(decode_image(data, max_pixels=10_000, size=(16, 16), output_format="JPEG").data)
    assert image.format == "JPEG" and image.size == (16, 16)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    decoded = decode_image(buffer.getvalue(), max_pixels=10_000, size=(20, 40), resize_mode="crop")
    # Displayed upright the photo is 20x40, so a 20x40 crop keeps it all: no white padding anywhere.
    assert _open(decoded.data).getpixel((10, 2))[1] > 150


def test_declared_pixel_count_over_the_limit_is_rejected_before_decoding() -> None:
    # 5000x5000 is under Pillow's own limit; had it been decoded, the 16-byte IDAT would fail as "undecodable".
    with pytest.raises(ImageRejected) as rejected:
        decode_image(bomb_png(5000, 5000), max_pixels=1_000_000, size=(8, 8))
    assert rejected.value.reason == "too_many_pixels"


def test_pillows_decompression_bomb_error_is_reported_as_too_many_pixels() -> None:
    # 100,000 x 100,000 trips Pillow's guard inside Image.open, even with our own limit set absurdly high.
    with pytest.raises(ImageRejected) as rejected:
        decode_image(bomb_png(100_000, 100_000), max_pixels=10**12, size=(8, 8))
    assert rejected.value.reason == "too_many_pixels"


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_truncated_images_are_undecodable(image_format: str) -> None:
    data = make_image_bytes((64, 64), image_format=image_format)
    with pytest.raises(ImageRejected) as rejected:
        decode_image(data[: len(data) // 2], max_pixels=100_000, size=(8, 8))
    assert rejected.value.reason == "undecodable"


@pytest.mark.parametrize("data", [b"", b"<html>nope</html>", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_garbage_is_undecodable(data: bytes) -> None:
    with pytest.raises(ImageRejected) as rejected:
        decode_image(data, max_pixels=100_000, size=(8, 8))
    assert rejected.value.reason == "undecodable"


def test_corrupted_png_checksum_is_caught_by_verify() -> None:
    data = bytearray(make_image_bytes((16, 16)))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # flip a byte inside the compressed data: the chunk CRC no longer matches
    with pytest.raises(ImageRejected) as rejected:
        decode_image(bytes(data), max_pixels=100_000, size=(8, 8))
    assert rejected.value.reason == "undecodable"
