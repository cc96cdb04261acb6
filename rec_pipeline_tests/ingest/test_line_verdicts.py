"""A line's fate must not depend on its neighbours (issue 11).

Whether a line is read by polars' vectorized reader or by the per-line decoder depends on the other lines of
its chunk; the verdict (kept, or rejected and why) must not. Each example puts one hostile line in several
surroundings (alone, among clean lines on the fast path, next to a malformed line that forces its block onto
the slow path, in small chunks) and compares the outcomes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rec_pipeline.ingest.normalize import IngestOptions, ingest_dump
from rec_pipeline_tests.conftest import write_lines
from rec_pipeline_tests.ingest.examples import IMAGES_2023, REVIEW_2018, REVIEW_2023

BASE = {**REVIEW_2018, "style": {"Size:": " L"}, "vote": "3", "image": ["https://img/1.jpg"]}
BASE_2023 = {**REVIEW_2023, "images": IMAGES_2023}
RELEASES = {  # base record, the fields to spoil, the file name, the user id field
    "2018": (
        BASE,
        [
            "reviewerID",
            "asin",
            "overall",
            "unixReviewTime",
            "reviewTime",
            "vote",
            "verified",
            "image",
            "summary",
            "style",
        ],
        "Cat_5.json.gz",
        "reviewerID",
    ),
    "2023": (
        BASE_2023,
        [
            "user_id",
            "parent_asin",
            "asin",
            "rating",
            "timestamp",
            "helpful_vote",
            "verified_purchase",
            "images",
            "title",
        ],
        "Cat.jsonl.gz",
        "user_id",
    ),
}
ODD_VALUES = [
    2**63,
    2**63 - 1,
    -(2**63) - 1,
    2**64 + 5,
    10**30,
    10**400,
    1e300,
    -0.0,
    2.0,
    1.5,
    "٥",
    "５",
    "5",
    " 4.5 ",
    "1,234",
    "",
    " ",
    "true",
    "[1]",
    "{}",
    "nan",
    "inf",
    "\x00",
    "A\ud800",
    "08 22, 2013",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from(ODD_VALUES),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=5,
)


def _record(**fields: object) -> bytes:
    return json.dumps({**BASE, **fields}).encode()


def _nested(depth: int, field: str = "x") -> bytes:
    value = b"[" * depth + b"]" * depth
    return b'{"%s": %s, "reviewerID": "A7", "asin": "B7", "overall": 4.0, "unixReviewTime": 1300000000}' % (
        field.encode(),
        value,
    )


RAW_LINES = [
    _record(reviewerID="A\udcff").replace(b"\\udcff", b"\xff"),  # a byte that is not UTF-8, in an id
    _record(reviewText="bad \udcfe").replace(b"\\udcfe", b"\xfe"),  # ... in free text
    _record(reviewText="x").replace(b'"x"', b'"a\xed\xa0\x80b"'),  # CESU-8 surrogate bytes
    _record(asin="B\ud800"),
    _record(reviewerID="\udc00A"),
    _record(summary="\ud83d\ude00"),  # lone and paired escapes
    b'{"asin": "B1", "asin": null, "reviewerID": "A1", "overall": 5.0, "unixReviewTime": 1}',  # repeated keys
    b'{"asin": null, "\\u0061sin": "B1", "reviewerID": "A1", "overall": 5.0, "unixReviewTime": 1}',
    _nested(10),
    _nested(500),
    _nested(990),
    _nested(1000),
    _nested(1023),
    _nested(1030),
    _nested(20_000),
    _nested(20, "asin"),
    b"\xef\xbb\xbf" + _record(),
    _record().replace(b'"good"', b'"a\tb"'),
    _record() + b" junk",
    b'{"overall": NaN, "reviewerID": "A", "asin": "B"}',
    b'{"overall": 1e400, "reviewerID": "A", "asin": "B"}',
    b'{"overall": ' + b"9" * 5000 + b', "reviewerID": "A", "asin": "B"}',
    b"[1, 2]",
    b"null",
    b'"text"',
    b"",
    b"   \t",
    b"\x0c",
    b"\r",
    b"{'reviewerID': 'A', 'asin': 'B', 'overall': 5.0}",
]


def _mutate_byte(line: bytes, where: int, value: int) -> bytes:
    where %= len(line)
    return line[:where] + bytes([value]) + line[where + 1 :]


def hostile_lines(release: str) -> st.SearchStrategy[bytes]:
    """One spoiled field of a valid record, a known-nasty line, a record with one byte changed, or random bytes."""
    base, fields, _, _ = RELEASES[release]
    record = json.dumps(base).encode()
    return st.one_of(
        st.builds(
            lambda field, value: json.dumps({**base, field: value}).encode(), st.sampled_from(fields), JSON_VALUES
        ),
        st.sampled_from(RAW_LINES),
        st.builds(_mutate_byte, st.just(record), st.integers(0, 400), st.integers(0, 255).filter(lambda b: b != 10)),
        st.binary(max_size=30).filter(lambda b: b"\n" not in b),
    )


CASES = st.sampled_from(sorted(RELEASES)).flatmap(lambda release: st.tuples(st.just(release), hostile_lines(release)))


def _good(release: str, i: int) -> bytes:
    base, _, _, user_field = RELEASES[release]
    return json.dumps({**base, user_field: f"U{i}"}).encode()


def _fate(folder: Path, release: str, label: str, lines: list[bytes], target: int, chunk_bytes: int) -> tuple[str, str]:
    """(kept | rejected | empty, reason category) of line ``target`` (0-based) after ingesting ``lines``."""
    src = write_lines(folder / label / RELEASES[release][2], lines)
    out, rej = folder / f"{label}.parquet", folder / f"{label}.rejected.parquet"
    report = ingest_dump(src, "reviews", out, rej, IngestOptions(chunk_bytes=chunk_bytes))
    assert report.release == release
    assert report.rows_out + report.rejected_total + report.empty_lines == report.lines == len(lines)
    line_no = target + 1
    if pl.read_parquet(out).filter(pl.col("source_line") == line_no).height:
        return ("kept", "")
    reasons = pl.read_parquet(rej).filter(pl.col("source_line") == line_no)["reason"].to_list()
    return ("rejected", reasons[0].split(":", 1)[0]) if reasons else ("empty", "")


@settings(max_examples=60, deadline=None)
@given(case=CASES, position=st.integers(1, 199), small_chunk=st.integers(2000, 8000))
def test_a_lines_fate_does_not_depend_on_its_neighbours(
    case: tuple[str, bytes], position: int, small_chunk: int
) -> None:
    release, line = case
    malformed = b'{"reviewerID": "X", "asin": broken'
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        good = [_good(release, i) for i in range(200)]
        cut = position // 2 + 1
        fates = {
            # after one clean line (the release is sniffed from it), in a two-line chunk that polars reads or refuses
            "alone": _fate(folder, release, "alone", [good[0], line], 1, 8 << 20),
            # among clean lines: the whole chunk goes through polars unless this line is refused
            "clean": _fate(folder, release, "clean", [*good[:position], line, *good[position:]], position, 8 << 20),
            # next to a malformed line and a blank one: its block is bisected and read line by line
            "dirty": _fate(
                folder,
                release,
                "dirty",
                [*good[:position], malformed, line, b"", *good[position:]],
                position + 1,
                8 << 20,
            ),
            # in small chunks, at another offset (never first: a byte order mark is only one at the start of the file)
            "chunked": _fate(folder, release, "chunked", [*good[:cut], line, *good[cut:]], cut, small_chunk),
        }
    assert len(set(fates.values())) == 1, fates
