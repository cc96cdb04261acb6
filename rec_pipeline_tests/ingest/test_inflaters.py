"""The inflate library is a speed choice only (issue 12): every installed one reads every file the same way.

zlib is always there; ISA-L (``isal``) and zlib-ng are used when installed. Whatever reads the file, the chunks,
the line numbers and the verdict on a truncated or corrupt stream must be identical, and the report must say
which library read it.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from rec_pipeline.ingest import chunks as chunks_module
from rec_pipeline.ingest.chunks import (
    INFLATER_PREFERENCE,
    INFLATERS,
    ReadStatus,
    choose_inflater,
    inflate_file,
    iter_chunks,
)
from rec_pipeline.ingest.normalize import IngestOptions, ingest_dump
from rec_pipeline_tests.conftest import write_lines

INSTALLED = [name for name in INFLATERS if INFLATERS[name].available()]


def _lines(n: int, start: int = 0) -> bytes:
    return b"".join(b'{"n": %d, "text": "line %d of the dump"}\n' % (i, i) for i in range(start, start + n))


def _files(tmp_path: Path) -> dict[str, Path]:
    """A multi-member file, a truncated one and one with a damaged body."""
    whole = gzip.compress(_lines(4000), compresslevel=6)
    corrupt = bytearray(gzip.compress(_lines(4000), compresslevel=1))
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 64] = b"\x00" * 64
    files = {
        "multi": gzip.compress(_lines(3000)) + gzip.compress(_lines(2000, 3000)) + gzip.compress(b""),
        "truncated": whole[: len(whole) * 2 // 3],
        "corrupt": bytes(corrupt),
    }
    out = {}
    for name, payload in files.items():
        out[name] = tmp_path / f"{name}.json.gz"
        out[name].write_bytes(payload)
    return out


def _read(path: Path, inflater: str) -> tuple[list[tuple[bytes, int, int]], ReadStatus]:
    status = ReadStatus()
    read = [(c.data, c.first_line, c.n_lines) for c in iter_chunks(path, 4096, status, inflater=inflater)]
    return read, status


@pytest.mark.parametrize("inflater", INSTALLED)
def test_every_installed_inflater_reads_exactly_what_zlib_reads(tmp_path: Path, inflater: str) -> None:
    for name, path in _files(tmp_path).items():
        expected, zlib_status = _read(path, "zlib")
        got, status = _read(path, inflater)
        assert status.inflater == inflater
        assert got == expected, name
        assert (status.complete, status.lines, status.decompressed_bytes) == (
            zlib_status.complete,
            zlib_status.lines,
            zlib_status.decompressed_bytes,
        ), name
        assert (status.problem is None) == (zlib_status.problem is None), name
        if name == "truncated":
            assert "truncated" in (status.problem or "")
        if name == "corrupt":
            assert "corrupt" in (status.problem or "")
    assert inflate_file(_files(tmp_path)["multi"], INFLATERS[inflater]) == len(_lines(5000))


def test_fastest_installed_inflater_is_chosen_and_a_missing_one_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_inflater().name == next(name for name in INFLATER_PREFERENCE if name in INSTALLED)
    assert choose_inflater("zlib").name == "zlib"
    real_import = chunks_module._import
    monkeypatch.setattr(chunks_module, "_import", lambda module: None if module != "zlib" else real_import(module))
    assert choose_inflater().name == "zlib" and choose_inflater("isal").name == "zlib"  # optional, never required
    with pytest.raises(ValueError, match="unknown inflater"):
        choose_inflater("brotli")


def test_ingest_report_names_the_inflater(tmp_path: Path) -> None:
    rows = [{"reviewerID": f"U{i}", "asin": "B1", "overall": 5.0, "unixReviewTime": 1300000000} for i in range(10)]
    src = write_lines(tmp_path / "Cat_5.json.gz", rows)
    default = ingest_dump(src, "reviews", tmp_path / "a.parquet", tmp_path / "a.rej.parquet")
    assert default.inflater == choose_inflater().name and default.to_dict()["inflater"] == default.inflater
    forced = ingest_dump(
        src, "reviews", tmp_path / "b.parquet", tmp_path / "b.rej.parquet", IngestOptions(inflater="zlib")
    )
    assert forced.inflater == "zlib" and forced.rows_out == default.rows_out == 10


@pytest.mark.parametrize("inflater", [name for name in INSTALLED if name != "zlib"])
def test_truncated_stream_keeps_every_byte_zlib_keeps(tmp_path: Path, inflater: str) -> None:
    # ISA-L holds back the last decodable byte at about one cut in five; that byte may end the last whole line.
    whole = gzip.compress(_lines(20_000), compresslevel=6)
    path = tmp_path / "cut.json.gz"
    for cut in range(len(whole) // 3, len(whole) - 100, len(whole) // 47):
        path.write_bytes(gzip.compress(_lines(10)) + whole[:cut])  # the cut member is not the first
        expected, _ = _read(path, "zlib")
        got, status = _read(path, inflater)
        assert got == expected and not status.complete, cut
