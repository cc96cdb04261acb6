"""A real threaded HTTP server on 127.0.0.1 (ephemeral port) with scripted replies, plus the images it serves.

Tests and ``bench/images.py`` use it instead of mocks, so timeouts, streaming aborts, keep-alive and redirects
go through real sockets. Each path gets a sequence of ``Reply`` objects: request N gets reply N, the last one
repeats (``500`` then ``200`` scripts a transient failure). Every request is logged, so a test can assert
that a re-run made *no* request at all.

``max_in_flight`` records the most requests handled at once (to check client concurrency limits). Sleeps wait
on a stop event, so closing the server never waits for a slow handler to finish.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from rec_pipeline.images.fetch import FetchOptions


@dataclass(frozen=True)
class Reply:
    """One scripted response.

    ``declared_length`` announces a Content-Length different from the body (larger: the body is cut short and
    the connection closed). ``stream_forever`` sends ``body`` over and over with no Content-Length until the
    client hangs up, to prove the client stops reading on its own.
    """

    status: int = 200
    body: bytes = b""
    content_type: str | None = "image/png"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    declared_length: int | None = None
    stream_forever: bool = False


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status=status, content_type=None, headers=(("Location", location),))


class LocalHTTPServer:
    """Context manager: ``with LocalHTTPServer() as server: server.route("/a.png", Reply(body=...))``."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self._routes: dict[str, list[Reply]] = {}
        self._log: list[str] = []
        self._served: Counter[str] = Counter()
        self._host_headers: list[str] = []
        self._in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting and inspection ------------------------------------------------------------------------------

    def route(self, path: str, *replies: Reply) -> str:
        """Script ``path`` and return its full URL."""
        if not replies:
            raise ValueError("a route needs at least one reply")
        with self._lock:
            self._routes[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server is not running")
        return self._server.server_address[1]

    @property
    def requests(self) -> list[str]:
        with self._lock:
            return list(self._log)

    @property
    def host_headers(self) -> list[str]:
        """The ``Host`` header of every request, in order."""
        with self._lock:
            return list(self._host_headers)

    def count(self, path: str) -> int:
        return Counter(self.requests)[path]

    def clear_log(self) -> None:
        """Forget logged requests (scripts keep their position)."""
        with self._lock:
            self._log.clear()

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalHTTPServer:
        server = _Server(("127.0.0.1", 0), _handler_class(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- used by the handler ------------------------------------------------------------------------------------

    def _next_reply(self, path: str, host_header: str) -> Reply:
        with self._lock:
            self._log.append(path)
            self._host_headers.append(host_header)
            self._served[path] += 1
            script = self._routes.get(path)
            if script is None:
                return Reply(status=404, body=b"not found", content_type="text/plain")
            return script[min(self._served[path], len(script)) - 1]

    def _enter(self, entering: bool) -> None:
        with self._lock:
            self._in_flight += 1 if entering else -1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; False means stop now."""
        return not self._stop.wait(seconds) if seconds > 0 else not self._stop.is_set()


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of 32 connects overflows it, dropped SYNs are resent
    # after 1 s, and the benchmark would measure the kernel's retransmit timer instead of the fetcher.
    request_queue_size = 256
    daemon_threads = True
    block_on_close = False


def _handler_class(owner: LocalHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real image CDNs
        # Buffered writes: headers and body leave in one segment. Unbuffered, the body waits behind the headers
        # for the client's delayed ACK (Nagle), adding ~40 ms to every keep-alive response.
        wbufsize = -1

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            reply = owner._next_reply(self.path, self.headers.get("Host", ""))
            owner._enter(True)
            try:
                if not owner._sleep(owner.latency + reply.delay):
                    self.close_connection = True
                    return
                self._send(reply)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client hung up (size limit, timeout): expected
            finally:
                owner._enter(False)

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            if reply.content_type is not None:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.stream_forever:
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                chunk = reply.body or b"\0" * 65536
                while owner._sleep(0):
                    self.wfile.write(chunk)
                return
            declared = len(reply.body) if reply.declared_length is None else reply.declared_length
            self.send_header("Content-Length", str(declared))
            self.end_headers()
            self.wfile.write(reply.body[:declared])
            if declared > len(reply.body):
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Silence the per-request stderr line; the request log above is what tests read."""

    return Handler


# -- images to serve --------------------------------------------------------------------------------------------


def make_image_bytes(
    size: tuple[int, int] = (40, 30),
    color: tuple[int, int, int] = (200, 30, 30),
    image_format: str = "PNG",
    mode: str = "RGB",
) -> bytes:
    """A small solid image with a darker left half, so resizing and cropping are observable."""
    image = Image.new(mode, size, color if mode == "RGB" else (*color, 255))
    half = Image.new(mode, (max(1, size[0] // 2), size[1]), (0, 0, 0) if mode == "RGB" else (0, 0, 0, 255))
    image.paste(half, (0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` but whose pixel data is a few bytes: harmless unless a
    decoder trusts the header and allocates the declared size."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _png_chunk(b"IEND", b"")
    )


def local_fetch_options(**overrides: Any) -> FetchOptions:
    """FetchOptions for tests against this server: 127.0.0.1 allowed, short timeouts, tiny backoff and images."""
    settings: dict[str, Any] = dict(
        connect_timeout=1.0,
        read_timeout=0.5,
        total_timeout=3.0,
        max_retries=1,
        backoff_base=0.01,
        backoff_max=0.2,
        image_size=(16, 16),
        allowed_networks=("127.0.0.1/32",),
        max_concurrency=8,
        per_host_limit=8,
        decode_workers=2,
    )
    settings.update(overrides)
    return FetchOptions(**settings)
