import gzip
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rec_pipeline.ingest.chunks import LONG_LINE_PREFIX_BYTES, UTF8_BOM, ReadStatus, iter_chunks


def _lines(n: int) -> bytes:
    return b"".join(b'{"n": %d}\n' % i for i in range(n))


def _read_all(path: Path, chunk_bytes: int = 64) -> tuple[list, ReadStatus]:
    status = ReadStatus()
    chunks = list(iter_chunks(path, chunk_bytes, status))
    return chunks, status


def test_chunks_are_line_aligned_and_numbered_across_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json.gz"
    path.write_bytes(gzip.compress(_lines(1000)))
    chunks, status = _read_all(path, chunk_bytes=100)
    assert len(chunks) > 5
    assert b"".join(c.data for c in chunks) == _lines(1000)
    assert all(c.data.endswith(b"\n") for c in chunks)
    expected_first = 1
    for chunk in chunks:
        assert chunk.first_line == expected_first
        expected_first += chunk.n_lines
    assert status.complete and status.lines == 1000


def test_truncated_gzip_keeps_what_was_read_and_says_so(tmp_path: Path) -> None:
    whole = gzip.compress(_lines(5000))
    path = tmp_path / "cut.json.gz"
    path.write_bytes(whole[: len(whole) // 2])
    chunks, status = _read_all(path, chunk_bytes=4096)
    data = b"".join(c.data for c in chunks)
    assert not status.complete
    assert "truncated" in (status.problem or "")
    assert data and _lines(5000).startswith(data)
    assert status.lines > 100


def test_multi_member_gzip_is_read_as_one_stream(tmp_path: Path) -> None:
    path = tmp_path / "multi.json.gz"
    path.write_bytes(gzip.compress(_lines(10)) + gzip.compress(_lines(20)))
    chunks, status = _read_all(path)
    assert b"".join(c.data for c in chunks) == _lines(10) + _lines(20)
    assert status.complete


def test_plain_uncompressed_jsonl_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_bytes(_lines(7))
    chunks, status = _read_all(path)
    assert sum(c.n_lines for c in chunks) == 7 and status.complete


def test_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "nonl.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}')
    chunks, status = _read_all(path)
    assert b"".join(c.data for c in chunks) == b'{"a": 1}\n{"a": 2}'
    assert status.lines == 2


def test_corrupt_gzip_body_is_reported_not_raised(tmp_path: Path) -> None:
    whole = bytearray(gzip.compress(_lines(3000), compresslevel=1))
    whole[len(whole) // 2 : len(whole) // 2 + 64] = b"\x00" * 64
    path = tmp_path / "corrupt.json.gz"
    path.write_bytes(bytes(whole))
    chunks, status = _read_all(path, chunk_bytes=1024)
    assert not status.complete
    assert status.problem


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.json.gz"
    path.write_bytes(gzip.compress(b""))
    chunks, status = _read_all(path)
    assert chunks == [] and status.lines == 0 and status.complete


def test_zlib_is_what_decodes_gzip() -> None:
    # Guard for the background inflater: wbits=31 must accept gzip members.
    assert zlib.decompressobj(wbits=31).decompress(gzip.compress(b"x\n")) == b"x\n"


def _write_gzip_with_long_line(
    path: Path, before: bytes, long_line_bytes: int, after: bytes, newline: bool = True
) -> None:
    """A gzip bomb in miniature: a long run of one byte compresses ~1000:1, written without holding it in memory."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    block = b"x" * (1 << 20)
    with open(path, "wb") as handle:
        handle.write(compressor.compress(before))
        left = long_line_bytes
        while left:
            handle.write(compressor.compress(block[: min(left, len(block))]))
            left -= min(left, len(block))
        handle.write(compressor.compress((b"\n" if newline else b"") + after))
        handle.write(compressor.flush())


def test_line_longer_than_max_line_bytes_is_skipped_with_its_number_and_length(tmp_path: Path) -> None:
    path = tmp_path / "long.json.gz"
    _write_gzip_with_long_line(path, _lines(3), 5_000_000, _lines(4))
    status = ReadStatus()
    chunks = list(iter_chunks(path, chunk_bytes=64, status=status, max_line_bytes=1 << 20))
    long = [c for c in chunks if c.long_line is not None]
    assert len(long) == 1 and long[0].first_line == 4 and long[0].n_lines == 1 and long[0].data == b""
    assert long[0].long_line is not None and long[0].long_line.length == 5_000_000
    assert long[0].long_line.prefix == b"x" * LONG_LINE_PREFIX_BYTES
    assert b"".join(c.data for c in chunks) == _lines(3) + _lines(4)
    after = [c for c in chunks if c.first_line > 4]
    assert after[0].first_line == 5 and status.lines == 8 and status.long_lines == 1 and status.complete


def test_line_of_exactly_max_line_bytes_is_kept_one_more_byte_is_not(tmp_path: Path) -> None:
    limit = 1000
    for size, skipped in ((limit, 0), (limit + 1, 1)):
        path = tmp_path / f"edge{size}.jsonl"
        path.write_bytes(b"a\n" + b"y" * size + b"\nb\n")
        chunks = list(iter_chunks(path, chunk_bytes=64, max_line_bytes=limit))
        assert sum(c.long_line is not None for c in chunks) == skipped
        assert sum(c.n_lines for c in chunks) == 3


def test_long_last_line_without_newline_is_skipped_too(tmp_path: Path) -> None:
    path = tmp_path / "tail.json.gz"
    _write_gzip_with_long_line(path, _lines(2), 3_000_000, b"", newline=False)
    chunks = list(iter_chunks(path, 64, max_line_bytes=1 << 20))
    assert [c.first_line for c in chunks if c.long_line is not None] == [3]
    assert chunks[-1].long_line is not None and chunks[-1].long_line.length == 3_000_000


def test_gzip_bomb_is_read_in_bounded_memory(tmp_path: Path) -> None:
    # 128 MB of one line from ~130 kB of gzip: before the fix the reader held the whole line (and the whole
    # inflated output of each 1 MB compressed block) in memory.
    path = tmp_path / "bomb.json.gz"
    _write_gzip_with_long_line(path, _lines(10), 128 << 20, _lines(10))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        status = ReadStatus()
        n = sum(c.n_lines for c in iter_chunks(path, chunk_bytes=1 << 20, status=status, max_line_bytes=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 21 and status.long_lines == 1 and status.decompressed_bytes > 128 << 20
    assert peak < 32 << 20, f"peak traced memory {peak / 1e6:.0f} MB"


def test_utf8_bom_at_the_start_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "bom.json.gz"
    path.write_bytes(gzip.compress(UTF8_BOM + _lines(3)))
    status = ReadStatus()
    chunks = list(iter_chunks(path, 64, status))
    assert b"".join(c.data for c in chunks) == _lines(3) and status.bom_stripped and status.lines == 3


def test_bom_split_across_gzip_members_is_still_found(tmp_path: Path) -> None:
    path = tmp_path / "bom2.json.gz"
    path.write_bytes(gzip.compress(UTF8_BOM[:1]) + gzip.compress(UTF8_BOM[1:] + _lines(2)))
    status = ReadStatus()
    assert b"".join(c.data for c in iter_chunks(path, 64, status)) == _lines(2) and status.bom_stripped


def test_tiny_file_shorter_than_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "tiny.jsonl"
    path.write_bytes(b"1")
    status = ReadStatus()
    assert b"".join(c.data for c in iter_chunks(path, 64, status)) == b"1" and not status.bom_stripped


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")), max_size=40),
    members=st.lists(st.integers(0, 10_000), max_size=6),
    max_line_bytes=st.integers(1, 200),
    chunk_bytes=st.integers(1, 400),
    final_newline=st.booleans(),
)
def test_every_line_comes_out_once_whole_or_as_too_long(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    members: list[int],
    max_line_bytes: int,
    chunk_bytes: int,
    final_newline: bool,
) -> None:
    # gzip members end wherever the draw says, so decompressed pieces end mid-line, mid-BOM-check, mid-long-line.
    stream = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    cuts = sorted({min(c, len(stream)) for c in members} | {0, len(stream)})
    path = tmp_path_factory.mktemp("prop") / "lines.json.gz"
    path.write_bytes(
        b"".join(gzip.compress(stream[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=False)) or gzip.compress(b"")
    )
    status = ReadStatus()
    seen: dict[int, bytes | int] = {}
    for chunk in iter_chunks(path, chunk_bytes, status, max_line_bytes):
        if chunk.long_line is not None:
            seen[chunk.first_line] = chunk.long_line.length
            continue
        parts = chunk.data.split(b"\n")
        if chunk.data.endswith(b"\n"):
            parts.pop()
        assert len(parts) == chunk.n_lines
        seen.update((chunk.first_line + i, part) for i, part in enumerate(parts))
    text = stream[len(UTF8_BOM) :] if stream.startswith(UTF8_BOM) else stream
    expected_lines = text.split(b"\n")
    if text.endswith(b"\n") or not text:
        expected_lines.pop()
    expected = {i + 1: (len(line) if len(line) > max_line_bytes else line) for i, line in enumerate(expected_lines)}
    assert seen == expected and status.lines == len(expected) and status.complete
