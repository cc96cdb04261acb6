"""Release sniffing tolerates any bad line: it only looks for evidence and skips what it cannot read."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from rec_pipeline.ingest.formats import META_2014, META_2018, REVIEWS_2018, REVIEWS_2023, sniff_format

R2018 = json.dumps({"reviewerID": "A1", "asin": "B1", "overall": 5.0, "verified": True}).encode()

HOSTILE = [
    b"[" * 100_000,  # RecursionError in json.loads
    b"{" * 100_000,
    b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b"[1, 2, 3]",  # JSON, but not an object
    b'"text"',
    b"null",
    b"\xff\xfe\x00",  # not UTF-8
    b"{[1]: 2}",  # literal_eval raises TypeError
    b"{1: 'a', 'b': 2}",  # non-text keys
    b"{'a': [" + b"1," * (1 << 20) + b"1]}",  # a literal too large for literal_eval's memory appetite
    b"",
]


def test_sniffing_skips_lines_that_break_decoders() -> None:
    assert sniff_format("reviews", [*HOSTILE, R2018]) is REVIEWS_2018


def test_sniffing_with_nothing_decodable_names_what_it_saw() -> None:
    with pytest.raises(ValueError, match="no decodable line"):
        sniff_format("reviews", [line for line in HOSTILE if not line.startswith(b"{1:")])


def test_sniffing_reads_a_lazy_sample_only_as_far_as_it_needs() -> None:
    consumed = 0

    def lines() -> Iterator[bytes]:
        nonlocal consumed
        for i in range(10_000):
            consumed += 1
            yield json.dumps({"user_id": f"U{i}", "rating": 5.0, "parent_asin": "P"}).encode()

    assert sniff_format("reviews", lines(), max_records=50) is REVIEWS_2023
    assert consumed == 50


def test_python_literal_metadata_is_still_recognised_and_json_metadata_too() -> None:
    assert sniff_format("meta", [b"{'asin': 'B1', 'title': 'x'}"]) is META_2014
    assert sniff_format("meta", [b'{"asin": "B1", "title": "x"}']) is META_2018
