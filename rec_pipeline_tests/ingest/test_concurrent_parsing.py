"""Chunks parsed by several threads at once (issue 12) give exactly what one thread gives, in the same order.

Each chunk's parse takes a hint from the chunk before it (was it dirty?), which a chunk parsed ahead cannot know:
these tests pin down that a wrong guess never shows in the output, the counts or the line numbers, that the
look-ahead stays bounded, and that an error or an early stop leaves no thread behind.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rec_pipeline.ingest import normalize
from rec_pipeline.ingest.chunks import Chunk, iter_chunks
from rec_pipeline.ingest.normalize import IngestOptions, IngestReport, ingest_dump
from rec_pipeline_tests.conftest import write_lines
from rec_pipeline_tests.ingest.examples import REVIEW_2018

CHUNK_BYTES = 2048  # about eight lines a chunk: the file below spans dozens of chunks
MAX_LINE_BYTES = 1500


def _line(i: int, **fields: Any) -> bytes:
    return json.dumps({**REVIEW_2018, "reviewerID": f"U{i}", **fields}).encode()


def _mixed_lines() -> list[bytes]:
    """Clean stretches and dirty stretches in turn, so the dirty hint flips from chunk to chunk.

    The clean stretches hold lines with a leading space: the strict read takes them, the per-line path decodes
    them (a different ``slow_path_lines``), so a chunk parsed with a wrong hint would show in the report.
    """
    out: list[bytes] = []
    i = 0
    for stretch in range(8):
        dirty = stretch % 2 == 1
        for n in range(40):
            i += 1
            if dirty and n % 6 == 5:
                out.append(
                    [
                        _line(i)[:60],  # truncated
                        _line(i, overall="five"),  # non-numeric rating
                        _line(i, overall=9.0),  # out of range: rejected after normalization
                        b"",
                        _line(i, reviewerID=None),  # missing user id
                        b"[1, 2]",
                    ][(i // 6) % 6]
                )
            elif not dirty and n % 9 == 4:
                out.append(b" " + _line(i))
            else:
                out.append(_line(i, unixReviewTime=1377129600123 if n % 11 == 0 else 1377129600))
        if stretch == 4:
            out.append(_line(i, reviewText="x" * (2 * MAX_LINE_BYTES)))  # skipped unread: "line too long"
    return out


def _ingest(src: Path, workers: int) -> tuple[IngestReport, pl.DataFrame, pl.DataFrame]:
    out, rejected = src.with_name(f"w{workers}.parquet"), src.with_name(f"w{workers}.rejected.parquet")
    options = IngestOptions(chunk_bytes=CHUNK_BYTES, max_line_bytes=MAX_LINE_BYTES, parse_workers=workers)
    report = ingest_dump(src, "reviews", out, rejected, options)
    return report, pl.read_parquet(out), pl.read_parquet(rejected)  # in written order, not sorted


def _parse_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("parse-chunk", "inflate-"))]


def test_parallel_parsing_gives_the_serial_output_counts_and_line_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_lines(tmp_path / "Cat_5.json.gz", _mixed_lines())
    n_chunks = sum(1 for _ in iter_chunks(src, CHUNK_BYTES, max_line_bytes=MAX_LINE_BYTES))
    calls = 0
    parse = normalize._ChunkParser.parse

    def counting(self: normalize._ChunkParser, chunk: Chunk, likely_dirty: bool) -> normalize._ParsedChunk:
        nonlocal calls
        calls += 1
        return parse(self, chunk, likely_dirty)

    monkeypatch.setattr(normalize._ChunkParser, "parse", counting)
    serial, serial_rows, serial_rejected = _ingest(src, 1)
    assert calls == n_chunks > 20
    assert serial.rejected["line too long"] == 1 and serial.rejected_total > 20 and serial.slow_path_lines > 0
    for workers in (2, 3):
        calls = 0
        report, rows, rejected = _ingest(src, workers)
        assert calls > n_chunks  # some guesses were wrong and those chunks parsed again
        assert {**report.to_dict(), "seconds": 0} == {**serial.to_dict(), "seconds": 0}
        assert rows.equals(serial_rows), "kept rows or their order differ"
        assert rejected.equals(serial_rejected), "rejections (line, reason, raw) or their order differ"
    assert rows["source_line"].is_sorted()
    assert not _parse_threads()


def test_lookahead_is_bounded_by_the_workers(tmp_path: Path) -> None:
    drawn = 0

    def chunks() -> Any:
        nonlocal drawn
        for n in range(50):
            drawn += 1
            yield Chunk(data=b"", first_line=n + 1, n_lines=0)

    def parse(chunk: Chunk, likely_dirty: bool) -> normalize._ParsedChunk:
        time.sleep(0.001)
        return normalize._ParsedChunk(table=None, rejected=[{"line": chunk.first_line}], hint=likely_dirty, dirty=False)

    seen = []
    for parsed in normalize._parsed_in_order(chunks(), parse, workers=2):
        seen.append(parsed.rejected[0]["line"])
        assert drawn - len(seen) <= 2  # chunks read but not yet handed out: the ones the threads are on
    assert seen == list(range(1, 51))


def test_a_parse_error_propagates_and_stops_every_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_lines(tmp_path / "Cat_5.json.gz", [_line(i) for i in range(400)])
    parse = normalize._ChunkParser.parse

    def failing(self: normalize._ChunkParser, chunk: Chunk, likely_dirty: bool) -> normalize._ParsedChunk:
        if chunk.first_line > 100:
            raise RuntimeError("parser broke")
        return parse(self, chunk, likely_dirty)

    monkeypatch.setattr(normalize._ChunkParser, "parse", failing)
    out, options = tmp_path / "o.parquet", IngestOptions(chunk_bytes=CHUNK_BYTES, parse_workers=2)
    with pytest.raises(RuntimeError, match="parser broke"):
        ingest_dump(src, "reviews", out, tmp_path / "r.parquet", options)
    assert not out.exists()
    assert not _parse_threads()


def test_a_consumer_that_stops_early_leaves_no_thread(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "Cat_5.json.gz", [_line(i) for i in range(2000)])
    parser = normalize._ChunkParser(normalize.format_for("2018", "reviews"), "reviews", src.name, MAX_LINE_BYTES)
    chunks = iter_chunks(src, CHUNK_BYTES)
    parsed = normalize._parsed_in_order(chunks, parser.parse, workers=2)
    assert next(parsed).table is not None
    parsed.close()
    chunks.close()
    assert not _parse_threads()
