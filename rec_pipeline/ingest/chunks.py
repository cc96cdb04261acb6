"""Read a (gzipped) JSON-lines dump as newline-aligned byte chunks, with bounded memory.

Decompression runs in a background thread: the inflate libraries release the GIL, so one core inflates while
the other parses. On a realistic dump that thread is the bound (about 40% of the ingest's CPU with zlib), so the
fastest installed drop-in for zlib's ``decompressobj`` is used: ISA-L (``isal``) or zlib-ng, else zlib itself
(``choose_inflater``; the bench compares them on the same file). A bounded queue caps memory at a few chunks
whatever the file size. A truncated or corrupt gzip
stream is not an exception for the caller: everything decoded before the damage is yielded and the final
``ReadStatus`` says what happened and where.

Memory is bounded by settings, never by the input: zlib is asked for at most ``_INFLATE_PIECE`` bytes at a
time (a 3 MB gzip bomb can expand to 3 GB in one call otherwise), and a line longer than ``max_line_bytes`` is
not collected: its bytes are counted and dropped until the next newline, and it comes out as a ``LongLine``.
"""

from __future__ import annotations

import importlib
import queue
import threading
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_LINE_BYTES = 16 << 20
LONG_LINE_PREFIX_BYTES = 200
_READ_BLOCK = 1 << 20
_INFLATE_PIECE = 4 << 20


@dataclass(frozen=True)
class InflateLibrary:
    """A module with zlib's ``decompressobj(wbits=31)`` interface (``max_length``, ``unconsumed_tail``, ``eof``)."""

    name: str
    module: str

    def load(self) -> ModuleType | None:
        return _import(self.module)

    def available(self) -> bool:
        return self.load() is not None


@cache
def _import(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


INFLATERS: dict[str, InflateLibrary] = {
    library.name: library
    for library in (
        InflateLibrary("isal", "isal.isal_zlib"),
        InflateLibrary("zlib-ng", "zlib_ng.zlib_ng"),
        InflateLibrary("zlib", "zlib"),
    )
}
# Fastest first, as measured by bench/ingest.py --inflaters on a realistic dump (see the README's Benchmarks).
INFLATER_PREFERENCE = ("isal", "zlib-ng", "zlib")


def choose_inflater(name: str | None = None) -> InflateLibrary:
    """The named inflate library if it is installed, else the fastest installed one (zlib is always there)."""
    if name is not None:
        if name not in INFLATERS:
            raise ValueError(f"unknown inflater {name!r}: choose one of {sorted(INFLATERS)}")
        if INFLATERS[name].available():
            return INFLATERS[name]
    return next(INFLATERS[n] for n in INFLATER_PREFERENCE if INFLATERS[n].available())


@dataclass(frozen=True)
class LongLine:
    """A line longer than ``max_line_bytes``, skipped unread: its length (without the newline) and first bytes."""

    length: int
    prefix: bytes


@dataclass(frozen=True)
class Chunk:
    """Whole lines of the decompressed stream; ``first_line`` is the 1-based number of the first one.

    A chunk either holds ``n_lines`` lines in ``data``, or stands for one skipped line (``long_line`` set,
    ``data`` empty, ``n_lines`` 1), so line numbers stay exact across skipped lines.
    """

    data: bytes
    first_line: int
    n_lines: int
    long_line: LongLine | None = None


@dataclass
class ReadStatus:
    """How reading ended: ``complete`` unless the stream was truncated or corrupt."""

    complete: bool = True
    problem: str | None = None
    compressed_bytes: int = 0
    decompressed_bytes: int = 0
    lines: int = 0
    long_lines: int = 0
    bom_stripped: bool = False
    inflater: str = ""


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _count_lines(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


class _Inflater:
    """Decompresses raw blocks in pieces of bounded size.

    Reads multi-member gzip files (``cat a.gz b.gz``) as one stream.
    """

    def __init__(self, gzipped: bool, library: InflateLibrary, max_piece: int = _INFLATE_PIECE) -> None:
        self._gzipped = gzipped
        self._max_piece = max_piece
        module = library.load()
        assert module is not None, f"{library.name} is not installed"
        self._module = module
        self.error: type[Exception] = module.error
        self._fed = 0  # compressed bytes fed before the current block
        self._member_start = 0  # compressed offset where the current gzip member begins
        self._member_out = 0  # bytes the current member has given so far
        self._new()

    def _new(self) -> None:
        self._d = self._module.decompressobj(wbits=31) if self._gzipped else None

    def feed(self, block: bytes) -> Iterator[bytes]:
        """Yield the decompressed bytes of ``block``, at most ``max_piece`` at a time."""
        if self._d is None:
            yield block
            return
        block_start = self._fed
        self._fed += len(block)
        data = block
        while True:
            out = self._d.decompress(data, self._max_piece)
            self._member_out += len(out)
            if out:
                yield out
            if self._d.eof:
                data = self._d.unused_data
                if not data:
                    return
                self._member_start, self._member_out = block_start + len(block) - len(data), 0
                self._new()
                continue
            data = self._d.unconsumed_tail
            # A full piece may leave output pending inside zlib even when all input was consumed: ask again.
            if not data and len(out) < self._max_piece:
                return

    def finished_cleanly(self) -> bool:
        return self._d is None or self._d.eof

    def truncated_tail(self, path: Path) -> bytes:
        """What zlib decodes of a truncated last member past what this library gave.

        ISA-L holds back the last decodable byte of a stream that stops mid-member (about one cut in five), and
        that byte may be the newline that completes a line. A truncated file is already the error path, so its
        last member is decoded again with zlib (the output before this library's end is counted, not kept).
        """
        if self._d is None or self._d.eof or self._module is zlib:
            return b""
        zlib_d, skip, tail = zlib.decompressobj(wbits=31), self._member_out, bytearray()
        with open(path, "rb") as handle:
            handle.seek(self._member_start)
            while block := handle.read(_READ_BLOCK):
                data = block
                while data:
                    try:
                        out = zlib_d.decompress(data, self._max_piece)
                    except zlib.error:
                        return bytes(tail)
                    dropped = min(skip, len(out))
                    skip -= dropped
                    tail += out[dropped:]
                    if len(tail) > self._max_piece or zlib_d.eof:
                        return bytes(tail[: self._max_piece])
                    data = zlib_d.unconsumed_tail
        return bytes(tail)


_Item = tuple[bytes, int] | LongLine | BaseException | None


def inflate_file(path: Path | str, library: InflateLibrary) -> int:
    """Decompress a whole file with the ingest's own loop and return its size: the floor under any ingest of it."""
    inflater, size = _Inflater(is_gzip(Path(path)), library), 0
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BLOCK):
            size += sum(len(piece) for piece in inflater.feed(block))
    return size


def iter_chunks(
    path: Path | str,
    chunk_bytes: int = 8 << 20,
    status: ReadStatus | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    inflater: str | None = None,
) -> Generator[Chunk, None, None]:
    """Yield newline-aligned chunks of about ``chunk_bytes`` decompressed bytes.

    Lines longer than ``max_line_bytes`` (newline not counted) are skipped without being held in memory and
    yielded as ``Chunk``s with ``long_line`` set. A UTF-8 byte order mark at the start of the stream is dropped.
    ``inflater`` names the inflate library (None: the fastest installed, see ``choose_inflater``).
    ``status`` (if given) is filled in as reading proceeds and is final once the iterator is exhausted.
    """
    path = Path(path)
    status = status if status is not None else ReadStatus()
    library = choose_inflater(inflater)
    status.inflater = library.name
    out_q: queue.Queue[_Item] = queue.Queue(maxsize=3)
    stop = threading.Event()

    def producer() -> None:
        try:
            _produce(path, chunk_bytes, max_line_bytes, status, out_q, stop, library)
        except BaseException as exc:  # noqa: BLE001 - surfaced in the consumer, with its traceback
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
            if isinstance(item, LongLine):
                status.long_lines += 1
                status.lines += 1
                status.decompressed_bytes += item.length
                yield Chunk(data=b"", first_line=next_line, n_lines=1, long_line=item)
                next_line += 1
                continue
            data, n = item
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


def _produce(
    path: Path,
    chunk_bytes: int,
    max_line_bytes: int,
    status: ReadStatus,
    out_q: queue.Queue[_Item],
    stop: threading.Event,
    library: InflateLibrary,
) -> None:
    """The producer thread's loop: inflate, cut into chunks, skip overlong lines; ends the queue with None.

    ``pending`` holds whole lines plus the start of the current line (``tail`` bytes long); no line is
    allowed past ``max_line_bytes``: from there on it is only measured (``skipping``), not kept.
    """
    inflater = _Inflater(is_gzip(path), library)
    pending = bytearray()
    tail = 0  # length of the unfinished last line in ``pending``
    skipping: LongLine | None = None  # the overlong line being discarded (length so far)
    head = b""  # the first bytes of the stream, until we know whether they start with a BOM
    bom_checked = False

    def emit_whole_lines(final: bool) -> None:
        complete = len(pending) - tail
        while complete >= chunk_bytes or (final and complete):
            cut = pending.rfind(b"\n", 0, chunk_bytes) + 1 or pending.find(b"\n", chunk_bytes) + 1
            piece = bytes(pending[:cut])
            out_q.put((piece, _count_lines(piece)))  # counted here, off the parsing thread
            del pending[:cut]
            complete -= cut

    def take(piece: bytes) -> None:
        nonlocal tail, skipping
        pos, size = 0, len(piece)
        while pos < size:
            newline = piece.find(b"\n", pos)
            if skipping is not None:
                if newline < 0:
                    skipping = LongLine(skipping.length + size - pos, skipping.prefix)
                    return
                out_q.put(LongLine(skipping.length + newline - pos, skipping.prefix))
                skipping, pos = None, newline + 1
                continue
            line_end = size if newline < 0 else newline
            if tail + line_end - pos > max_line_bytes:
                # The current line is too long: send the whole lines before it, keep only its first bytes.
                start = len(pending) - tail
                prefix = (
                    bytes(pending[start : start + LONG_LINE_PREFIX_BYTES]) + piece[pos : pos + LONG_LINE_PREFIX_BYTES]
                )
                skipping = LongLine(tail, prefix[:LONG_LINE_PREFIX_BYTES])
                del pending[start:]
                tail = 0
                emit_whole_lines(final=True)
                continue
            if newline < 0:
                pending.extend(piece[pos:] if pos else piece)
                tail += size - pos
                break
            if size - newline - 1 <= max_line_bytes:
                # No line after this one can exceed the limit inside this piece: take the rest in one go.
                pending.extend(piece[pos:] if pos else piece)
                tail = size - piece.rfind(b"\n") - 1
                break
            pending.extend(piece[pos : newline + 1])  # line by line only when the limit is below the piece size
            tail, pos = 0, newline + 1
        emit_whole_lines(final=False)

    with open(path, "rb") as handle:
        while not stop.is_set():
            block = handle.read(_READ_BLOCK)
            if not block:
                break
            status.compressed_bytes += len(block)
            try:
                for piece in inflater.feed(block):
                    if stop.is_set():
                        break
                    if not bom_checked:
                        head += piece
                        if len(head) < len(UTF8_BOM):
                            continue
                        bom_checked = True
                        status.bom_stripped = head.startswith(UTF8_BOM)
                        piece, head = (head[len(UTF8_BOM) :] if status.bom_stripped else head), b""
                    take(piece)
            except (zlib.error, inflater.error) as exc:
                status.complete = False
                status.problem = (
                    f"corrupt compressed data after {status.compressed_bytes:,} compressed bytes: {exc}; "
                    "kept the lines decoded before it"
                )
                break
    if status.complete and not stop.is_set() and not inflater.finished_cleanly():
        held_back = inflater.truncated_tail(path)
        if bom_checked:
            take(held_back)
        else:
            head += held_back
    if not bom_checked and head:
        take(head)  # fewer bytes than a BOM in the whole stream
    if status.complete and not inflater.finished_cleanly():
        status.complete = False
        status.problem = (
            f"truncated gzip: the stream ends after {status.compressed_bytes:,} compressed bytes without "
            "its end marker; kept every complete line read before the cut"
        )
    if skipping is not None:
        out_q.put(skipping)
    if pending:
        tail_bytes = bytes(pending)
        out_q.put((tail_bytes, _count_lines(tail_bytes)))
    out_q.put(None)
