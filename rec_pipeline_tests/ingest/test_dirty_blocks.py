"""Dirty input at clean speed (issue 12): bad lines are found in one pass, with the per-line decoder's verdicts.

A chunk the strict reader refuses is screened (byte shape, UTF-8), read once forgivingly, and only the lines that
need it are decoded one by one. These tests pin down that nothing changes but the cost: every kept row and every
rejection (reason, line number, raw text) is what the per-line decoder alone gives, and the number of reads per
chunk stays bounded whatever the number of bad lines in it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rec_pipeline.ingest import lines as lines_module
from rec_pipeline.ingest.chunks import iter_chunks
from rec_pipeline.ingest.formats import REVIEWS_2018, REVIEWS_2023, SOURCE_FORMATS
from rec_pipeline.ingest.lines import parse_block
from rec_pipeline.ingest.normalize import IngestOptions, IngestReport, ingest_dump
from rec_pipeline_tests.conftest import write_lines
from rec_pipeline_tests.ingest.examples import IMAGES_2023, REVIEW_2018, REVIEW_2023

R2018 = {**REVIEW_2018, "style": {"Size:": " L"}}
R2023 = {**REVIEW_2023, "images": IMAGES_2023}


def _with(base: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({**base, **fields}).encode()


def _bad_2018() -> list[bytes]:
    """One of every kind of line the fast reader refuses or misreads, and some it reads as the decoder does."""
    good = _with(R2018, reviewerID="AX")
    return [
        good[: len(good) // 2],  # truncated: caught by the byte screen
        b'{"reviewerID": "X", "asin": broken}',  # braces in place, JSON broken inside: caught by the JSON check
        _with(R2018, overall="x"),
        _with(R2018, overall=True),
        _with(R2018, overall="4"),  # refused types
        _with(R2018, unixReviewTime="1377129600"),
        _with(R2018, unixReviewTime=2**63),
        _with(R2018, verified="yes"),
        _with(R2018, image="https://img/1.jpg"),
        _with(R2018, image={"url": "x"}),
        _with(R2018, asin=["B1"]),
        _with(R2018, asin="[B1]"),
        _with(R2018, reviewerID=True),  # ids polars misreads
        _with(R2018, reviewerID="A@").replace(b"A@", b"A\xff"),
        _with(R2018, reviewText="caf@").replace(b"caf@", b"caf\xe9"),
        _with(R2018, overall="x").replace(b'"overall"', b'"\\u006fverall"'),  # a refused value under an escaped key
        b'{"overall": null, "overall": "x", "reviewerID": "AD", "asin": "B1", "unixReviewTime": 1}',  # first key wins
        _with(R2018, overall=None),
        _with(R2018, overall=7.0),
        json.dumps({k: v for k, v in R2018.items() if k != "reviewerID"}).encode(),
        b'{"overall": NaN, "reviewerID": "AN", "asin": "B1", "unixReviewTime": 1}',
        b"",
        b"  \t",
        b"\x0c",
        b"[1, 2]",
        b"null",
        good + b" junk",
        b" " + good,
        good + b"\r",
        b"\xef\xbb\xbf" + good,
    ]


def _bad_2023() -> list[bytes]:
    good = _with(R2023, user_id="UX")
    return [
        good[:40],
        _with(R2023, rating="x"),
        _with(R2023, helpful_vote="3"),
        _with(R2023, timestamp=1.5),
        _with(R2023, images=["x"]),
        _with(R2023, images={"large_image_url": "L"}),
        _with(R2023, images=[{"large_image_url": 5}]),
        _with(R2023, parent_asin={"id": "B3"}),
        _with(R2023, verified_purchase="true"),
        b"",
    ]


CASES = {
    "2018": (R2018, "reviewerID", _bad_2018, "Cat_5.json.gz"),
    "2023": (R2023, "user_id", _bad_2023, "Cat.jsonl.gz"),
}


def _spread(release: str, n_good: int, every: int) -> list[bytes]:
    """Good lines with a bad one (cycling through the kinds) after every ``every`` of them."""
    base, user_key, bad, _ = CASES[release]
    bad_lines = bad()
    out: list[bytes] = []
    for i in range(n_good):
        out.append(_with(base, **{user_key: f"U{i}"}))
        if i % every == every - 1:
            out.append(bad_lines[(i // every) % len(bad_lines)])
    return out


class _CountingReader:
    """Counts calls to polars' NDJSON reader (the costly step) and passes them on."""

    def __init__(self) -> None:
        self.calls = 0
        self._read = pl.read_ndjson

    def __call__(self, *args: Any, **kwargs: Any) -> pl.DataFrame:
        self.calls += 1
        return self._read(*args, **kwargs)


def _ingest(src: Path, tag: str, chunk_bytes: int) -> tuple[IngestReport, pl.DataFrame, pl.DataFrame]:
    out, rej = src.with_name(f"{tag}.parquet"), src.with_name(f"{tag}.rejected.parquet")
    report = ingest_dump(src, "reviews", out, rej, IngestOptions(chunk_bytes=chunk_bytes))
    return report, pl.read_parquet(out), pl.read_parquet(rej).sort("source_line")


@pytest.mark.parametrize("release", sorted(CASES))
def test_dirty_input_gives_exactly_the_per_line_decoders_results(
    tmp_path: Path, release: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _spread(release, 3000, 13)
    src = write_lines(tmp_path / CASES[release][3], lines)
    chunk_bytes = 8 << 10  # ~30 lines a chunk: the bad lines are spread over ~100 chunks, every one of them dirty
    n_chunks = sum(1 for _ in iter_chunks(src, chunk_bytes))
    counting = _CountingReader()
    monkeypatch.setattr(pl, "read_ndjson", counting)
    fast, fast_rows, fast_rejected = _ingest(src, "fast", chunk_bytes)
    assert n_chunks > 80 and counting.calls <= 3 * n_chunks  # bisection would make dozens of reads per chunk
    assert fast.slow_path_lines < 2 * (len(lines) - 3000)  # the bad lines (and a few near misses), not whole blocks

    def refuse(*args: Any, **kwargs: Any) -> pl.DataFrame:
        raise pl.exceptions.ComputeError("the fast reader is switched off: every line goes through the decoder")

    monkeypatch.setattr(pl, "read_ndjson", refuse)
    slow, slow_rows, slow_rejected = _ingest(src, "slow", chunk_bytes)
    assert slow.slow_path_lines >= 3000
    assert fast_rows.equals(slow_rows), "kept rows differ"
    assert fast_rejected.equals(slow_rejected), "rejections (line, reason, raw) differ"
    for name in (
        "lines",
        "rows_out",
        "empty_lines",
        "rejected",
        "nulled_fields",
        "text_repaired",
        "ms_timestamps_converted",
    ):
        assert getattr(fast, name) == getattr(slow, name), name
    assert fast.rejected_total > 50 and fast.rows_out > 3000  # some bad lines are kept as the decoder reads them


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[_CountingReader]:
    counting = _CountingReader()
    monkeypatch.setattr(pl, "read_ndjson", counting)
    yield counting


def _block(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


@pytest.mark.parametrize("every", [2, 13, 500])
def test_reads_per_chunk_are_bounded_whatever_the_number_of_bad_lines(reader: _CountingReader, every: int) -> None:
    # Every kind of bad line at once, one in two lines at worst: at most three reads (strict, forgiving, after the
    # JSON check), never a bisection's dozens; a chunk known to be dirty skips the strict one.
    data = _block(_spread("2018", 2000, every))
    for likely_dirty, most in ((False, 3), (True, 2)):
        reader.calls = 0
        block = parse_block(data, 1, REVIEWS_2018, "x", ("reviewerID", "asin", "overall"), likely_dirty=likely_dirty)
        assert reader.calls <= most, (every, likely_dirty, reader.calls)
        assert block.dirty
        assert block.slow_lines <= 2 * (2000 // every) + 2


def test_common_dirt_costs_one_forgiving_read(reader: _CountingReader) -> None:
    # Truncated lines and wrong types (what real dumps hold) need no JSON check: a refused strict read, then one read.
    good = [_with(R2018, reviewerID=f"U{i}") for i in range(1000)]
    lines = [*good[:300], good[0][:50], *good[300:600], _with(R2018, overall="five"), *good[600:], b""]
    block = parse_block(_block(lines), 1, REVIEWS_2018, "x", ("reviewerID", "asin", "overall"))
    assert reader.calls == 2 and block.slow_lines == 2 and block.empty_lines == 1
    assert [r["source_line"] for r in block.rejected] == [301, 602]
    assert block.frame["source_line"].to_list() == [*range(1, 301), *range(302, 602), *range(603, 1003)]


def test_clean_chunk_is_one_strict_read_and_not_flagged_dirty(reader: _CountingReader) -> None:
    data = _block([_with(R2018, reviewerID=f"U{i}") for i in range(500)])
    block = parse_block(data, 1, REVIEWS_2018, "x", ("reviewerID", "asin", "overall"))
    assert reader.calls == 1 and not block.dirty and block.slow_lines == 0
    reader.calls = 0
    again = parse_block(data, 1, REVIEWS_2018, "x", ("reviewerID", "asin", "overall"), likely_dirty=True)
    assert reader.calls == 1 and not again.dirty and again.frame.equals(block.frame)  # the hint clears itself


def _typed_dtypes() -> dict[str, pl.DataType]:
    """Every non-text column type of every JSON release's raw schema (text columns take any value)."""
    out: dict[str, pl.DataType] = {}
    for fmt in SOURCE_FORMATS:
        if not fmt.python_literals:
            out.update({str(dtype): dtype for dtype in fmt.raw_schema.values() if dtype != pl.String()})
    return out


VALUES = [
    "null",
    "true",
    "1",
    "-1",
    "1.5",
    "-0.0",
    "1e300",
    str(2**63),
    str(2**64),
    str(-(2**63) - 1),
    '"s"',
    '"5"',
    '""',
    "[]",
    "[1]",
    '["a"]',
    "[null]",
    '[1, "x"]',
    "[true]",
    '[{"a": 1}]',
    '[{"large": 5}]',
    '[{"large_image_url": ["x"]}]',
    "[[1]]",
    "{}",
    '{"a": 1}',
    '"\\ud800"',
]


@pytest.mark.parametrize("dtype_name", sorted(_typed_dtypes()))
def test_forgiving_read_nulls_exactly_what_the_strict_read_refuses(dtype_name: str) -> None:
    # The dirty path trusts this about polars: with ignore_errors a value it cannot read becomes null (or a null
    # element) and nothing else changes; a read that succeeds gives the same as the strict read.
    dtype = _typed_dtypes()[dtype_name]
    check = lines_module._element_refused(pl.col("f"), dtype)
    for value in VALUES:
        line = ('{"f": ' + value + "}\n").encode()
        forgiving = pl.read_ndjson(io.BytesIO(line), schema={"f": dtype}, ignore_errors=True)
        try:
            strict = pl.read_ndjson(io.BytesIO(line), schema={"f": dtype})
        except Exception:  # noqa: BLE001 - refused: the forgiving read must show a null where the value was
            nulled = forgiving["f"][0] is None or (
                check is not None and forgiving.select(check.fill_null(False)).item()
            )
            assert nulled, (dtype_name, value, forgiving)
            continue
        assert strict.equals(forgiving), (dtype_name, value)


@pytest.mark.parametrize("fmt", [REVIEWS_2018, REVIEWS_2023], ids=["2018", "2023"])
def test_refused_rows_flag_present_values_only(fmt: Any) -> None:
    # A typed field that is absent or null is not a refusal; one holding a value polars nulled is.
    typed = next(name for name, dtype in fmt.raw_schema.items() if dtype == pl.Float64())
    rows = [
        b"{}",
        b'{"%s": null}' % typed.encode(),
        b'{"%s": "x"}' % typed.encode(),
        b'{"%s": 4}' % typed.encode(),
        b'{"x": "%s", "%s": "y"}' % (typed.encode(), typed.encode()),
    ]
    frame = pl.read_ndjson(io.BytesIO(_block(rows)), schema=fmt.raw_schema, ignore_errors=True)
    texts = pl.Series([row.decode() for row in rows])
    assert lines_module._refused_rows(frame, lambda: texts, fmt).tolist() == [False, False, True, False, True]
