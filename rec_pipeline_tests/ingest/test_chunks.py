import gzip
import zlib
from pathlib import Path

from rec_pipeline.ingest.chunks import ReadStatus, iter_chunks


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
