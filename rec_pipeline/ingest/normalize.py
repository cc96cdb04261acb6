"""Stream one dump file into the common schema as Parquet, quarantining what cannot be used.

Memory stays bounded by a few chunks whatever the file size: chunks are parsed, normalized and validated a
few at a time (``IngestOptions.parse_workers`` threads, one chunk each) and appended to a Parquet writer in their
order, and no line longer than ``IngestOptions.max_line_bytes`` is ever held. Every line ends up either in the
output or in the rejected file with its line number and reason, and the report counts both: no content of a
single line can abort the dump.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rec_pipeline.atomic import atomic_path
from rec_pipeline.ingest.chunks import DEFAULT_MAX_LINE_BYTES, Chunk, ReadStatus, iter_chunks
from rec_pipeline.ingest.formats import SourceFormat, format_for, sniff_format
from rec_pipeline.ingest.lines import line_texts, parse_block, rejection
from rec_pipeline.ingest.sources import Kind
from rec_pipeline.schema import ITEM_SCHEMA, RATING_MAX, RATING_MIN, REJECTED_SCHEMA, REVIEW_SCHEMA

# Anything above this is not a plausible seconds timestamp (year 5138) but is one in milliseconds.
_MS_THRESHOLD = 100_000_000_000
# Release detection reads the head of the file until it has enough records, but never more than this.
_SNIFF_SCAN_LINES = 10_000
_SNIFF_SCAN_BYTES = 64 << 20
_CONTENT_BYTE = re.compile(rb"[^ \t\r\n]")
# Rejections are few and small (their raw text is cut to 500 characters): collect this many per row group.
_REJECTED_BATCH = 20_000
# Parsing threads when not configured (never more than the cores): two keep two cores busy beside the inflate and
# Parquet threads; each further one adds a chunk and its frame to memory, and polars spreads each read over its pool.
_DEFAULT_PARSE_WORKERS = 2


@dataclass(frozen=True)
class IngestOptions:
    """Streaming settings.

    ``max_line_bytes`` bounds memory against hostile input (a gzip bomb expanding to one 3 GB line): longer
    lines are skipped while streaming, never held, and rejected as "line too long". Decoding one line may take
    up to ~30x its size in Python objects. Otherwise peak memory is a number of chunks that does not grow with
    the file: three inflated ahead, ``parse_workers + 1`` being parsed (each with its frame), two being written.
    ``inflater`` names the gzip inflate library ("isal", "zlib-ng", "zlib"); None takes the fastest installed.
    ``parse_workers`` chunks are parsed at once, each by its own thread (None: two, or one on a single core):
    one chunk at a time leaves a core idle, as only polars' read of a chunk is spread over its threads, not the
    checks, normalization and conversion that follow. The output does not depend on it.
    """

    chunk_bytes: int = 8 << 20
    progress_every_s: float = 10.0
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    inflater: str | None = None
    parse_workers: int | None = None

    def resolved_parse_workers(self) -> int:
        if self.parse_workers is not None:
            return max(1, self.parse_workers)
        return min(_DEFAULT_PARSE_WORKERS, os.cpu_count() or 1)


@dataclass
class IngestReport:
    """What happened to every line of one dump; serialized into asset metadata and the summary."""

    source_file: str
    kind: str
    release: str = "unknown"
    lines: int = 0
    rows_out: int = 0
    empty_lines: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    nulled_fields: dict[str, int] = field(default_factory=dict)
    ms_timestamps_converted: int = 0
    text_repaired: dict[str, int] = field(default_factory=dict)  # values whose non-UTF-8 bytes became U+FFFD
    slow_path_lines: int = 0  # lines decoded one by one in Python rather than by the vectorized reader
    bom_stripped: bool = False
    inflater: str = ""  # the gzip inflate library that read the file (the fastest installed, unless configured)
    complete: bool = True
    problem: str | None = None
    compressed_bytes: int = 0
    decompressed_bytes: int = 0
    seconds: float = 0.0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejected_total"] = self.rejected_total
        return out


class _BackgroundWriter:
    """A Parquet writer fed through a small queue from the parsing thread.

    Encoding and compressing a chunk costs about as much as parsing it; pyarrow releases the GIL while it
    works, so writing chunk n overlaps parsing chunk n+1. The queue bound keeps memory at a couple of chunks.
    """

    def __init__(self, path: Path, schema: pa.Schema, **options: Any) -> None:
        self._writer = pq.ParquetWriter(path, schema, **options)
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"parquet-{path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_table(table)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread by close()
                    self._error = exc

    def write_table(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise self._error


def _arrow_schema(schema: dict[str, pl.DataType]) -> pa.Schema:
    return pl.DataFrame(schema=schema).to_arrow().schema


def _reason_key(reason: str) -> str:
    """Group rejection reasons for counting ("malformed JSON: Expecting ..." -> "malformed JSON")."""
    return reason.split(":", 1)[0]


def _validate_reviews(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Split normalized reviews into kept and rejected (with a reason); convert ms timestamps to seconds."""
    is_ms = pl.col("timestamp") > _MS_THRESHOLD
    frame = frame.with_columns(
        pl.when(is_ms).then(pl.col("timestamp") // 1000).otherwise(pl.col("timestamp")).alias("timestamp"),
        is_ms.fill_null(False).alias("_ms"),
        pl.col("user_id").str.strip_chars(),
        pl.col("item_id").str.strip_chars(),
    )
    reason = (
        pl.when(pl.col("user_id").is_null() | (pl.col("user_id") == ""))
        .then(pl.lit("missing user id"))
        .when(pl.col("item_id").is_null() | (pl.col("item_id") == ""))
        .then(pl.lit("missing item id"))
        .when(pl.col("rating").is_null() | pl.col("rating").is_nan())
        .then(pl.lit("missing rating"))
        .when((pl.col("rating") < RATING_MIN) | (pl.col("rating") > RATING_MAX))
        .then(pl.lit("rating out of range"))
        .when(pl.col("timestamp").is_null())
        .then(pl.lit("missing timestamp"))
        .when(pl.col("timestamp") < 0)
        .then(pl.lit("timestamp out of range"))
    )
    frame = frame.with_columns(reason.alias("_reason"))
    converted = int(frame.filter(pl.col("_reason").is_null())["_ms"].sum())
    bad = frame.filter(pl.col("_reason").is_not_null())
    good = frame.filter(pl.col("_reason").is_null()).drop("_reason", "_ms")
    return good, bad.select("source_line", "_reason", "rating", "user_id", "item_id"), converted


def _validate_items(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    frame = frame.with_columns(pl.col("item_id").str.strip_chars())
    reason = pl.when(pl.col("item_id").is_null() | (pl.col("item_id") == "")).then(pl.lit("missing item id"))
    frame = frame.with_columns(reason.alias("_reason"))
    bad = frame.filter(pl.col("_reason").is_not_null())
    good = frame.filter(pl.col("_reason").is_null()).drop("_reason")
    return good, bad.select("source_line", "_reason"), 0


def ingest_dump(
    path: Path | str,
    kind: Kind,
    out_path: Path | str,
    rejected_path: Path | str,
    options: IngestOptions = IngestOptions(),
    logger: logging.Logger | None = None,
) -> IngestReport:
    """Normalize one reviews or metadata dump into ``out_path`` (Parquet) and ``rejected_path``.

    Both files are written atomically; the release is detected from the content of the first lines.
    """
    path = Path(path)
    log = logger or logging.getLogger(__name__)
    started = time.perf_counter()
    report = IngestReport(source_file=path.name, kind=kind)
    target_schema = REVIEW_SCHEMA if kind == "reviews" else ITEM_SCHEMA
    status = ReadStatus()
    reasons: Counter[str] = Counter()
    nulled: Counter[str] = Counter()
    repaired: Counter[str] = Counter()
    fmt = _detect_format(path, kind, options)
    if fmt is None:
        fmt = format_for("2018", kind)  # no line with any content (all blank or too long): any format reads that
    else:
        report.release = fmt.release
        log.info("%s: detected the %s release's %s format", path.name, fmt.release, kind)
    last_log = started
    pending_rejections: list[dict[str, Any]] = []
    parser = _ChunkParser(fmt, kind, path.name, options.max_line_bytes)

    with atomic_path(out_path) as tmp_out, atomic_path(rejected_path) as tmp_rej:
        # zstd level 1: near the ratio of the default level at a fraction of the CPU, which ingest is bound by.
        writer = _BackgroundWriter(tmp_out, _arrow_schema(target_schema), compression="zstd", compression_level=1)
        rej_writer = pq.ParquetWriter(tmp_rej, _arrow_schema(REJECTED_SCHEMA), compression="zstd")
        try:
            with (
                closing(
                    iter_chunks(path, options.chunk_bytes, status, options.max_line_bytes, options.inflater)
                ) as chunks,
                closing(_parsed_in_order(chunks, parser.parse, options.resolved_parse_workers())) as parsed_chunks,
            ):
                for parsed in parsed_chunks:
                    report.ms_timestamps_converted += parsed.ms_timestamps_converted
                    report.empty_lines += parsed.empty_lines
                    report.slow_path_lines += parsed.slow_lines
                    nulled.update(parsed.nulled_fields)
                    repaired.update(parsed.text_repaired)
                    if parsed.rejected:
                        reasons.update(_reason_key(r["reason"]) for r in parsed.rejected)
                        pending_rejections += parsed.rejected
                        if len(pending_rejections) >= _REJECTED_BATCH:
                            _write_rejections(rej_writer, pending_rejections)
                    if parsed.table is not None:
                        writer.write_table(parsed.table)
                        report.rows_out += parsed.table.num_rows
                    now = time.perf_counter()
                    if now - last_log >= options.progress_every_s:
                        log.info(
                            "%s: %s lines read, %s rows kept, %s rejected, %.0f MB decompressed",
                            path.name,
                            f"{status.lines:,}",
                            f"{report.rows_out:,}",
                            f"{sum(reasons.values()):,}",
                            status.decompressed_bytes / 1e6,
                        )
                        last_log = now
            _write_rejections(rej_writer, pending_rejections)
        finally:
            writer.close()
            rej_writer.close()

    report.lines = status.lines
    report.complete = status.complete
    report.problem = status.problem
    if status.lines == 0:
        report.problem = "empty file: no lines at all"
    report.compressed_bytes = status.compressed_bytes
    report.decompressed_bytes = status.decompressed_bytes
    report.rejected = dict(sorted(reasons.items()))
    report.nulled_fields = dict(sorted(nulled.items()))
    report.text_repaired = dict(sorted(repaired.items()))
    report.bom_stripped = status.bom_stripped
    report.inflater = status.inflater
    report.seconds = round(time.perf_counter() - started, 3)
    if report.problem:
        log.warning("%s: %s", path.name, report.problem)
    log.info(
        "%s: done: %s lines, %s rows kept, %s rejected (%s), %s empty lines, %.1f s (inflated with %s)",
        path.name,
        f"{report.lines:,}",
        f"{report.rows_out:,}",
        f"{report.rejected_total:,}",
        report.rejected or "none",
        report.empty_lines,
        report.seconds,
        report.inflater,
    )
    return report


def _write_rejections(writer: pq.ParquetWriter, rows: list[dict[str, Any]]) -> None:
    """Write the collected rejections as one row group and empty the list (a row group per chunk costs more)."""
    if rows:
        writer.write_table(pl.DataFrame(rows, schema=REJECTED_SCHEMA).to_arrow())
        rows.clear()


def _long_line_rejection(source_file: str, chunk: Chunk, max_line_bytes: int) -> dict[str, Any]:
    assert chunk.long_line is not None
    reason = f"line too long: {chunk.long_line.length} bytes > max_line_bytes ({max_line_bytes})"
    return rejection(source_file, chunk.first_line, reason, chunk.long_line.prefix)


def _non_blank_lines(data: bytes) -> Iterator[bytes]:
    """Lines of ``data`` with some content; a regex search jumps over runs of blank lines at C speed."""
    position = 0
    while (found := _CONTENT_BYTE.search(data, position)) is not None:
        start = data.rfind(b"\n", 0, found.start()) + 1
        end = data.find(b"\n", found.start())
        end = len(data) if end < 0 else end
        yield data[start:end]
        position = end + 1


def _head_lines(path: Path, options: IngestOptions) -> Generator[bytes, None, None]:
    """Non-blank lines from the head of the file, within the sniffing budget (_SNIFF_SCAN_LINES/_BYTES)."""
    lines = scanned = 0
    with closing(
        iter_chunks(path, options.chunk_bytes, max_line_bytes=options.max_line_bytes, inflater=options.inflater)
    ) as chunks:
        for chunk in chunks:
            for line in _non_blank_lines(chunk.data):
                yield line
                lines += 1
                scanned += len(line)
                if lines >= _SNIFF_SCAN_LINES or scanned >= _SNIFF_SCAN_BYTES:
                    return


def _detect_format(path: Path, kind: Kind, options: IngestOptions) -> SourceFormat | None:
    """The release's format, from the first records of the file; None when no line has any content at all.

    Read in a separate pass over the head of the file (usually part of the first chunk), so that blank lines,
    overlong lines or garbage at the top cannot decide the format or abort the ingest.
    """
    seen_content = False

    def sample() -> Generator[bytes, None, None]:
        nonlocal seen_content
        for line in _head_lines(path, options):
            seen_content = True
            yield line

    with closing(sample()) as lines:
        try:
            return sniff_format(kind, lines)
        except ValueError:
            if not seen_content:
                return None
            raise


@dataclass
class _ParsedChunk:
    """One chunk's share of the output (Parquet-ready rows, rejections in line order) and of the report.

    ``dirty`` is the hint for the next chunk (None for a skipped overlong line, which passes the hint on);
    ``hint`` is the one this chunk was parsed with.
    """

    table: pa.Table | None
    rejected: list[dict[str, Any]]
    hint: bool
    dirty: bool | None = None
    read_whole: bool = False
    empty_lines: int = 0
    slow_lines: int = 0
    ms_timestamps_converted: int = 0
    nulled_fields: dict[str, int] = field(default_factory=dict)
    text_repaired: dict[str, int] = field(default_factory=dict)

    def valid_after(self, previous_dirty: bool) -> bool:
        """Whether this is the result the chunk gets when the chunk before it ended ``previous_dirty``.

        The hint only decides whether the strict read is tried: a wrong hint changes nothing for a skipped line,
        nor when it said to try the strict read and that read failed (skipping it leads to the same place).
        """
        if self.dirty is None or self.hint == previous_dirty:
            return True
        return not self.hint and not self.read_whole


@dataclass(frozen=True)
class _ChunkParser:
    """Everything done to one chunk before it is written; it touches no shared state, so threads can run it."""

    fmt: SourceFormat
    kind: Kind
    source_file: str
    max_line_bytes: int

    def parse(self, chunk: Chunk, likely_dirty: bool) -> _ParsedChunk:
        if chunk.long_line is not None:
            rejected = [_long_line_rejection(self.source_file, chunk, self.max_line_bytes)]
            return _ParsedChunk(table=None, rejected=rejected, hint=likely_dirty)
        fmt = self.fmt
        block = parse_block(
            chunk.data, chunk.first_line, fmt, self.source_file, fmt.required, chunk.n_lines, likely_dirty
        )
        validate = _validate_reviews if self.kind == "reviews" else _validate_items
        good, bad_rows, converted = validate(block.frame.select(*fmt.normalize(), pl.col("source_line")))
        rejected = list(block.rejected)
        if bad_rows.height:
            numbers, reasons_of = bad_rows["source_line"].to_list(), bad_rows["_reason"].to_list()
            raws = line_texts(chunk.data, [n - chunk.first_line for n in numbers], block.line_bounds)
            rejected += [
                rejection(self.source_file, n, why, raw) for n, why, raw in zip(numbers, reasons_of, raws, strict=True)
            ]
        target_schema = REVIEW_SCHEMA if self.kind == "reviews" else ITEM_SCHEMA
        table = good.select(list(target_schema)).cast(target_schema).to_arrow() if good.height else None
        return _ParsedChunk(
            table=table,
            rejected=rejected,
            hint=likely_dirty,
            dirty=block.dirty,
            read_whole=block.read_whole,
            empty_lines=block.empty_lines,
            slow_lines=block.slow_lines,
            ms_timestamps_converted=converted,
            nulled_fields=block.nulled_fields,
            text_repaired=block.text_repaired,
        )


def _parsed_in_order(
    chunks: Iterable[Chunk], parse: Callable[[Chunk, bool], _ParsedChunk], workers: int
) -> Generator[_ParsedChunk, None, None]:
    """``parse`` of each chunk, in chunk order, by ``workers`` threads with at most ``workers + 1`` chunks in flight.

    polars and pyarrow release the GIL while they work, so a second thread parses the next chunk while the first
    is in the steps that keep one core busy (all but polars' read); one thread alone left a core idle. Each parse
    takes a hint, whether the chunk before was dirty (``parse_block``'s ``likely_dirty``), which a chunk parsed
    ahead cannot know yet: it is guessed from the last chunk consumed, and a chunk whose result the wrong guess
    could change is parsed again, here, with the true hint. So the output is the serial one whatever the number of
    threads or their timing, and the guess is wrong only where the input turns from clean to dirty or back. Only
    this thread draws from ``chunks``; stopping early cancels what has not started and waits for what has.
    """
    dirty = False  # the true hint for the next chunk to come out
    if workers <= 1:
        for chunk in chunks:
            parsed = parse(chunk, dirty)
            dirty = dirty if parsed.dirty is None else parsed.dirty
            yield parsed
        return
    ahead: deque[tuple[Chunk, Future[_ParsedChunk]]] = deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="parse-chunk")
    try:
        source = iter(chunks)
        while True:
            while len(ahead) <= workers and (upcoming := next(source, None)) is not None:
                ahead.append((upcoming, pool.submit(parse, upcoming, dirty)))
            if not ahead:
                return
            chunk, future = ahead.popleft()
            parsed = future.result()
            if not parsed.valid_after(dirty):
                parsed = parse(chunk, dirty)
            dirty = dirty if parsed.dirty is None else parsed.dirty
            yield parsed
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
