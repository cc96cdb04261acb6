"""Turn chunks of JSON lines into raw frames: a fast vectorized path, and a forgiving per-line path.

Real dumps are overwhelmingly clean, so each chunk is first handed whole to polars' multi-threaded NDJSON
reader. Only when that fails (a malformed line, a wrong type) is the chunk bisected, so a single bad line
costs O(log n) small re-reads plus one per-line decode of a few dozen lines, rather than turning the whole
file into a slow Python loop. Blank lines, which polars skips, are located with one vectorized scan and do
not leave the fast path.

A line's verdict must not depend on its neighbours (which decide whether it is read by polars or by the
per-line decoder), so the per-line decoder is the reference and the fast path is trusted only where its
verdict would be the same: polars refuses outright a number, boolean, list or object of the wrong type (the
per-line decoder then decides), and the one value it accepts that the decoder rejects, an id that is not JSON
text (a list ``asin`` becomes ``'["B1"]'``), is spotted in its output and sent to the decoder. Free-text
fields may still differ in form, not in verdict: polars writes a list given as a summary as its JSON text,
the decoder nulls it and counts it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from rec_pipeline.ingest.formats import SourceFormat

_SMALL_BLOCK_LINES = 64
_BLOCK_LINES = 2048
RAW_SNIPPET_CHARS = 500
# Ids are keys: a replaced byte would merge distinct users or items, so an id must be exact text or nothing.
ID_FIELDS = frozenset({"reviewerID", "user_id", "asin", "parent_asin"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# ASCII only: str.isdigit() and float() also take "٥" (Arabic-Indic five) or "５" (fullwidth), which no dump writes.
_ASCII_INT = re.compile(r"[+-]?[0-9]+")
_ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SURROGATE = re.compile("[\ud800-\udfff]")
# What polars skips as a blank line (other control characters make it fail, and the per-line decoder decides).
_NOT_BLANK = ~np.isin(np.arange(256), [ord(" "), ord("\t"), ord("\r"), ord("\n")])


@dataclass
class ParsedBlock:
    """Raw rows (the format's raw schema plus ``source_line``) and the lines that could not be decoded.

    ``slow_lines`` counts lines decoded one by one in Python (the cost that hostile input must not inflate);
    ``text_repaired`` counts, per field, text values whose undecodable bytes were replaced by U+FFFD.
    """

    frame: pl.DataFrame
    rejected: list[dict[str, Any]] = field(default_factory=list)
    empty_lines: int = 0
    nulled_fields: dict[str, int] = field(default_factory=dict)
    slow_lines: int = 0
    text_repaired: dict[str, int] = field(default_factory=dict)


def _empty_frame(fmt: SourceFormat) -> pl.DataFrame:
    return pl.DataFrame(schema={**fmt.raw_schema, "source_line": pl.Int64()})


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def parse_block(
    data: bytes, first_line: int, fmt: SourceFormat, source_file: str, required: tuple[str, ...], n_lines: int | None = None
) -> ParsedBlock:
    """Parse whole lines ``data`` whose first line has number ``first_line`` (``n_lines`` if already counted)."""
    if n_lines is None:
        n_lines = _count_lines(data)
    if n_lines == 0:
        return ParsedBlock(_empty_frame(fmt))
    if fmt.python_literals:
        return _parse_lines_slowly(data, first_line, fmt, source_file, required)
    whole = _try_fast(data, n_lines, fmt, first_line)
    if whole is not None:
        return whole
    # Something in this chunk is bad. Re-read it in blocks (one vectorized newline scan finds the cuts), and
    # bisect only the blocks that fail: a few bad lines cost a few small re-reads, not a per-line Python pass.
    cuts = _line_cuts(data, _BLOCK_LINES)
    parts = [_parse_bisecting(data[a:b], line, fmt, source_file, required) for a, b, line in _blocks(cuts, first_line, len(data))]
    return _merge(parts, fmt)


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
    at_newlines = counts[np.flatnonzero(buf == 10)]
    if data and not data.endswith(b"\n"):
        at_newlines = np.append(at_newlines, counts[-1])
    return np.diff(at_newlines, prepend=0) == 0


def _try_fast(data: bytes, n_lines: int, fmt: SourceFormat, first_line: int) -> ParsedBlock | None:
    """All lines of ``data`` read by polars, or None when any line needs the per-line decoder's verdict."""
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=fmt.raw_schema)
    except Exception:  # polars raises several error types for bad input; the slow path says which line
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
    if _fast_path_disagrees(frame, fmt):
        return None
    return ParsedBlock(frame, empty_lines=empty)


def _fast_path_disagrees(frame: pl.DataFrame, fmt: SourceFormat) -> bool:
    """True when some value polars read may not be what the per-line decoder reads (see the module docstring).

    polars writes a list, object or boolean given for a text field as its JSON text: a real id never starts
    with ``[`` or ``{`` and is never ``true``/``false``. It also writes a lone high surrogate escape
    (``"\\ud800"``) as U+0000, where the decoder rejects the id or repairs and counts the text. Such rows go
    to the decoder, which can tell (a true string passes); NUL is rare enough in real text to cost nothing.
    """
    if frame.height == 0:
        return False
    texts = [name for name, dtype in fmt.raw_schema.items() if dtype == pl.String()]
    checks = [pl.col(name).str.contains("\x00", literal=True) for name in texts]
    checks += [
        pl.col(name).str.starts_with("[") | pl.col(name).str.starts_with("{") | pl.col(name).is_in(["true", "false"])
        for name in texts
        if name in ID_FIELDS
    ]
    return bool(frame.select(pl.any_horizontal(checks).fill_null(False).any()).item()) if checks else False


def _parse_bisecting(data: bytes, first_line: int, fmt: SourceFormat, source_file: str, required: tuple[str, ...]) -> ParsedBlock:
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
    return {"source_file": source_file, "source_line": line_no, "reason": _storable(reason), "raw": _storable(text[:RAW_SNIPPET_CHARS])}


def _storable(text: str) -> str:
    """Text Parquet can store: a decoder's message may quote the undecodable bytes (as lone surrogates)."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _parse_lines_slowly(data: bytes, first_line: int, fmt: SourceFormat, source_file: str, required: tuple[str, ...]) -> ParsedBlock:
    rows: list[dict[str, Any]] = []
    raws: list[bytes] = []
    rejected: list[dict[str, Any]] = []
    nulled: dict[str, int] = {}
    repaired: dict[str, int] = {}
    starts, ends = _line_bounds(data)
    blank = _blank_lines(data)
    empty = int(blank.sum())  # skipped without a Python-level look: a flood of blank lines costs a vector scan
    decoded = 0
    start_list, end_list = starts.tolist(), ends.tolist()
    for index in np.flatnonzero(~blank).tolist():
        line = data[start_list[index] : end_list[index]]
        line_no = first_line + index
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
_REQUIRED_REASON = {
    "overall": "non-numeric rating",
    "rating": "non-numeric rating",
    "reviewerID": "invalid user id",
    "user_id": "invalid user id",
    "asin": "invalid item id",
    "parent_asin": "invalid item id",
}


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


def _coerce(value: Any, dtype: pl.DataType, policy: _TextPolicy) -> Any:
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
