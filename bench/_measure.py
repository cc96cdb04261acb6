"""Helpers shared by the benchmarks (none from ``rec_pipeline_tests``: a benchmark runs without the test suite).

- ``measure``: run a command in a child process and report its wall time and peak RSS (the child and its children);
- ``print_table``: aligned columns;
- ``LatencyServer`` and ``jpeg_bytes``: a local image server with injected latency, for ``bench/images.py``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Measurement:
    label: str
    seconds: float
    peak_rss_mb: float
    returncode: int
    output: str


def measure(label: str, argv: list[str], env: dict[str, str] | None = None) -> Measurement:
    """wait4() gives the rusage of exactly this child, including descendants it waited for (``zcat | wc``)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    return Measurement(label, seconds, usage.ru_maxrss / 1024, proc.returncode, output.strip())


def python_snippet(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def print_table(rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


# --- a local image server for the fetch benchmarks ------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of 32 connects overflows it, dropped SYNs are resent
    # after 1 s, and the benchmark would measure the kernel's retransmit timer instead of the fetcher.
    request_queue_size = 256
    daemon_threads = True
    block_on_close = False


class LatencyServer:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port) serving fixed bodies after ``latency`` seconds.

    ``with LatencyServer(0.05) as server: server.route("/a.jpg", body, "image/jpeg")``; ``server.requests`` counts
    the requests seen (404s included), so a benchmark can tell that a re-run made none. Keep-alive and buffered
    writes, as image CDNs answer.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests = 0
        self._routes: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def route(self, path: str, body: bytes, content_type: str = "image/jpeg") -> None:
        self._routes[path] = (body, content_type)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server is not running")
        return int(self._server.server_address[1])

    def __enter__(self) -> LatencyServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # headers and body in one segment (unbuffered, Nagle adds ~40 ms per keep-alive reply)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with owner._lock:
                    owner.requests += 1
                if owner._stop.wait(owner.latency):
                    self.close_connection = True
                    return
                body, content_type = owner._routes.get(self.path, (b"not found", "text/plain"))
                try:
                    self.send_response(200 if self.path in owner._routes else 404)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """No per-request stderr line."""

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def jpeg_bytes(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    """A solid JPEG with a darker left half (so a resize has something to do)."""
    from PIL import Image

    image = Image.new("RGB", size, color)
    image.paste(Image.new("RGB", (max(1, size[0] // 2), size[1]), (0, 0, 0)), (0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()
