"""Turn chunks of JSON lines into raw frames: a fast vectorized path, and a forgiving per-line path.

Real dumps are overwhelmingly clean, so each chunk is first handed whole to polars' multi-threaded NDJSON
reader. Only when that fails (a malformed line, a wrong type, a blank line) is the chunk bisected, so a
single bad line costs O(log n) small re-reads plus one per-line decode of a few dozen lines, rather than
turning the whole file into a slow Python loop.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from rec_pipeline.ingest.formats import SourceFormat

_SMALL_BLOCK_LINES = 64
RAW_SNIPPET_CHARS = 500


@dataclass
class ParsedBlock:
    """Raw rows (the format's raw schema plus ``source_line``) and the lines that could not be decoded."""

    frame: pl.DataFrame
    rejected: list[dict[str, Any]] = field(default_factory=list)
    empty_lines: int = 0
    nulled_fields: dict[str, int] = field(default_factory=dict)


def _with_lines(frame: pl.DataFrame, first_line: int) -> pl.DataFrame:
    return frame.with_columns(pl.int_range(first_line, first_line + frame.height, dtype=pl.Int64).alias("source_line"))


def _empty_frame(fmt: SourceFormat) -> pl.DataFrame:
    return pl.DataFrame(schema={**fmt.raw_schema, "source_line": pl.Int64()})


def parse_block(data: bytes, first_line: int, fmt: SourceFormat, source_file: str, required: tuple[str, ...], n_lines: int | None = None) -> ParsedBlock:
    """Parse whole lines ``data`` whose first line has number ``first_line`` (``n_lines`` if already counted)."""
    if n_lines is None:
        n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
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
    return _merge_all(parts, fmt)


_BLOCK_LINES = 2048


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


def _try_fast(data: bytes, n_lines: int, fmt: SourceFormat, first_line: int) -> ParsedBlock | None:
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=fmt.raw_schema)
    except Exception:  # polars raises several error types for bad input; the slow path says which line
        return None
    # polars skips blank lines; a row count that differs means line numbers would shift: take the slow path.
    return ParsedBlock(_with_lines(frame, first_line)) if frame.height == n_lines else None


def _parse_bisecting(data: bytes, first_line: int, fmt: SourceFormat, source_file: str, required: tuple[str, ...]) -> ParsedBlock:
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
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
        _parse_bisecting(left, first_line, fmt, source_file, required),
        _parse_bisecting(right, first_line + left.count(b"\n"), fmt, source_file, required),
    )


def _merge_all(parts: list[ParsedBlock], fmt: SourceFormat) -> ParsedBlock:
    if not parts:
        return ParsedBlock(_empty_frame(fmt))
    nulled: dict[str, int] = {}
    for part in parts:
        for key, value in part.nulled_fields.items():
            nulled[key] = nulled.get(key, 0) + value
    return ParsedBlock(
        frame=pl.concat([p.frame for p in parts], how="vertical"),
        rejected=[r for p in parts for r in p.rejected],
        empty_lines=sum(p.empty_lines for p in parts),
        nulled_fields=nulled,
    )


def _merge(a: ParsedBlock, b: ParsedBlock) -> ParsedBlock:
    nulled = dict(a.nulled_fields)
    for key, value in b.nulled_fields.items():
        nulled[key] = nulled.get(key, 0) + value
    return ParsedBlock(
        frame=pl.concat([a.frame, b.frame], how="vertical"),
        rejected=a.rejected + b.rejected,
        empty_lines=a.empty_lines + b.empty_lines,
        nulled_fields=nulled,
    )


def rejection(source_file: str, line_no: int, reason: str, raw: bytes | str) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return {"source_file": source_file, "source_line": line_no, "reason": reason, "raw": text[:RAW_SNIPPET_CHARS]}


def _parse_lines_slowly(data: bytes, first_line: int, fmt: SourceFormat, source_file: str, required: tuple[str, ...]) -> ParsedBlock:
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    nulled: dict[str, int] = {}
    empty = 0
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    for offset, line in enumerate(lines):
        line_no = first_line + offset
        if not line.strip():
            empty += 1
            continue
        try:
            obj = fmt.decode_line(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            reason = "malformed JSON" if not fmt.python_literals else "malformed record"
            rejected.append(rejection(source_file, line_no, f"{reason}: {str(exc)[:120]}", line))
            continue
        if not isinstance(obj, dict):
            rejected.append(rejection(source_file, line_no, f"not a JSON object but {type(obj).__name__}", line))
            continue
        row, problem = coerce_record(obj, fmt.raw_schema, required, nulled)
        if problem is not None:
            rejected.append(rejection(source_file, line_no, problem, line))
            continue
        row["source_line"] = line_no
        rows.append(row)
    frame = pl.DataFrame(rows, schema={**fmt.raw_schema, "source_line": pl.Int64()}, orient="row") if rows else _empty_frame(fmt)
    return ParsedBlock(frame, rejected, empty, nulled)


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
    pass


def _coerce(value: Any, dtype: pl.DataType) -> Any:
    if value is None:
        return None
    if dtype == pl.String():
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Bad(f"expected text, got {type(value).__name__}")
    if dtype == pl.Float64():
        if isinstance(value, bool):
            raise _Bad("expected a number, got a boolean")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.replace(",", "").strip())
            except ValueError:
                raise _Bad(f"expected a number, got {value[:30]!r}") from None
        raise _Bad(f"expected a number, got {type(value).__name__}")
    if dtype == pl.Int64():
        if isinstance(value, bool):
            raise _Bad("expected an integer, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        raise _Bad(f"expected an integer, got {str(value)[:30]!r}")
    if dtype == pl.Boolean():
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _Bad(f"expected a boolean, got {str(value)[:30]!r}")
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        if isinstance(value, (str, dict)) and not isinstance(inner, pl.List):
            value = [value]
        if not isinstance(value, list):
            raise _Bad(f"expected a list, got {type(value).__name__}")
        out = []
        for element in value:
            try:
                out.append(_coerce(element, inner))
            except _Bad:
                continue  # one odd element of a list is dropped, not the record
        return out
    if isinstance(dtype, pl.Struct):
        if not isinstance(value, dict):
            raise _Bad(f"expected an object, got {type(value).__name__}")
        result = {}
        for fld in dtype.fields:
            try:
                result[fld.name] = _coerce(value.get(fld.name), fld.dtype)
            except _Bad:
                result[fld.name] = None
        return result
    raise _Bad(f"unsupported type {dtype}")


def coerce_record(obj: dict[str, Any], schema: dict[str, pl.DataType], required: tuple[str, ...], nulled: dict[str, int]) -> tuple[dict[str, Any], str | None]:
    """Coerce a decoded record to the raw schema.

    A wrong type in a required field (ids, rating) rejects the record with the reason; in any other field the
    value becomes null and is counted in ``nulled`` (so the loss is visible, yet one odd ``vote`` does not cost
    a review).
    """
    row: dict[str, Any] = {}
    for name, dtype in schema.items():
        try:
            row[name] = _coerce(obj.get(name), dtype)
        except _Bad as exc:
            if name in required:
                return row, f"{_REQUIRED_REASON.get(name, 'invalid ' + name)}: {name} {exc}"
            nulled[name] = nulled.get(name, 0) + 1
            row[name] = None
    return row, None


