"""Read a (gzipped) JSON-lines dump as newline-aligned byte chunks, with bounded memory.

Decompression runs in a background thread: zlib releases the GIL, so one core inflates while the other
parses. A bounded queue caps memory at a few chunks whatever the file size. A truncated or corrupt gzip
stream is not an exception for the caller: everything decoded before the damage is yielded and the final
``ReadStatus`` says what happened and where.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class Chunk:
    """Whole lines of the decompressed stream; ``first_line`` is the 1-based number of the first one."""

    data: bytes
    first_line: int
    n_lines: int


@dataclass
class ReadStatus:
    """How reading ended: ``complete`` unless the stream was truncated or corrupt."""

    complete: bool = True
    problem: str | None = None
    compressed_bytes: int = 0
    decompressed_bytes: int = 0
    lines: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _count_lines(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


class _Inflater:
    """Decompresses raw blocks; handles multi-member gzip files (``cat a.gz b.gz``) as one stream."""

    def __init__(self, gzipped: bool) -> None:
        self._gzipped = gzipped
        self._new()

    def _new(self) -> None:
        self._d = zlib.decompressobj(wbits=31) if self._gzipped else None

    def feed(self, block: bytes) -> bytes:
        if self._d is None:
            return block
        out = [self._d.decompress(block)]
        while self._d.eof and self._d.unused_data:
            rest = self._d.unused_data
            self._new()
            out.append(self._d.decompress(rest))
        return b"".join(out)

    def finished_cleanly(self) -> bool:
        return self._d is None or self._d.eof


def iter_chunks(path: Path | str, chunk_bytes: int = 8 << 20, status: ReadStatus | None = None) -> Iterator[Chunk]:
    """Yield newline-aligned chunks of about ``chunk_bytes`` decompressed bytes.

    ``status`` (if given) is filled in as reading proceeds and is final once the iterator is exhausted.
    """
    path = Path(path)
    status = status if status is not None else ReadStatus()
    out_q: queue.Queue[tuple[bytes, bool, int] | BaseException | None] = queue.Queue(maxsize=3)
    stop = threading.Event()

    def producer() -> None:
        try:
            inflater = _Inflater(is_gzip(path))
            pending = bytearray()
            with open(path, "rb") as handle:
                while not stop.is_set():
                    block = handle.read(_READ_BLOCK)
                    if not block:
                        break
                    status.compressed_bytes += len(block)
                    try:
                        pending += inflater.feed(block)
                    except zlib.error as exc:
                        status.complete = False
                        status.problem = (
                            f"corrupt compressed data after {status.compressed_bytes:,} compressed bytes: {exc}; "
                            "kept the lines decoded before it"
                        )
                        break
                    while len(pending) >= chunk_bytes:
                        cut = pending.rfind(b"\n", 0, chunk_bytes) + 1 or pending.find(b"\n", chunk_bytes) + 1
                        if not cut:
                            break  # one line longer than a chunk: wait for its end
                        piece = bytes(pending[:cut])
                        out_q.put((piece, False, _count_lines(piece)))  # counted here, off the parsing thread
                        del pending[:cut]
            if status.complete and not inflater.finished_cleanly():
                status.complete = False
                status.problem = (
                    f"truncated gzip: the stream ends after {status.compressed_bytes:,} compressed bytes without "
                    "its end marker; kept every complete line read before the cut"
                )
            if pending:
                tail = bytes(pending)
                out_q.put((tail, not status.complete, _count_lines(tail)))
            out_q.put(None)
        except BaseException as exc:  # surfaced in the consumer, with its traceback
            out_q.put(exc)

    thread = threading.Thread(target=producer, name=f"inflate-{path.name}", daemon=True)
    thread.start()
    next_line = 1
    try:
        while True:
            item = out_q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            data, is_cut_tail, n = item
            if is_cut_tail and not data.endswith(b"\n"):
                # The last line of a truncated stream is cut mid-way: hand it on so it is rejected with
                # its line number rather than vanishing.
                status.extra["cut_last_line"] = next_line + _count_lines(data) - 1
            status.decompressed_bytes += len(data)
            status.lines += n
            yield Chunk(data=data, first_line=next_line, n_lines=n)
            next_line += n
    finally:
        stop.set()
        # Drain so a blocked producer can finish when the consumer stops early.
        while thread.is_alive():
            try:
                out_q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
