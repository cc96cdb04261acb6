"""Turn chunks of JSON lines into raw frames: a fast vectorized path, and a forgiving per-line path.

Real dumps are overwhelmingly clean, so each chunk is first handed whole to polars' multi-threaded NDJSON
reader. Blank lines, which polars skips, are located with one vectorized scan and do not leave the fast path.

A chunk the strict reader refuses is not bisected (a few bad lines per chunk would cost dozens of re-reads): its
bad lines are found in one pass and only they are decoded one by one, so dirty input costs about what clean input
does. The pass has three steps, each cheaper than a read and each run only if the one before was not enough:

1. a byte screen (numpy): a line that does not start with ``{`` and end with ``}``, or is not UTF-8, is set
   aside for the per-line decoder (this catches truncated lines, the commonest kind of damage);
2. one forgiving read (``ignore_errors``) of the rest: polars then nulls a value it cannot read as its column's
   type instead of failing, and such values are found from the output (see ``_refused_rows``);
3. only if that read still fails on syntax: a per-line JSON validity check (``str.json_path_match``) sets aside
   what the byte screen could not see, and the rest is read once more. Bisection remains as a last resort.

A line's verdict must not depend on its neighbours (which decide whether it is read by polars or by the
per-line decoder), so the per-line decoder is the reference and the fast path is trusted only where its
verdict would be the same: polars refuses outright a number, boolean, list or object of the wrong type (the
per-line decoder then decides), and the one value it accepts that the decoder rejects, an id that is not JSON
text (a list ``asin`` becomes ``'["B1"]'``), is spotted in its output and sent to the decoder. Free-text
fields may still differ in form, not in verdict: polars writes a list given as a summary as its JSON text,
the decoder nulls it and counts it.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from polars._typing import PolarsDataType  # a DataType instance or class, as schemas hold them
import pyarrow as pa

from rec_pipeline.ingest.formats import SOURCE_FORMATS, SourceFormat

_SMALL_BLOCK_LINES = 64
_BLOCK_LINES = 2048
RAW_SNIPPET_CHARS = 500
# Ids are keys: a replaced byte would merge distinct users or items, so an id must be exact text or nothing.
ID_FIELDS = frozenset().union(*(fmt.id_fields for fmt in SOURCE_FORMATS))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# ASCII only: str.isdigit() and float() also take "٥" (Arabic-Indic five) or "５" (fullwidth), which no dump writes.
_ASCII_INT = re.compile(r"[+-]?[0-9]+")
_ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SURROGATE = re.compile("[\ud800-\udfff]")
# What polars skips as a blank line (other control characters make it fail, and the per-line decoder decides).
_BLANK_BYTES = [ord(" "), ord("\t"), ord("\r"), ord("\n")]
_NOT_BLANK = ~np.isin(np.arange(256), _BLANK_BYTES)
# Past this many lines that may be blank, one vectorized scan of the block beats looking at each of them.
_FEW_MAYBE_BLANK = 256
# A key written with a \\u escape ("\\u006fverall" is "overall") hides from a literal search for the key.
_ESCAPED_KEY = r'\\u[0-9A-Fa-f]{4}[^"]*"\s*:'


@dataclass
class ParsedBlock:
    """Raw rows (the format's raw schema plus ``source_line``) and the lines that could not be decoded.

    ``slow_lines`` counts lines decoded one by one in Python (the cost that hostile input must not inflate);
    ``text_repaired`` counts, per field, text values whose undecodable bytes were replaced by U+FFFD; ``dirty``
    says the strict reader refused the block (or was not tried), a hint that the next block is dirty too;
    ``read_whole`` says the strict read of the whole block gave it, the one result that skipping that read (the
    hint) can change. ``line_bounds`` saves the caller a second scan when it needs raw lines (see ``line_texts``).
    """

    frame: pl.DataFrame
    rejected: list[dict[str, Any]] = field(default_factory=list)
    empty_lines: int = 0
    nulled_fields: dict[str, int] = field(default_factory=dict)
    slow_lines: int = 0
    text_repaired: dict[str, int] = field(default_factory=dict)
    dirty: bool = False
    line_bounds: tuple[np.ndarray, np.ndarray] | None = None  # start and end of each line, where already found
    read_whole: bool = False


def _empty_frame(fmt: SourceFormat) -> pl.DataFrame:
    return pl.DataFrame(schema={**fmt.raw_schema, "source_line": pl.Int64()})


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def parse_block(
    data: bytes,
    first_line: int,
    fmt: SourceFormat,
    source_file: str,
    required: tuple[str, ...],
    n_lines: int | None = None,
    likely_dirty: bool = False,
) -> ParsedBlock:
    """Parse whole lines ``data`` whose first line has number ``first_line`` (``n_lines`` if already counted).

    ``likely_dirty`` (the previous block was dirty) skips the strict read, which would only fail: with bad lines
    spread through a file, nearly every block holds some, and a failed read costs half a good one.
    """
    if n_lines is None:
        n_lines = _count_lines(data)
    if n_lines == 0:
        return ParsedBlock(_empty_frame(fmt))
    if fmt.python_literals:
        return _parse_lines_slowly(data, first_line, fmt, source_file, required)
    if not likely_dirty:
        whole = _try_fast(data, n_lines, fmt, first_line)
        if whole is not None:
            whole.read_whole = True
            return whole
    return _parse_dirty(data, first_line, fmt, source_file, required)


class _LineTable:
    """Where each line of a block starts and ends (newline excluded), and which lines polars skips as blank."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.buf = np.frombuffer(data, dtype=np.uint8)
        self.starts, self.ends = _line_bounds(data)
        # Each line's length with its newline: lines laid end to end rebuild the block.
        self.spans = np.append(self.starts[1:], len(data)) - self.starts
        self.blank = self._blank()

    def __len__(self) -> int:
        return len(self.starts)

    def _blank(self) -> np.ndarray:
        """Lines of only spaces, tabs and carriage returns; only lines that start with one of those are looked at."""
        first = self.buf[np.minimum(self.starts, len(self.buf) - 1)]
        maybe = np.flatnonzero((self.ends == self.starts) | np.isin(first, _BLANK_BYTES))
        if len(maybe) > _FEW_MAYBE_BLANK:
            return _blank_lines(self.data)
        blank = np.zeros(len(self.starts), dtype=bool)
        for index in maybe.tolist():
            blank[index] = not self.data[self.starts[index] : self.ends[index]].strip(b" \t\r")
        return blank

    def misshapen(self) -> np.ndarray:
        """Non-blank lines that cannot be a JSON object: they do not start with ``{`` and end with ``}`` (``\\r``)."""
        starts, ends, buf = self.starts, self.ends, self.buf
        last = np.maximum(ends - 1, 0)
        before_cr = np.maximum(ends - 2, 0)
        closed = (buf[last] == ord("}")) | (
            (buf[last] == ord("\r")) & (ends - 2 >= starts) & (buf[before_cr] == ord("}"))
        )
        opened = buf[np.minimum(starts, len(buf) - 1)] == ord("{")
        return ~self.blank & ~(opened & closed)

    def not_utf8(self) -> np.ndarray:
        """Lines holding bytes that are not UTF-8; the block is decoded once, resuming after each bad line."""
        bad = np.zeros(len(self.starts), dtype=bool)
        view, pos = memoryview(self.data), 0
        while pos < len(self.data):
            try:
                codecs.utf_8_decode(view[pos:], "strict", True)
                break
            except UnicodeDecodeError as exc:
                line = int(np.searchsorted(self.ends, pos + exc.start))  # the first line ending at or after the byte
                bad[line] = True
                pos = int(self.starts[line] + self.spans[line])
        return bad

    def line(self, index: int) -> bytes:
        return self.data[self.starts[index] : self.ends[index]]


@dataclass
class _KeptRead:
    """One read of some of a block's lines: polars' rows, the table index of each row's line, and its text."""

    frame: pl.DataFrame
    row_lines: np.ndarray
    texts: Callable[[], pl.Series]


def _join_lines(table: _LineTable, kept: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The kept lines laid end to end (newlines included), and where each starts in that buffer (plus the end)."""
    index = np.flatnonzero(kept)
    offsets = np.zeros(len(index) + 1, dtype=np.int64)
    np.cumsum(table.spans[index], out=offsets[1:])
    if len(index) == len(table):
        return table.data, offsets
    breaks = np.flatnonzero(np.diff(index) != 1)
    run_first = np.concatenate([index[:1], index[breaks + 1]])
    run_last = np.concatenate([index[breaks], index[-1:]])
    view = memoryview(table.data)  # slices of a view are not copies: the join is the only copy
    ends = table.starts[run_last] + table.spans[run_last]
    return b"".join([view[a:b] for a, b in zip(table.starts[run_first].tolist(), ends.tolist(), strict=True)]), offsets


def _text_series(buffer: bytes, offsets: np.ndarray) -> pl.Series:
    """The lines of ``buffer`` as a string Series without copying them (they are known to be UTF-8)."""
    array = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(buffer))
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series


def _read_kept(table: _LineTable, kept: np.ndarray, fmt: SourceFormat) -> _KeptRead | None:
    """One forgiving read of the kept lines (refused values become null), or None when polars still fails."""
    buffer, offsets = _join_lines(table, kept)
    row_lines = np.flatnonzero(kept & ~table.blank)
    try:
        frame = pl.read_ndjson(io.BytesIO(buffer), schema=fmt.raw_schema, ignore_errors=True)
    except Exception:  # noqa: BLE001 - polars raises several error types for bad input
        return None
    if frame.height != len(row_lines):
        return None  # polars skipped a line the blank scan did not: let the slower steps decide
    rows_in_kept = np.flatnonzero(~table.blank[kept])
    cache: list[pl.Series] = []

    def texts() -> pl.Series:
        if not cache:
            series = _text_series(buffer, offsets)
            cache.append(series if len(rows_in_kept) == len(series) else series.gather(rows_in_kept))
        return cache[0]

    return _KeptRead(frame, row_lines, texts)


def _not_json(table: _LineTable, kept: np.ndarray) -> np.ndarray:
    """Kept non-blank lines that are not valid JSON, by one vectorized per-line check (serde_json's grammar).

    It is stricter than polars in places (it refuses nesting past 128 levels): such lines go to the per-line
    decoder, whose verdict is the reference anyway.
    """
    buffer, offsets = _join_lines(table, kept)
    rows = np.flatnonzero(kept & ~table.blank)
    texts = _text_series(buffer, offsets).gather(np.flatnonzero(~table.blank[kept]))
    invalid = texts.str.json_path_match("$").is_null().to_numpy()
    out = np.zeros(len(table), dtype=bool)
    out[rows[invalid]] = True
    return out


def _parse_dirty(
    data: bytes, first_line: int, fmt: SourceFormat, source_file: str, required: tuple[str, ...]
) -> ParsedBlock:
    """A block the strict reader refused (or was not asked).

    Its bad lines are found in one pass, and only they are decoded one by one.
    """
    table = _LineTable(data)
    aside = table.misshapen() | table.not_utf8()
    read = _read_kept(table, ~aside, fmt)
    if read is None:
        aside |= _not_json(table, ~aside)
        read = _read_kept(table, ~aside, fmt)
    if read is None:
        # Something both screens passed still breaks polars: bisect, the slow but sure way.
        cuts = _line_cuts(data, _BLOCK_LINES)
        parts = [
            _parse_bisecting(data[a:b], line, fmt, source_file, required)
            for a, b, line in _blocks(cuts, first_line, len(data))
        ]
        merged = _merge(parts, fmt)
        merged.dirty = True
        return merged
    refused = _refused_rows(read.frame, read.texts, fmt) | _disagreeing_rows(read.frame, fmt)
    slow_index = np.union1d(np.flatnonzero(aside), read.row_lines[refused])
    fast = read.frame.filter(pl.Series(~refused)).with_columns(
        pl.Series("source_line", first_line + read.row_lines[~refused], dtype=pl.Int64)
    )
    empty = int(table.blank.sum())
    bounds = (table.starts, table.ends)
    if not len(slow_index):
        return ParsedBlock(fast, empty_lines=empty, dirty=False, line_bounds=bounds)
    lines = [table.line(i) for i in slow_index.tolist()]
    slow = _decode_lines(lines, (first_line + slow_index).tolist(), fmt, source_file, required)
    frame = fast.merge_sorted(slow.frame, key="source_line") if slow.frame.height else fast
    rejected = sorted(slow.rejected, key=lambda row: row["source_line"])
    return ParsedBlock(
        frame,
        rejected,
        empty + slow.empty_lines,
        slow.nulled_fields,
        slow.slow_lines,
        slow.text_repaired,
        dirty=True,
        line_bounds=bounds,
    )


def _refused_rows(frame: pl.DataFrame, texts: Callable[[], pl.Series], fmt: SourceFormat) -> np.ndarray:
    """Rows holding a value that polars' forgiving read nulled because its strict read would refuse it.

    With ``ignore_errors`` polars puts a null where a value cannot be read as its column's type and changes
    nothing else (``test_forgiving_read_nulls_exactly_what_the_strict_read_refuses`` pins this down), so a
    refused value is either a null element inside a typed list, or a null in a typed field whose line has a
    non-null value for that key. String fields take any value as text and never refuse. The key test is on the
    raw text: a literal ``"key"`` more often than ``"key": null``, or a key spelled with a ``\\u`` escape; it may
    flag a line that was fine (the decoder then reads it), never miss one.
    """
    refused = np.zeros(frame.height, dtype=bool)
    typed = [name for name, dtype in fmt.raw_schema.items() if dtype != pl.String()]
    if not typed or not frame.height:
        return refused
    inner = [check for name in typed if (check := _element_refused(pl.col(name), fmt.raw_schema[name])) is not None]
    if inner:
        refused |= frame.select(pl.any_horizontal(inner).fill_null(False)).to_series().to_numpy()
    nulls = frame.select([pl.col(name).is_null() for name in typed]).to_numpy()
    if not (nulls.any(axis=1) & ~refused).any():
        return refused
    lines = texts()
    # Whole-column literal searches are SIMD scans, cheaper than gathering the rows first; regexes see few rows.
    escapes = np.flatnonzero(lines.str.contains("\\u", literal=True).to_numpy() & nulls.any(axis=1) & ~refused)
    if len(escapes):
        refused[escapes[lines.gather(escapes).str.contains(_ESCAPED_KEY).to_numpy()]] = True
    for column, name in enumerate(typed):
        if not nulls[:, column].any():
            continue
        key = f'"{name}"'
        rows = np.flatnonzero(nulls[:, column] & ~refused & lines.str.contains(key, literal=True).to_numpy())
        if not len(rows):
            continue
        sub = lines.gather(rows)
        valued = sub.str.count_matches(key, literal=True) > sub.str.count_matches(re.escape(key) + r"\s*:\s*null")
        refused[rows[valued.to_numpy()]] = True
    return refused


def _element_refused(expr: pl.Expr, dtype: PolarsDataType) -> pl.Expr | None:
    """True where a typed value inside a list or object came out null (None when nothing inside can be refused)."""
    if isinstance(dtype, pl.List):
        if dtype.inner == pl.String():
            return None
        deeper = _element_refused(pl.element(), dtype.inner)
        element = pl.element().is_null() if deeper is None else pl.element().is_null() | deeper
        return expr.list.eval(element).list.any()
    if isinstance(dtype, pl.Struct):
        parts = []
        for fld in dtype.fields:
            if fld.dtype == pl.String():
                continue
            value = expr.struct.field(fld.name)
            deeper = _element_refused(value, fld.dtype)
            parts.append(value.is_null() if deeper is None else value.is_null() | deeper)
        return pl.any_horizontal(parts) if parts else None
    return None


def _line_cuts(data: bytes, every: int) -> np.ndarray:
    """Byte offsets just after every ``every``-th newline."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    return newlines[every - 1 :: every] + 1


def _blocks(cuts: np.ndarray, first_line: int, size: int) -> list[tuple[int, int, int]]:
    """(start, end, first line number) of each block; every block but the last holds exactly _BLOCK_LINES lines."""
    bounds = [0, *[int(c) for c in cuts if c < size], size]
    out = []
    line = first_line
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a:
            out.append((a, b, line))
            line += _BLOCK_LINES
    return out


def line_texts(data: bytes, indices: list[int], bounds: tuple[np.ndarray, np.ndarray] | None = None) -> list[bytes]:
    """The lines of ``data`` at the given 0-based indices (newline left out), found with one vectorized scan.

    ``bounds`` (a ``ParsedBlock``'s ``line_bounds``) skips the scan.
    """
    starts, ends = bounds if bounds is not None else _line_bounds(data)
    return [data[starts[i] : ends[i]] for i in indices]


def _line_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, newline left out) byte offset of every line of ``data``."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    ends = newlines if data.endswith(b"\n") or not data else np.append(newlines, len(data))
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    return starts, ends


def _blank_lines(data: bytes) -> np.ndarray:
    """Per line: True when it holds only spaces, tabs and carriage returns (what polars skips).

    A line is blank when the running count of content bytes is the same at its newline as at the previous one;
    this needs no per-line start offsets, which matters for a chunk of nothing but newlines (a line per byte).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    counts = np.cumsum(_NOT_BLANK[buf], dtype=np.int64 if len(buf) >= 2**31 else np.int32)
    # A mask, not an index array, and a comparison in place: a block of newlines costs ~10 bytes per line, not ~25.
    at_newlines = counts[buf == 10]
    if data and not data.endswith(b"\n"):
        at_newlines = np.append(at_newlines, counts[-1])
    del counts
    blank = np.empty(len(at_newlines), dtype=bool)
    if len(blank):
        blank[0] = at_newlines[0] == 0
        np.equal(at_newlines[1:], at_newlines[:-1], out=blank[1:])
    return blank


def _try_fast(data: bytes, n_lines: int, fmt: SourceFormat, first_line: int) -> ParsedBlock | None:
    """All lines of ``data`` read by polars, or None when any line needs the per-line decoder's verdict."""
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=fmt.raw_schema)
    except Exception:  # noqa: BLE001 - polars raises several error types for bad input; the slow path says why
        return None
    empty = 0
    if frame.height == n_lines:
        frame = frame.with_columns(pl.int_range(first_line, first_line + n_lines, dtype=pl.Int64).alias("source_line"))
    elif frame.height < n_lines:
        # polars skips blank lines: find them, so the remaining rows get their true line numbers.
        blank = _blank_lines(data)
        empty = int(blank.sum())
        if n_lines - empty != frame.height:
            return None
        frame = frame.with_columns(pl.Series("source_line", first_line + np.flatnonzero(~blank), dtype=pl.Int64))
    else:
        return None
    if _disagreeing_rows(frame, fmt).any():
        return None
    return ParsedBlock(frame, empty_lines=empty)


def _disagreeing_rows(frame: pl.DataFrame, fmt: SourceFormat) -> np.ndarray:
    """Rows where a value polars read may not be what the per-line decoder reads (see the module docstring).

    polars writes a list, object or boolean given for a text field as its JSON text: a real id never starts
    with ``[`` or ``{`` and is never ``true``/``false``. It also writes a lone high surrogate escape
    (``"\\ud800"``) as U+0000, where the decoder rejects the id or repairs and counts the text. Such rows go
    to the decoder, which can tell (a true string passes); NUL is rare enough in real text to cost nothing.
    """
    if frame.height == 0:
        return np.zeros(0, dtype=bool)
    texts = [name for name, dtype in fmt.raw_schema.items() if dtype == pl.String()]
    checks = [pl.col(name).str.contains("\x00", literal=True) for name in texts]
    checks += [
        pl.col(name).str.starts_with("[") | pl.col(name).str.starts_with("{") | pl.col(name).is_in(["true", "false"])
        for name in texts
        if name in ID_FIELDS
    ]
    if not checks:
        return np.zeros(frame.height, dtype=bool)
    disagrees = pl.any_horizontal(checks).fill_null(False)
    if not frame.select(disagrees.any()).item():  # the usual answer, without building a row mask
        return np.zeros(frame.height, dtype=bool)
    return frame.select(disagrees).to_series().to_numpy()


def _parse_bisecting(
    data: bytes, first_line: int, fmt: SourceFormat, source_file: str, required: tuple[str, ...]
) -> ParsedBlock:
    n_lines = _count_lines(data)
    fast = _try_fast(data, n_lines, fmt, first_line)
    if fast is not None:
        return fast
    if n_lines <= _SMALL_BLOCK_LINES:
        return _parse_lines_slowly(data, first_line, fmt, source_file, required)
    middle = data.find(b"\n", len(data) // 2) + 1
    if middle <= 0 or middle >= len(data):
        return _parse_lines_slowly(data, first_line, fmt, source_file, required)
    left, right = data[:middle], data[middle:]
    return _merge(
        [
            _parse_bisecting(left, first_line, fmt, source_file, required),
            _parse_bisecting(right, first_line + left.count(b"\n"), fmt, source_file, required),
        ],
        fmt,
    )


def _add_counts(total: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


def _merge(parts: list[ParsedBlock], fmt: SourceFormat) -> ParsedBlock:
    if not parts:
        return ParsedBlock(_empty_frame(fmt))
    nulled: dict[str, int] = {}
    repaired: dict[str, int] = {}
    for part in parts:
        _add_counts(nulled, part.nulled_fields)
        _add_counts(repaired, part.text_repaired)
    return ParsedBlock(
        frame=pl.concat([p.frame for p in parts], how="vertical"),
        rejected=[r for p in parts for r in p.rejected],
        empty_lines=sum(p.empty_lines for p in parts),
        nulled_fields=nulled,
        slow_lines=sum(p.slow_lines for p in parts),
        text_repaired=repaired,
    )


def rejection(source_file: str, line_no: int, reason: str, raw: bytes | str) -> dict[str, Any]:
    """One row of the rejected file; only the start of the raw line is kept (and decoded)."""
    text = raw[: RAW_SNIPPET_CHARS * 4].decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return {
        "source_file": source_file,
        "source_line": line_no,
        "reason": _storable(reason),
        "raw": _storable(text[:RAW_SNIPPET_CHARS]),
    }


def _storable(text: str) -> str:
    """Text Parquet can store: a decoder's message may quote the undecodable bytes (as lone surrogates)."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _parse_lines_slowly(
    data: bytes, first_line: int, fmt: SourceFormat, source_file: str, required: tuple[str, ...]
) -> ParsedBlock:
    starts, ends = _line_bounds(data)
    blank = _blank_lines(data)
    empty = int(blank.sum())  # skipped without a Python-level look: a flood of blank lines costs a vector scan
    index = np.flatnonzero(~blank)
    start_list, end_list = starts[index].tolist(), ends[index].tolist()
    lines = [data[a:b] for a, b in zip(start_list, end_list, strict=True)]
    block = _decode_lines(lines, (first_line + index).tolist(), fmt, source_file, required)
    block.empty_lines += empty
    return block


def _decode_lines(
    lines: list[bytes], numbers: list[int], fmt: SourceFormat, source_file: str, required: tuple[str, ...]
) -> ParsedBlock:
    """Decode each line on its own (the reference verdicts); ``numbers`` are their line numbers, ascending."""
    rows: list[dict[str, Any]] = []
    raws: list[bytes] = []
    rejected: list[dict[str, Any]] = []
    nulled: dict[str, int] = {}
    repaired: dict[str, int] = {}
    empty = decoded = 0
    for line, line_no in zip(lines, numbers, strict=True):
        if not line.strip():  # other ASCII whitespace (form feed, vertical tab): empty all the same
            empty += 1
            continue
        decoded += 1
        verdict = _decode_line(line, fmt, required, nulled, repaired)
        if isinstance(verdict, str):
            rejected.append(rejection(source_file, line_no, verdict, line))
            continue
        verdict["source_line"] = line_no
        rows.append(verdict)
        raws.append(line)
    frame = _rows_to_frame(rows, raws, fmt, source_file, rejected)
    return ParsedBlock(frame, rejected, empty, nulled, decoded, repaired)


def _decode_line(
    line: bytes, fmt: SourceFormat, required: tuple[str, ...], nulled: dict[str, int], repaired: dict[str, int]
) -> dict[str, Any] | str:
    """One line's row in the raw schema, or the reason it is rejected. Never raises for any content of ``line``."""
    malformed = "malformed record" if fmt.python_literals else "malformed JSON"
    try:
        obj = fmt.decode_line(line)
    except RecursionError:
        # Python's decoder gives up at a depth that depends on the caller's stack; polars at a fixed 1024 levels.
        # Take polars' reading where it has one, so a line nested ~1000 deep gets one verdict in every chunk.
        row = None if fmt.python_literals else _polars_row(line, fmt)
        return row if row is not None else f"{malformed}: nested too deep"
    except Exception as exc:  # noqa: BLE001 - whatever one line does to the decoder concerns that line only
        return f"{malformed}: {str(exc)[:120]}"
    if not isinstance(obj, dict):
        return f"not a JSON object but {type(obj).__name__}"
    row, problem = coerce_record(obj, fmt.raw_schema, required, nulled, repaired)
    return problem if problem is not None else row


def _polars_row(line: bytes, fmt: SourceFormat) -> dict[str, Any] | None:
    fast = _try_fast(line, 1, fmt, 0)
    if fast is None or fast.frame.height != 1:
        return None
    return fast.frame.drop("source_line").row(0, named=True)


def _rows_to_frame(
    rows: list[dict[str, Any]], raws: list[bytes], fmt: SourceFormat, source_file: str, rejected: list[dict[str, Any]]
) -> pl.DataFrame:
    """Rows to a frame; should one row still hold something polars cannot store, that row alone is rejected."""
    schema = {**fmt.raw_schema, "source_line": pl.Int64()}
    if not rows:
        return _empty_frame(fmt)
    try:
        return pl.DataFrame(rows, schema=schema, orient="row")
    except Exception:  # noqa: BLE001 - find the row(s) at fault rather than lose the block
        kept = []
        for row, raw in zip(rows, raws, strict=True):
            try:
                pl.DataFrame([row], schema=schema, orient="row")
            except Exception as exc:  # noqa: BLE001
                rejected.append(rejection(source_file, row["source_line"], f"unstorable value: {str(exc)[:120]}", raw))
                continue
            kept.append(row)
        return pl.DataFrame(kept, schema=schema, orient="row") if kept else _empty_frame(fmt)


# Reasons for a wrong-typed required field, named by meaning rather than by each release's field name.
_REQUIRED_REASON = {name: why for fmt in SOURCE_FORMATS for name, why in fmt.required_reasons().items()}


class _Bad(Exception):
    """A value of the wrong type or form: the field is nulled, or the record rejected if the field is required."""


class _Reject(Exception):
    """A value that condemns the whole record wherever it sits (an integer no 64-bit column can hold)."""


@dataclass
class _TextPolicy:
    """How text with undecodable bytes is treated: ids are rejected (``exact``), free text is repaired and counted."""

    exact: bool
    repaired: int = 0


def _text(value: str, policy: _TextPolicy) -> str:
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 (kept as surrogate escapes), or a lone \\udXXX escape
        if policy.exact:
            raise _Bad("is not valid UTF-8 text") from None
        policy.repaired += 1
        return _SURROGATE.sub("\ufffd", value)
    return value


def _checked_int(value: int) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Reject(f"{str(value)[:30]} does not fit in 64 bits")
    return value


def _coerce(value: Any, dtype: PolarsDataType, policy: _TextPolicy) -> Any:
    if value is None:
        return None
    if dtype == pl.String():
        if isinstance(value, str):
            return _text(value, policy)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float):
            return np.format_float_positional(value, trim="-")  # as polars writes a number read into text
        raise _Bad(f"expected text, got {type(value).__name__}")
    if dtype == pl.Float64():
        if isinstance(value, bool):
            raise _Bad("expected a number, got a boolean")
        if isinstance(value, (int, float)):
            try:
                return float(value)
            except OverflowError:
                raise _Bad(f"expected a number, got {str(value)[:30]} (too large)") from None
        if isinstance(value, str):
            text = value.replace(",", "").strip()
            if _ASCII_NUMBER.fullmatch(text):
                return float(text)
            raise _Bad(f"expected a number, got {_text(value, _TextPolicy(False))[:30]!r}")
        raise _Bad(f"expected a number, got {type(value).__name__}")
    if dtype == pl.Int64():
        if isinstance(value, bool):
            raise _Bad("expected an integer, got a boolean")
        if isinstance(value, int):
            return _checked_int(value)
        if isinstance(value, float) and value.is_integer():
            return _checked_int(int(value))
        if isinstance(value, str) and _ASCII_INT.fullmatch(text := value.strip()):
            if len(text.lstrip("+-0")) > 19:  # longer than any 64-bit integer (and int() refuses > 4300 digits)
                raise _Reject(f"{text[:30]} does not fit in 64 bits")
            return _checked_int(int(text))
        raise _Bad(f"expected an integer, got {_text(str(value), _TextPolicy(False))[:30]!r}")
    if dtype == pl.Boolean():
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _Bad(f"expected a boolean, got {_text(str(value), _TextPolicy(False))[:30]!r}")
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        if isinstance(value, (str, dict)) and not isinstance(inner, pl.List):
            value = [value]
        if not isinstance(value, list):
            raise _Bad(f"expected a list, got {type(value).__name__}")
        out = []
        for element in value:
            try:
                out.append(_coerce(element, inner, policy))
            except _Bad:
                continue  # one odd element of a list is dropped, not the record
        return out
    if isinstance(dtype, pl.Struct):
        if not isinstance(value, dict):
            raise _Bad(f"expected an object, got {type(value).__name__}")
        result = {}
        for fld in dtype.fields:
            try:
                result[fld.name] = _coerce(value.get(fld.name), fld.dtype, policy)
            except _Bad:
                result[fld.name] = None
        return result
    raise _Bad(f"unsupported type {dtype}")


def coerce_record(
    obj: dict[str, Any],
    schema: dict[str, pl.DataType],
    required: tuple[str, ...],
    nulled: dict[str, int],
    repaired: dict[str, int] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Coerce a decoded record to the raw schema.

    A wrong type in a required field (ids, rating) rejects the record with the reason; in any other field the
    value becomes null and is counted in ``nulled`` (so the loss is visible, yet one odd ``vote`` does not cost
    a review). An integer beyond 64 bits rejects the record whatever the field: no column can hold it, and
    silently nulling a timestamp would turn it into a misleading "missing timestamp". Undecodable bytes in
    an id reject the record (replacing them would merge distinct ids); in free text they become U+FFFD and
    are counted in ``repaired``.
    """
    row: dict[str, Any] = {}
    for name, dtype in schema.items():
        policy = _TextPolicy(exact=name in ID_FIELDS)
        try:
            row[name] = _coerce(obj.get(name), dtype, policy)
        except _Reject as exc:
            return row, f"integer out of range: {name} {exc}"
        except _Bad as exc:
            if name in required:
                return row, f"{_REQUIRED_REASON.get(name, 'invalid ' + name)}: {name} {exc}"
            nulled[name] = nulled.get(name, 0) + 1
            row[name] = None
        if policy.repaired and repaired is not None:
            repaired[name] = repaired.get(name, 0) + 1
    return row, None
