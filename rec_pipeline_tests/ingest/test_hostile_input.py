"""Hostile input never aborts a dump or blows memory: one test per row of issue 11's table.

Every test writes a real gzip dump and ingests it; the point is always the same: the bad line is quarantined
with its number and a reason, everything else is kept, and the counts add up.
"""

from __future__ import annotations

import json
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rec_pipeline.ingest.normalize import IngestOptions, IngestReport, ingest_dump
from rec_pipeline_tests.conftest import write_lines
from rec_pipeline_tests.ingest.examples import REVIEW_2014, REVIEW_2018, REVIEW_2023

R2014 = dict(REVIEW_2014)
R2018 = dict(REVIEW_2018)
R2023 = dict(REVIEW_2023)
BASES = {
    "2014": (R2014, "reviews_Cat_5.json.gz", "reviewerID"),
    "2018": (R2018, "Cat_5.json.gz", "reviewerID"),
    "2023": (R2023, "Cat.jsonl.gz", "user_id"),
}
BIG = 9223372036854775813  # from the security review: just past the largest 64-bit integer


class Ingested:
    """The report, the kept rows and the rejected rows of one ingest."""

    def __init__(self, report: IngestReport, frame: pl.DataFrame, rejected: pl.DataFrame) -> None:
        self.report, self.frame, self.rejected = report, frame, rejected

    def reason(self, line_no: int) -> str:
        reasons = self.rejected.filter(pl.col("source_line") == line_no)["reason"].to_list()
        assert len(reasons) == 1, f"line {line_no} not rejected once: {reasons}"
        return reasons[0]

    def kept(self, line_no: int) -> dict[str, Any]:
        rows = self.frame.filter(pl.col("source_line") == line_no).to_dicts()
        assert len(rows) == 1, f"line {line_no} not kept"
        return rows[0]


def _ingest(src: Path, kind: str = "reviews", **options: Any) -> Ingested:
    out, rej = src.with_suffix(".parquet"), src.with_suffix(".rejected.parquet")
    report = ingest_dump(src, kind, out, rej, IngestOptions(**options))  # type: ignore[arg-type]
    assert report.rows_out + report.rejected_total + report.empty_lines == report.lines
    return Ingested(report, pl.read_parquet(out), pl.read_parquet(rej))


def _good(base: dict[str, Any], user_key: str, n: int) -> list[bytes]:
    return [json.dumps({**base, user_key: f"U{i}"}).encode() for i in range(n)]


def _surroundings(tmp_path: Path, name: str, bad: bytes, good: list[bytes]) -> list[tuple[Path, int]]:
    """The same bad line among clean lines (fast path), alone after one clean line, and next to a malformed line."""
    layouts = {
        "among_clean": ([*good[:100], bad, *good[100:]], 101),
        "alone": ([good[0], bad], 2),
        "next_to_malformed": ([*good[:50], b"{broken", bad, *good[50:]], 52),
    }
    out = []
    for label, (lines, line_no) in layouts.items():
        folder = tmp_path / label
        out.append((write_lines(folder / name, lines), line_no))
    return out


# --- gzip bomb -----------------------------------------------------------------------------------------------------


def _write_bomb(path: Path, before: list[bytes], line_bytes: int, after: list[bytes]) -> None:
    """One ``line_bytes`` long review text between normal lines, compressed ~1000:1 and never held in memory here."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    block = b"x" * (1 << 20)
    with open(path, "wb") as handle:
        handle.write(compressor.compress(b"".join(line + b"\n" for line in before)))
        handle.write(compressor.compress(b'{"reviewText": "'))
        left = line_bytes - len(b'{"reviewText": "') - len(b'"}')
        while left > 0:
            handle.write(compressor.compress(block[: min(left, len(block))]))
            left -= len(block)
        handle.write(compressor.compress(b'"}\n' + b"".join(line + b"\n" for line in after)))
        handle.write(compressor.flush())


def test_gzip_bomb_line_is_quarantined_without_being_held_in_memory(tmp_path: Path) -> None:
    good = _good(R2018, "reviewerID", 10)
    src = tmp_path / "Cat_5.json.gz"
    line_bytes = 128 << 20
    _write_bomb(src, good[:5], line_bytes, good[5:])
    assert src.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        result = _ingest(src, chunk_bytes=1 << 20, max_line_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20, f"peak traced memory {peak / 1e6:.0f} MB for a {line_bytes >> 20} MB line"
    assert result.reason(6) == f"line too long: {line_bytes} bytes > max_line_bytes ({1 << 20})"
    assert result.rejected.filter(pl.col("source_line") == 6)["raw"][0].startswith('{"reviewText": "xxxx')
    assert result.report.rows_out == 10 and result.report.lines == 11 and result.report.rejected == {"line too long": 1}
    assert result.kept(11)["user_id"] == "U9"  # line numbers after the skipped line are exact


def test_default_max_line_bytes_is_16_mb() -> None:
    assert IngestOptions().max_line_bytes == 16 << 20


# --- blank-line flood ----------------------------------------------------------------------------------------------


def test_blank_line_flood_is_handled_on_the_fast_path(tmp_path: Path) -> None:
    good = _good(R2018, "reviewerID", 300)
    lines: list[bytes] = [good[0], *([b""] * 1_000_000), good[1], *([b"  \t\r"] * 5_000), good[2]]
    for line in good[3:]:
        lines += [line, b""]
    result = _ingest(write_lines(tmp_path / "Cat_5.json.gz", lines), chunk_bytes=256 << 10)
    assert result.report.slow_path_lines == 0  # not one line went through the per-line decoder
    assert result.report.empty_lines == 1_000_000 + 5_000 + 297
    assert result.report.rows_out == 300 and result.report.rejected_total == 0
    assert result.kept(1_005_003)["user_id"] == "U2"


def test_slow_path_counter_counts_lines_decoded_one_by_one(tmp_path: Path) -> None:
    # The counter the flood test relies on does move: a malformed line sends its small block through the decoder.
    lines = _good(R2018, "reviewerID", 300)
    lines.insert(150, b"{broken")
    result = _ingest(write_lines(tmp_path / "Cat_5.json.gz", lines))
    assert 1 <= result.report.slow_path_lines <= 64
    assert result.report.rejected == {"malformed JSON": 1}


# --- integer overflow ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "field", "value"),
    [
        ("2014", "unixReviewTime", BIG),
        ("2018", "unixReviewTime", BIG),
        ("2023", "timestamp", BIG),
        ("2023", "helpful_vote", BIG),
        ("2018", "unixReviewTime", -(2**63) - 1),
        ("2014", "helpful", [1, BIG]),
    ],
)
def test_integer_overflow_rejects_the_line_not_the_dump(
    tmp_path: Path, release: str, field: str, value: object
) -> None:
    base, name, user_key = BASES[release]
    good = _good(base, user_key, 200)
    bad = json.dumps({**base, field: value}).encode()
    for src, line_no in _surroundings(tmp_path, name, bad, good):
        result = _ingest(src)
        assert result.report.release == release
        assert result.reason(line_no).startswith(f"integer out of range: {field} ")
        assert result.report.rejected_total == (2 if "malformed" in str(src) else 1)


def test_rating_too_large_for_a_float_is_a_non_numeric_rating(tmp_path: Path) -> None:
    good = _good(R2018, "reviewerID", 200)
    bad = json.dumps({**R2018, "overall": 10**400}).encode()
    for src, line_no in _surroundings(tmp_path, "Cat_5.json.gz", bad, good):
        assert _ingest(src).reason(line_no).startswith("non-numeric rating: overall expected a number")


# --- deep nesting --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "kept"), [(1000, True), (5000, False), (200_000, False)])
def test_deeply_nested_json_in_the_first_lines_gets_a_verdict_not_an_abort(
    tmp_path: Path, depth: int, kept: bool
) -> None:
    # Up to polars' limit of 1024 levels a record is read (whatever Python's recursion limit says); deeper is malformed.
    nested = (
        b'{"reviewerID": "A9", "asin": "B9", "overall": 5.0, "unixReviewTime": 1, "x": '
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )
    lines = [nested, b"[" * depth, b"{" * depth, *_good(R2018, "reviewerID", 300)]
    for src, chunk_bytes in (
        (write_lines(tmp_path / "Cat_5.json.gz", lines), 8 << 20),
        (tmp_path / "Cat_5.json.gz", 1000),
    ):
        result = _ingest(src, chunk_bytes=chunk_bytes)
        assert result.report.release == "2018" and result.report.rows_out == 300 + kept
        assert result.reason(2).startswith("malformed JSON") and result.reason(3).startswith("malformed JSON")
        if kept:
            assert result.kept(1)["user_id"] == "A9"
        else:
            assert result.reason(1) == "malformed JSON: nested too deep"


# --- wrong id types ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "field", "value", "reason"),
    [
        ("2018", "asin", ["B1", "B2"], "invalid item id"),
        ("2018", "asin", {"id": "B1"}, "invalid item id"),
        ("2018", "reviewerID", ["A1"], "invalid user id"),
        ("2014", "reviewerID", {"a": 1}, "invalid user id"),
        ("2018", "reviewerID", True, "invalid user id"),
        ("2023", "parent_asin", ["B3"], "invalid item id"),
        ("2023", "user_id", {"u": 1}, "invalid user id"),
    ],
)
def test_list_or_dict_ids_are_rejected_wherever_they_sit(
    tmp_path: Path, release: str, field: str, value: object, reason: str
) -> None:
    base, name, user_key = BASES[release]
    bad = json.dumps({**base, field: value}).encode()
    for src, line_no in _surroundings(tmp_path, name, bad, _good(base, user_key, 200)):
        assert _ingest(src).reason(line_no).startswith(f"{reason}: {field} expected text")


def test_id_that_merely_looks_like_a_list_is_kept(tmp_path: Path) -> None:
    # The fast path sends ids starting with "[" to the per-line decoder, which keeps a real string.
    bad = json.dumps({**R2018, "asin": "[B1]"}).encode()
    for src, line_no in _surroundings(tmp_path, "Cat_5.json.gz", bad, _good(R2018, "reviewerID", 200)):
        assert _ingest(src).kept(line_no)["item_id"] == "[B1]"


# --- bytes that are not UTF-8 --------------------------------------------------------------------------------------


def test_non_utf8_ids_are_rejected_not_merged(tmp_path: Path) -> None:
    good = _good(R2018, "reviewerID", 200)
    a_ff = json.dumps({**R2018, "reviewerID": "A@"}).encode().replace(b"A@", b"A\xff")
    a_fe = json.dumps({**R2018, "reviewerID": "A@"}).encode().replace(b"A@", b"A\xfe")
    item = json.dumps({**R2018, "asin": "B@"}).encode().replace(b"B@", b"B\xc3")
    result = _ingest(write_lines(tmp_path / "Cat_5.json.gz", [*good[:100], a_ff, a_fe, item, *good[100:]]))
    assert result.reason(101) == result.reason(102) == "invalid user id: reviewerID is not valid UTF-8 text"
    assert result.reason(103) == "invalid item id: asin is not valid UTF-8 text"
    assert not result.frame["user_id"].str.contains("\ufffd").any()
    assert (
        "A\ufffd" in result.rejected.filter(pl.col("source_line") == 101)["raw"][0]
    )  # shown, replaced, in the quarantine


def test_lone_surrogate_escape_in_an_id_is_rejected(tmp_path: Path) -> None:
    bad = json.dumps({**R2018, "asin": "B\ud800"}).encode()  # json.dumps writes the escape \\ud800
    for src, line_no in _surroundings(tmp_path, "Cat_5.json.gz", bad, _good(R2018, "reviewerID", 200)):
        assert _ingest(src).reason(line_no) == "invalid item id: asin is not valid UTF-8 text"


def test_non_utf8_free_text_is_kept_replaced_and_counted(tmp_path: Path) -> None:
    good = _good(R2018, "reviewerID", 200)
    bad = json.dumps({**R2018, "reviewerID": "A7", "reviewText": "caf@"}).encode().replace(b"caf@", b"caf\xe9")
    result = _ingest(write_lines(tmp_path / "Cat_5.json.gz", [*good[:100], bad, *good[100:]]))
    assert result.kept(101)["text"] == "caf\ufffd"
    assert result.report.text_repaired == {"reviewText": 1} and result.report.rejected_total == 0


# --- ratings -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rating", ["٥", "５", "5\u0665", "𝟓"])
def test_rating_written_with_non_ascii_digits_is_rejected(tmp_path: Path, rating: str) -> None:
    bad = json.dumps({**R2018, "overall": rating}).encode()
    for src, line_no in _surroundings(tmp_path, "Cat_5.json.gz", bad, _good(R2018, "reviewerID", 200)):
        assert _ingest(src).reason(line_no).startswith("non-numeric rating: overall expected a number")


@pytest.mark.parametrize(("rating", "value"), [("5", 5.0), (" 4.5 ", 4.5), ("3.", 3.0), (4, 4.0)])
def test_rating_as_ascii_number_or_numeric_string_is_kept(tmp_path: Path, rating: object, value: float) -> None:
    bad = json.dumps({**R2018, "overall": rating}).encode()
    for src, line_no in _surroundings(tmp_path, "Cat_5.json.gz", bad, _good(R2018, "reviewerID", 200)):
        assert _ingest(src).kept(line_no)["rating"] == value


def test_unix_time_with_non_ascii_digits_is_nulled_not_read_as_a_number(tmp_path: Path) -> None:
    # "²".isdigit() is True yet int("²") raises: such a string once escaped the coercion as an exception.
    bad = json.dumps({**R2018, "unixReviewTime": "²", "reviewTime": "bad"}).encode()
    result = _ingest(write_lines(tmp_path / "Cat_5.json.gz", [*_good(R2018, "reviewerID", 10), bad]))
    assert result.reason(11) == "missing timestamp" and result.report.nulled_fields == {"unixReviewTime": 1}


# --- byte order mark -----------------------------------------------------------------------------------------------


def test_byte_order_mark_at_the_start_is_stripped_not_quarantined(tmp_path: Path) -> None:
    lines = _good(R2018, "reviewerID", 5)
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    result = _ingest(write_lines(tmp_path / "Cat_5.json.gz", lines))
    assert result.report.rejected_total == 0 and result.report.rows_out == 5 and result.report.bom_stripped
    assert result.kept(1)["user_id"] == "U0"


# --- sniffing and the Python-literal decoder ------------------------------------------------------------------------


def test_release_is_detected_past_a_head_of_blank_garbage_and_overlong_lines(tmp_path: Path) -> None:
    head = [b"", b"x" * 5000, b"[1]", b"{not json", b"\xff\xfe", *([b""] * 100_000)]
    result = _ingest(
        write_lines(tmp_path / "Cat.jsonl.gz", [*head, *_good(R2023, "user_id", 50)]),
        chunk_bytes=4096,
        max_line_bytes=1000,
    )
    assert result.report.release == "2023" and result.report.rows_out == 50
    assert result.reason(2) == "line too long: 5000 bytes > max_line_bytes (1000)"


def test_file_of_blank_lines_only_gives_empty_output_not_an_error(tmp_path: Path) -> None:
    result = _ingest(write_lines(tmp_path / "Cat_5.json.gz", [b""] * 1000))
    assert result.report.empty_lines == 1000 and result.report.rows_out == 0 and result.report.release == "unknown"


def test_2014_metadata_lines_that_break_the_literal_parser_are_quarantined(tmp_path: Path) -> None:
    lines: list[str | bytes] = [
        "{'asin': 'B1', 'title': 'ok', 'imUrl': 'http://x/1.jpg'}",
        "{'asin': 'B2', [1]: 2}",  # literal_eval raises TypeError (unhashable key)
        "{'asin': 'B3', 'title': '" + "t" * (2 << 20) + "'}",  # longer than the literal decoder is given
        "{'asin': 'B4', 'title': 'caf\udce9'}".encode("utf-8", "surrogateescape"),  # a Latin-1 byte in the text
        "{'asin': 'B\udcff5'}".encode("utf-8", "surrogateescape"),  # ... in the id
    ]
    result = _ingest(write_lines(tmp_path / "meta_Cat.json.gz", lines), kind="meta")
    assert result.report.release == "2014"
    assert result.reason(2).startswith("malformed record") and result.reason(3).startswith("malformed record")
    assert result.kept(4)["title"] == "caf\ufffd" and result.report.text_repaired == {"title": 1}
    assert result.reason(5) == "invalid item id: asin is not valid UTF-8 text"
