"""Fetch one image per (item, URL) safely and incrementally into the on-disk cache.

Per unique URL (several items may share one), in this order:

1. **cache**: an ``ok`` status record of the current processing variant whose image exists, or a recorded
   *permanent* failure (unless ``retry_permanent``), answers without any I/O beyond reading the record.
   Transient failures are always retried, so a re-run costs one status read per URL plus the work for the
   new URLs and earlier transient failures;
2. **policy**: the scheme must be http/https (or ``file://`` resolving inside the mirror, see ``url_policy``);
3. **mirror**: ``https://host/a/b.jpg`` is read from ``<mirror>/host/a/b.jpg`` when that file exists, with no
   network and no DNS;
4. **network**: the host is resolved, every address checked (``url_policy``), and the request sent to the
   checked address (so DNS rebinding cannot swap in a private address between check and connect). Redirects
   are followed by hand, each hop re-checked, at most ``max_redirects``. The body is streamed and the request
   aborted as soon as it exceeds ``max_bytes`` (or at once when ``Content-Length`` says so); the
   ``Content-Type`` must be ``image/*``;
5. **decode** (``decode.decode_image``, in a thread pool): pixel-count guard, ``verify()``, decode, RGB,
   resize, encode; then the image and the status record are written atomically.

Failures are *permanent* (404, 410, other 4xx, non-image, too large, too many pixels, undecodable, refused by
policy, too many redirects) or *transient* (429, 5xx, 408, timeouts, connection errors, DNS failures).
Transient failures are retried within the run with exponential backoff and jitter (``backoff_delay``); a
``Retry-After`` header (seconds or HTTP date) replaces the backoff, capped at ``backoff_max``.

Concurrency: at most ``max_concurrency`` requests in flight overall and ``per_host_limit`` per host name (a
task waiting for a busy host holds no global slot). Each host gets its own few ``httpx.AsyncClient`` objects
(small pools are cheaper to manage, see ``_Run._shard``), so pooled connections, which are opened to the
checked IP, are never shared between host names (TLS SNI and ``Host`` differ per name). ``trust_env=False``:
a proxy from the environment would bypass the address checks and the pinning.
Backoff jitter comes from a ``random.Random`` seeded with ``(seed, url)``, so it does not depend on scheduling.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import functools
import logging
import os
import random
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import polars as pl

from rec_pipeline.images.cache import ImageCache, Status, StatusRecord, url_hash, variant_name
from rec_pipeline.images.decode import ImageRejected, OutputFormat, ResizeMode, decode_image
from rec_pipeline.images.url_policy import (
    PolicyRefused,
    UrlPolicy,
    check_scheme,
    checked_address,
    file_url_path,
    mirror_path,
)

Source = Literal["mirror", "cache", "network"]
T = TypeVar("T")
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
CONNECTIONS_PER_CLIENT = 4

RESULT_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "url": pl.String(),
    "url_hash": pl.String(),
    "status": pl.String(),
    "reason": pl.String(),
    "detail": pl.String(),
    "image_path": pl.String(),
    "source": pl.String(),
    "n_bytes": pl.Int64(),
    "width": pl.Int32(),
    "height": pl.Int32(),
    "attempts": pl.Int32(),
    "elapsed_s": pl.Float64(),
}


@dataclass(frozen=True)
class FetchOptions:
    """Everything that tunes a fetch run. Timeouts in seconds; ``image_size`` is (width, height).

    ``total_timeout`` caps one HTTP request (connect, headers and body) on the wall clock, on top of the
    connect/read timeouts that bound each socket operation. ``max_retries`` counts retries after the first try.
    ``width``/``height`` in the results are the *source* image's; stored images are always ``image_size``.
    """

    max_concurrency: int = 16
    per_host_limit: int = 4
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_bytes: int = 10_000_000
    max_pixels: int = 40_000_000
    image_size: tuple[int, int] = (224, 224)
    resize_mode: ResizeMode = "pad"
    output_format: OutputFormat = "PNG"
    max_redirects: int = 5
    allowed_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[str, ...] = ()
    retry_permanent: bool = False
    user_agent: str = "rec_pipeline/0.1"
    seed: int = 0
    decode_workers: int | None = None
    progress_every: int = 1000
    progress_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.per_host_limit < 1:
            raise ValueError("max_concurrency and per_host_limit must be at least 1")
        if self.max_retries < 0 or self.max_redirects < 0:
            raise ValueError("max_retries and max_redirects must not be negative")
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError("max_bytes and max_pixels must be positive")
        if self.resize_mode not in ("pad", "crop"):
            raise ValueError(f"resize_mode must be 'pad' or 'crop', not {self.resize_mode!r}")
        if self.output_format not in ("PNG", "JPEG"):
            raise ValueError(f"output_format must be 'PNG' or 'JPEG', not {self.output_format!r}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size must be (width, height) >= 1, not {self.image_size!r}")
        UrlPolicy(self.allowed_hosts, self.allowed_networks)  # validates the networks

    @property
    def policy(self) -> UrlPolicy:
        return UrlPolicy(self.allowed_hosts, self.allowed_networks)

    @property
    def variant(self) -> str:
        return variant_name(self.image_size, self.resize_mode, self.output_format)


@dataclass(frozen=True)
class FetchReport:
    """Per-row results plus counters. Counters count result rows (item, URL) by ``source``, whatever the status;
    ``network_requests`` counts HTTP requests actually sent (redirect hops and retries included)."""

    results: pl.DataFrame
    fetched_from_network: int
    from_cache: int
    from_mirror: int
    failures_by_reason: dict[str, int]
    network_requests: int
    elapsed_s: float
    throughput: float  # result rows per second of wall time

    @property
    def n_ok(self) -> int:
        return int((self.results["status"] == "ok").sum())


def parse_retry_after(value: str | None, *, now: float, cap: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), clamped to [0, cap]."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means the zone was omitted
            return None
        seconds = when.timestamp() - now
    return min(max(seconds, 0.0), cap)


def backoff_delay(retry: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number ``retry`` (0-based): ``base * 2**retry`` capped, with "equal jitter".

    Half the delay is fixed and half uniform, so retries of many URLs that failed together spread out (no
    thundering herd) yet never retry immediately.
    """
    ceiling = min(cap, base * (2**retry))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


@dataclass(frozen=True)
class _Outcome:
    status: Status
    source: Source
    reason: str | None = None
    detail: str | None = None
    image_path: str | None = None
    n_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    attempts: int = 0
    elapsed_s: float = 0.0


class _Failure(Exception):
    """Why a URL could not be fetched; ``attempts`` is filled in by the retry loop when it gives up."""

    def __init__(self, reason: str, detail: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.permanent = permanent
        self.retry_after = retry_after
        self.attempts = 0


_HOST_NOT_FOUND = frozenset(
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if code is not None
)


def _permanent(reason: str, detail: str) -> _Failure:
    return _Failure(reason, detail, permanent=True)


def _transient(reason: str, detail: str, retry_after: float | None = None) -> _Failure:
    return _Failure(reason, detail, permanent=False, retry_after=retry_after)


@dataclass
class _Shard:
    """One of a host's clients and how many requests it carries right now."""

    client: httpx.AsyncClient
    in_flight: int = 0


@dataclass
class _Run:
    """State of one fetch run: clients, semaphores and counters live here, never in module globals."""

    options: FetchOptions
    cache: ImageCache
    mirror_dir: Path | None
    executor: ThreadPoolExecutor
    stack: AsyncExitStack
    logger: logging.Logger | None
    global_slots: asyncio.Semaphore
    host_slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    clients: dict[str, list[_Shard]] = field(default_factory=dict)
    addresses: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    failed_lookups: dict[tuple[str, int], "_Failure"] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = None
    network_requests: int = 0

    # -- per URL ------------------------------------------------------------------------------------------

    async def process(self, url: str, digest: str) -> _Outcome:
        started = time.perf_counter()
        source: Source = "network"
        attempts = 0
        try:
            scheme = check_scheme(url)
            local = file_url_path(url, self.mirror_dir) if scheme == "file" else mirror_path(url, self.mirror_dir)
            if local is not None and (scheme == "file" or local.is_file()):
                source = "mirror"
                data = await self._in_thread(self._read_local, local)
            else:
                data, attempts = await self._download(url)
            decoded = await self._in_thread(
                decode_image,
                data,
                max_pixels=self.options.max_pixels,
                size=self.options.image_size,
                resize_mode=self.options.resize_mode,
                output_format=self.options.output_format,
            )
            path = self.cache.image_path(digest)
            outcome = _Outcome("ok", source, image_path=str(path), n_bytes=len(data), width=decoded.source_width,
                               height=decoded.source_height, attempts=attempts)
            await self._in_thread(self.cache.write_image, digest, decoded.data)
        except (PolicyRefused, ImageRejected) as error:
            outcome = _Outcome("failed_permanent", source, error.reason, error.detail, attempts=attempts)
        except _Failure as error:
            status: Status = "failed_permanent" if error.permanent else "failed_transient"
            outcome = _Outcome(status, source, error.reason, error.detail, attempts=error.attempts)
        record = StatusRecord(url=url, status=outcome.status, reason=outcome.reason,
                              detail=outcome.detail, variant=self.cache.variant if outcome.status == "ok" else None,
                              source=outcome.source, n_bytes=outcome.n_bytes, width=outcome.width,
                              height=outcome.height, attempts=outcome.attempts, recorded_at=time.time())
        await self._in_thread(self.cache.write_status, digest, record)
        return dataclasses.replace(outcome, elapsed_s=time.perf_counter() - started)

    def _read_local(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.options.max_bytes:
                raise _permanent("too_large", f"{path} is {size:,} bytes > max_bytes={self.options.max_bytes:,}")
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError) as error:
            raise _permanent("file_not_found", str(path)) from error
        except OSError as error:  # permissions, I/O errors: the file is there but cannot be used
            raise _permanent("file_unreadable", f"{path}: {error}") from error

    async def _in_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking work (decoding, file I/O with fsync) off the event loop, in this run's pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    # -- network --------------------------------------------------------------------------------------------

    async def _download(self, url: str) -> tuple[bytes, int]:
        """The body of ``url`` and the number of tries; raises ``_Failure`` (``attempts`` set) when it gives up."""
        options = self.options
        rng = random.Random(f"{options.seed}:{url}")
        failure: _Failure | None = None
        for retry in range(options.max_retries + 1):
            try:
                return await self._follow(url), retry + 1
            except PolicyRefused as refused:  # a redirect hop refused by the policy
                failure = _permanent(refused.reason, refused.detail)
                failure.attempts = retry + 1
                raise failure from refused
            except _Failure as error:
                error.attempts = retry + 1
                if error.permanent or retry == options.max_retries:
                    raise
                failure = error
                delay = backoff_delay(retry, base=options.backoff_base, cap=options.backoff_max, rng=rng)
                if error.retry_after is not None:
                    delay = error.retry_after
                await asyncio.sleep(delay)
        raise AssertionError(f"unreachable: {failure}")

    async def _follow(self, url: str) -> bytes:
        """One try: request ``url`` and follow redirects, checking every hop against the policy."""
        current = url
        for hop in range(self.options.max_redirects + 1):
            if hop > 0 and check_scheme(current) == "file":
                raise PolicyRefused("refused_scheme", f"redirect to a file URL {current!r}")
            try:
                target = httpx.URL(current)
            except httpx.InvalidURL as error:
                raise _permanent("invalid_url", f"{current!r}: {error}") from error
            host = target.raw_host.decode("ascii").lower()
            if not host:
                raise _permanent("invalid_url", f"no host in {current!r}")
            slot = self.host_slots.setdefault(host, asyncio.Semaphore(self.options.per_host_limit))
            async with slot, self.global_slots:
                body_or_location = await self._request(target, host)
            if isinstance(body_or_location, bytes):
                return body_or_location
            try:
                current = str(target.join(body_or_location))
            except httpx.InvalidURL as error:
                raise _permanent("bad_redirect", f"Location {body_or_location!r}: {error}") from error
        raise _permanent("too_many_redirects", f"more than {self.options.max_redirects} redirects from {url}")

    async def _resolve(self, host: str, port: int) -> list[str]:
        key = (host, port)
        if key in self.failed_lookups:
            # One failed lookup per host and run: a dump with thousands of URLs on a dead host costs one query.
            raise self.failed_lookups[key]
        if host.rstrip(".").lower().endswith(".invalid") or host.rstrip(".").lower() == "invalid":
            # RFC 6761: `.invalid` never resolves, so answer without asking a resolver (no packet leaves the host).
            self.failed_lookups[key] = _permanent("dns_not_found", f"{host}: reserved name (RFC 6761), never resolves")
            raise self.failed_lookups[key]
        if key not in self.addresses:
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.options.connect_timeout):
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as error:
                # "No such host" is an answer, not an outage: recorded as permanent so re-runs do not retry it.
                # "Try again" (EAI_AGAIN) and other resolver errors stay transient.
                if error.errno in _HOST_NOT_FOUND:
                    failure = _permanent("dns_not_found", f"{host}: {error!r}")
                else:
                    failure = _transient("dns_error", f"{host}: {error!r}")
                self.failed_lookups[key] = failure
                raise failure from error
            except (OSError, TimeoutError) as error:
                raise _transient("dns_error", f"{host}: {error!r}") from error
            self.addresses[key] = list(dict.fromkeys(str(info[4][0]) for info in infos))
        return self.addresses[key]

    async def _request(self, target: httpx.URL, host: str) -> bytes | str:
        """Send one request; return the body, or the ``Location`` of a redirect."""
        options = self.options
        policy = options.policy
        port = target.port or (443 if target.scheme == "https" else 80)
        pinned = None
        if not policy.host_is_allowed(host):
            pinned = checked_address(host, await self._resolve(host, port), policy)
        shard = self._shard(host)
        headers: dict[str, str] = {}
        extensions: dict[str, Any] = {}
        if pinned is not None:
            # Connect to the address that was checked; keep the name for virtual hosting and TLS.
            headers["Host"] = target.netloc.decode("ascii")
            if target.scheme == "https":
                extensions["sni_hostname"] = host
            target = target.copy_with(host=pinned)
        self.network_requests += 1
        shard.in_flight += 1
        try:
            async with asyncio.timeout(options.total_timeout):
                async with shard.client.stream("GET", target, headers=headers, extensions=extensions) as response:
                    return await self._read_response(response)
        except TimeoutError as error:
            raise _transient("timeout", f"no full response within total_timeout={options.total_timeout}s") from error
        except httpx.TimeoutException as error:
            raise _transient("timeout", repr(error)) from error
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            raise _permanent("invalid_url", repr(error)) from error
        except httpx.TransportError as error:
            raise _transient("transport_error", repr(error)) from error
        except httpx.DecodingError as error:  # a broken Content-Encoding (gzip/deflate) from the server
            raise _permanent("bad_encoding", repr(error)) from error
        finally:
            shard.in_flight -= 1

    async def _read_response(self, response: httpx.Response) -> bytes | str:
        options = self.options
        code = response.status_code
        if code in REDIRECT_CODES:
            location = response.headers.get("location")
            if not location:
                raise _permanent("bad_redirect", f"HTTP {code} without Location")
            return location
        if code == 429 or code == 408 or code >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=time.time(),
                                            cap=options.backoff_max)
            raise _transient(f"http_{code}", f"HTTP {code}", retry_after)
        if code != 200:
            raise _permanent(f"http_{code}", f"HTTP {code}")
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise _permanent("not_image", f"Content-Type {content_type or '(none)'!r}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > options.max_bytes:
            raise _permanent("too_large", f"Content-Length {int(declared):,} > max_bytes={options.max_bytes:,}")
        chunks: list[bytes] = []
        received = 0
        # aiter_bytes yields *decoded* bytes, so a gzip-encoded bomb is caught by the same limit.
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > options.max_bytes:
                # Leaving the ``stream`` block closes the connection: the rest is never downloaded.
                raise _permanent("too_large", f"body passed max_bytes={options.max_bytes:,} while streaming")
            chunks.append(chunk)
        return b"".join(chunks)

    def _shard(self, host: str) -> _Shard:
        """The least busy of ``host``'s clients: a few small connection pools rather than one large one.

        httpcore scans every pooled connection (an ``is_readable`` poll each) whenever a request starts or
        ends, so one 32-connection pool costs O(32) per event and dominated the CPU profile at high
        concurrency; pools of ``CONNECTIONS_PER_CLIENT`` keep that scan short (bench/images.py: 2x throughput).
        The per-host semaphore caps requests at ``per_host_limit``, so the least busy shard always has a free
        connection and no request waits inside a pool.
        """
        shards = self.clients.get(host)
        if shards is None:
            options = self.options
            if self.ssl_context is None:
                # One context for all clients: loading the CA bundle costs ~10-30 ms each time.
                self.ssl_context = ssl.create_default_context(cafile=_ca_bundle())
            n_shards = -(-options.per_host_limit // CONNECTIONS_PER_CLIENT)
            per_client = -(-options.per_host_limit // n_shards)
            shards = []
            for _ in range(n_shards):
                client = httpx.AsyncClient(
                    timeout=httpx.Timeout(connect=options.connect_timeout, read=options.read_timeout,
                                          write=options.read_timeout, pool=options.total_timeout),
                    limits=httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client),
                    follow_redirects=False,
                    trust_env=False,
                    verify=self.ssl_context,
                    headers={"User-Agent": options.user_agent, "Accept": "image/*"},
                )
                self.stack.push_async_callback(client.aclose)
                shards.append(_Shard(client))
            self.clients[host] = shards
        return min(shards, key=lambda shard: shard.in_flight)


def _ca_bundle() -> str | None:
    try:
        import certifi
    except ImportError:  # fall back to the system store
        return None
    return certifi.where()


def _cached_outcome(record: StatusRecord, path: Path, elapsed: float) -> _Outcome:
    return _Outcome(record.status, "cache", record.reason, record.detail,
                    str(path) if record.status == "ok" else None, record.n_bytes, record.width, record.height,
                    0, elapsed)


async def afetch_images(
    requests: Sequence[tuple[str, str]],
    cache_dir: Path,
    mirror_dir: Path | None = None,
    options: FetchOptions | None = None,
    logger: logging.Logger | None = None,
) -> FetchReport:
    """Async form of ``fetch_images`` for callers that already run an event loop."""
    options = options or FetchOptions()
    started = time.perf_counter()
    bad = [url for _, url in requests if not isinstance(url, str)]
    if bad:
        raise TypeError(f"image URLs must be str, got {bad[0]!r}; drop missing URLs first (see image_requests)")
    cache = ImageCache(Path(cache_dir), options.variant, "png" if options.output_format == "PNG" else "jpg")
    unique_urls = list(dict.fromkeys(url for _, url in requests))
    digests = {url: url_hash(url) for url in unique_urls}
    outcomes: dict[str, _Outcome] = {}
    to_fetch: list[str] = []
    for url in unique_urls:
        lookup_started = time.perf_counter()
        record = cache.read_status(digests[url])
        if record is not None and cache.is_usable(record, digests[url], options.retry_permanent):
            elapsed = time.perf_counter() - lookup_started
            outcomes[url] = _cached_outcome(record, cache.image_path(digests[url]), elapsed)
        else:
            to_fetch.append(url)
    if logger is not None:
        logger.info("images: %d unique URLs, %d answered by the cache, %d to fetch",
                    len(unique_urls), len(outcomes), len(to_fetch))
    workers = options.decode_workers or min(4, os.cpu_count() or 1)
    network_requests = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-decode") as executor:
        async with AsyncExitStack() as stack:
            run = _Run(options, cache, mirror_dir, executor, stack, logger, asyncio.Semaphore(options.max_concurrency))
            await _drive(run, to_fetch, digests, outcomes, started)
            network_requests = run.network_requests
    return _report(requests, outcomes, digests, network_requests, time.perf_counter() - started)


async def _drive(run: _Run, urls: list[str], digests: dict[str, str], outcomes: dict[str, _Outcome],
                 started: float) -> None:
    """Keep a bounded window of tasks alive (not one task per URL: millions of tasks would cost GBs)."""
    window = run.options.max_concurrency * 4
    pending: dict[asyncio.Task[_Outcome], str] = {}
    remaining = iter(urls)
    done_count = 0
    every = run.options.progress_every
    next_log_at = every
    last_log = time.perf_counter()
    try:
        while True:
            while len(pending) < window:
                url = next(remaining, None)
                if url is None:
                    break
                pending[asyncio.create_task(run.process(url, digests[url]))] = url
            if not pending:
                return
            finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                outcomes[pending.pop(task)] = task.result()
                done_count += 1
            now = time.perf_counter()
            # Several tasks can finish in one wakeup, so "crossed the next multiple", not "is a multiple".
            if run.logger is not None and (done_count >= next_log_at or done_count == len(urls)
                                           or now - last_log >= run.options.progress_seconds):
                last_log = now
                next_log_at = (done_count // every + 1) * every
                run.logger.info("images: fetched %d/%d (%d requests, %.1f URLs/s)", done_count, len(urls),
                                run.network_requests, done_count / max(now - started, 1e-9))
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _report(requests: Sequence[tuple[str, str]], outcomes: dict[str, _Outcome], digests: dict[str, str],
            network_requests: int, elapsed: float) -> FetchReport:
    rows = []
    for item_id, url in requests:
        o = outcomes[url]
        rows.append((item_id, url, digests[url], o.status, o.reason, o.detail, o.image_path, o.source, o.n_bytes,
                     o.width, o.height, o.attempts, o.elapsed_s))
    results = pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row")
    sources = Counter(results["source"].to_list())
    failures = Counter(r for s, r in zip(results["status"], results["reason"]) if s != "ok")
    return FetchReport(
        results=results,
        fetched_from_network=sources["network"],
        from_cache=sources["cache"],
        from_mirror=sources["mirror"],
        failures_by_reason=dict(sorted(failures.items())),
        network_requests=network_requests,
        elapsed_s=elapsed,
        throughput=len(rows) / elapsed if elapsed > 0 else 0.0,
    )


def fetch_images(
    requests: Sequence[tuple[str, str]],
    cache_dir: Path,
    mirror_dir: Path | None = None,
    options: FetchOptions | None = None,
    logger: logging.Logger | None = None,
) -> FetchReport:
    """Fetch ``(item_id, url)`` pairs into ``cache_dir``; see the module docstring for the rules.

    Synchronous wrapper (Dagster assets are plain functions). Inside a running event loop use
    ``afetch_images`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(afetch_images(requests, cache_dir, mirror_dir, options, logger))
    raise RuntimeError("fetch_images() was called inside a running event loop; await afetch_images() instead")


def image_requests(items: pl.DataFrame, images_per_item: int = 1) -> list[tuple[str, str]]:
    """(item_id, url) pairs from an items table: the first ``images_per_item`` non-empty ``image_urls``."""
    exploded = (
        items.select("item_id", "image_urls")
        .explode("image_urls")
        .filter(pl.col("image_urls").is_not_null() & (pl.col("image_urls").str.strip_chars() != ""))
        .with_columns(pl.int_range(pl.len()).over("item_id").alias("rank"))
        .filter(pl.col("rank") < images_per_item)
    )
    return list(zip(exploded["item_id"].to_list(), exploded["image_urls"].to_list()))
