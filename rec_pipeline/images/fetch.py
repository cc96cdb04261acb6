"""Fetch one image per (item, URL) safely and incrementally into the on-disk cache.

Per unique URL (several items may share one), in this order:

1. **cache**: an ``ok`` status record of the current processing variant whose image exists, or a recorded
   *permanent* failure (unless ``retry_permanent``), answers without any I/O beyond reading the record.
   A *retryable* record (transient failure, or deferred because its host was unreachable) whose
   ``next_attempt_at`` lies in the future is reported ``deferred``/``backoff`` without any network I/O (unless
   ``retry_deferred``). So a re-run costs one status read per URL plus the work for the new URLs and the
   retryable ones that are due;
2. **policy**: the scheme must be http/https (or ``file://`` resolving inside the mirror, see ``url_policy``);
3. **mirror**: ``https://host/a/b.jpg`` is read from ``<mirror>/host/a/b.jpg`` when that file exists, with no
   network and no DNS; a URL whose path leads out of its host's folder is refused (``url_policy.mirror_path``);
4. **network**: the host is resolved, every address checked (``url_policy``), and the request sent to the
   checked address (so DNS rebinding cannot swap in a private address between check and connect). Redirects
   are followed by hand, each hop re-checked, at most ``max_redirects``. The body is streamed and the request
   aborted as soon as it exceeds ``max_bytes`` (or at once when ``Content-Length`` says so); the
   ``Content-Type`` must be ``image/*``;
5. **decode** (``decode.decode_image``, in a thread pool): pixel-count guard, ``verify()``, decode, RGB,
   resize, encode; then the image and the status record are written atomically.

Failures are *permanent* (404, 410, other 4xx, non-image, too large, too many pixels, undecodable, refused by
policy, too many redirects, no such host) or *transient* (429, 5xx, 408, timeouts, connection errors).
Transient failures are retried within the run with exponential backoff and jitter (``backoff_delay``); a
``Retry-After`` header (seconds or HTTP date) replaces the backoff, capped at ``backoff_max``.

Unreachable hosts: offline, every URL failing on its own would cost a DNS lookup or a connect timeout per try,
minutes for a few thousand URLs, and all of it again on the next run. So a failure that says the *host* cannot
be reached (a resolver error other than "no such host", a connect timeout, connection refused, network or host
unreachable; never an HTTP status, which proves the host answered) is handled per host (``_Hosts``): one URL
probes the host and retries with the in-run backoff while the host's other URLs wait without a slot; when the
probe gives up, the host is *down* for the rest of the run and each of its URLs, the waiting ones and those
still to come, is ``deferred``/``host_unreachable`` at once, with no further lookup or connect. Every host is
probed that way before it is used: until something answers from it, one request at a time goes to it.
URLs are started round-robin over hosts, so dead hosts are probed side by side, not one after the other.

Between runs, a URL that ended ``failed_transient`` or ``deferred`` gets ``next_attempt_at = now +
rerun_backoff(failed_runs)``: ``rerun_backoff_base`` doubling per run in a row that ended so, capped at
``rerun_backoff_max``. No jitter: the URLs of a dead host come due together and cost one probe.

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
import errno
import functools
import logging
import os
import random
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import polars as pl

from rec_pipeline.images.cache import RETRYABLE, ImageCache, Status, StatusRecord, url_hash, variant_name
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
HostKey = tuple[str, int]  # (lower-cased host name, port): what one probe vouches for
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
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

    ``rerun_backoff_base``/``rerun_backoff_max`` (seconds) space out later runs' tries of a URL that ended
    transient or deferred (``rerun_backoff``); ``retry_deferred`` tries such URLs now even when not due.
    ``offline`` sends nothing to the network (no DNS query either): URLs the cache and mirror cannot answer come
    back ``deferred`` (reason ``offline``) and no status is recorded for them, so going online later costs no
    back-off. ``now`` is the wall clock for status records and that back-off (tests pass a fake one). ``resolver``
    replaces ``getaddrinfo``: an async ``(host, port) -> addresses`` that raises ``socket.gaierror`` like it
    (tests use it so that no DNS query leaves the machine). ``sleep`` waits out the backoff between in-run retries
    (tests pass one that records the delays asked for, instead of timing the run).
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
    rerun_backoff_base: float = 3600.0
    rerun_backoff_max: float = 7 * 24 * 3600.0
    retry_deferred: bool = False
    offline: bool = False  # answer from the cache and mirror only; every other URL is deferred, nothing recorded
    user_agent: str = "rec_pipeline/0.1"
    seed: int = 0
    decode_workers: int | None = None
    progress_every: int = 1000
    progress_seconds: float = 10.0
    now: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    resolver: Resolver | None = field(default=None, compare=False, repr=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.per_host_limit < 1:
            raise ValueError("max_concurrency and per_host_limit must be at least 1")
        if self.max_retries < 0 or self.max_redirects < 0:
            raise ValueError("max_retries and max_redirects must not be negative")
        if not 0 <= self.rerun_backoff_base <= self.rerun_backoff_max:
            raise ValueError("rerun_backoff_base and rerun_backoff_max must satisfy 0 <= base <= max")
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
    ``network_requests`` counts HTTP requests actually sent (redirect hops and retries included).

    Rows not tried to the end are ``deferred``: ``deferred`` counts those whose host was unreachable in this
    run (reason ``host_unreachable``) or that an ``offline`` run did not send (reason ``offline``), ``backing_off`` those skipped because their next attempt is not due yet
    (reason ``backoff``). ``hosts_unreachable`` maps each host given up in this run to why (``dns_error`` ...).
    """

    results: pl.DataFrame
    fetched_from_network: int
    from_cache: int
    from_mirror: int
    failures_by_reason: dict[str, int]
    network_requests: int
    elapsed_s: float
    throughput: float  # result rows per second of wall time
    deferred: int = 0
    backing_off: int = 0
    hosts_unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def n_ok(self) -> int:
        return int((self.results["status"] == "ok").sum())

    def summary(self) -> dict[str, Any]:
        """The counters as plain JSON values, ready for Dagster metadata or a summary file."""
        return {
            "ok": self.n_ok,
            "from_network": self.fetched_from_network,
            "from_cache": self.from_cache,
            "from_mirror": self.from_mirror,
            "network_requests": self.network_requests,
            "deferred": self.deferred,
            "backing_off": self.backing_off,
            "hosts_unreachable": dict(self.hosts_unreachable),
            "failures_by_reason": dict(self.failures_by_reason),
            "seconds": round(self.elapsed_s, 2),
        }


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


def rerun_backoff(failed_runs: int, *, base: float, cap: float) -> float:
    """Seconds until a later run may try a URL again after ``failed_runs`` runs in a row without an answer.

    ``base * 2**(failed_runs - 1)`` capped at ``cap``: a blip costs an hour, a week-long outage a try a week.
    """
    if failed_runs < 1:
        return 0.0
    return min(cap, base * 2.0 ** min(failed_runs - 1, 60))


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
    """Why a URL could not be fetched; ``attempts`` is filled in by the retry loop when it gives up.

    ``host`` is set when the failure says the host cannot be reached at all (see ``_Hosts``), not just this URL.
    """

    def __init__(self, reason: str, detail: str, *, permanent: bool, retry_after: float | None = None,
                 host: HostKey | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.permanent = permanent
        self.retry_after = retry_after
        self.host = host
        self.attempts = 0


class _HostDown(Exception):
    """The URL's host (or a redirect hop's) was given up for this run: the URL is deferred, not failed.

    Deliberately not a ``_Failure``, so no retry loop mistakes it for something worth another try.
    """

    def __init__(self, host: HostKey, label: str, cause: _Failure) -> None:
        super().__init__(f"{label} unreachable ({cause.reason}: {cause.detail})")
        self.host = host
        self.detail = str(self)
        self.attempts = 0


_HOST_NOT_FOUND = frozenset(
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if code is not None
)
# Connect errors that are about the host or the route to it, not about one URL.
_UNREACHABLE_ERRNOS: dict[int, str] = {
    code: reason
    for name, reason in (("ECONNREFUSED", "connection_refused"), ("ENETUNREACH", "network_unreachable"),
                         ("EHOSTUNREACH", "no_route_to_host"), ("ENETDOWN", "network_unreachable"),
                         ("EHOSTDOWN", "no_route_to_host"))
    if (code := getattr(errno, name, None)) is not None
}


def _permanent(reason: str, detail: str) -> _Failure:
    return _Failure(reason, detail, permanent=True)


def _transient(reason: str, detail: str, retry_after: float | None = None) -> _Failure:
    return _Failure(reason, detail, permanent=False, retry_after=retry_after)


def _unreachable(reason: str, detail: str, host: HostKey) -> _Failure:
    return _Failure(reason, detail, permanent=False, host=host)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions it was raised from (httpx wraps httpcore wraps anyio wraps the OSError)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _connect_failure_reason(error: httpx.TransportError) -> str | None:
    """The host-level reason a connect failed (``dns_not_found`` included), or None when it is about this URL.

    Only the connect phase counts: once a connection is up, a failure (TLS, a reset, a slow body) says nothing
    about whether the host's other URLs can be fetched.
    """
    if isinstance(error, httpx.ConnectTimeout):
        return "connect_timeout"
    if not isinstance(error, httpx.ConnectError):
        return None
    for cause in _causes(error):
        if isinstance(cause, socket.gaierror):  # connecting by name (allowed_hosts): the client resolved it
            return "dns_not_found" if cause.errno in _HOST_NOT_FOUND else "dns_error"
        if isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS:
            return _UNREACHABLE_ERRNOS[cause.errno]
    return None


def _host_label(key: HostKey) -> str:
    host, port = key
    return host if port in (80, 443) else f"{host}:{port}"


@dataclass
class _Shard:
    """One of a host's clients and how many requests it carries right now."""

    client: httpx.AsyncClient
    in_flight: int = 0


class _Probe:
    """One URL's claim on the hosts it is probing; released when that URL's download ends, however it ends."""

    __slots__ = ("hosts",)

    def __init__(self) -> None:
        self.hosts: set[HostKey] = set()


@dataclass
class _HostState:
    """What this run knows about one host: ``up`` once anything answered, ``down`` once a probe gave up.

    While neither is settled, ``prober`` is the one URL allowed to talk to the host and ``settled`` wakes the
    others when it is done.
    """

    up: bool = False
    down: _Failure | None = None
    prober: _Probe | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    deferred: int = 0


@dataclass
class _Hosts:
    """Per-run knowledge of hosts: resolved addresses, names that do not exist, and which hosts are down.

    Kept apart from ``_Run`` so the rule "one probe per host, then all or nothing" lives in one place.
    """

    resolve_timeout: float
    resolver: Resolver | None = None
    addresses: dict[HostKey, list[str]] = field(default_factory=dict)
    failed_lookups: dict[HostKey, _Failure] = field(default_factory=dict)
    states: dict[HostKey, _HostState] = field(default_factory=dict)

    async def admit(self, key: HostKey, probe: _Probe) -> None:
        """Return when ``probe``'s URL may talk to ``key``: the host is up, or this URL is its prober.

        Raises the recorded failure for a name that does not exist, ``_HostDown`` for a host given up, and
        waits (holding no slot) while another URL probes the host.
        """
        while True:
            if key in self.failed_lookups:
                raise self.failed_lookups[key]
            state = self.states.setdefault(key, _HostState())
            if state.down is not None:
                state.deferred += 1
                raise _HostDown(key, _host_label(key), state.down)
            if state.up or state.prober is probe:
                return
            if state.prober is None:
                self._claim(state, key, probe)
                return
            await state.settled.wait()

    def failed(self, key: HostKey, probe: _Probe) -> bool:
        """Record a host-level failure seen by ``probe``'s URL; True when that URL is (now) the host's prober.

        False means another URL already probes the host (or gave it up): its verdict decides, so this URL must
        not spend its own retries on the host.
        """
        state = self.states.setdefault(key, _HostState())
        if state.down is None and state.prober is None:
            self._claim(state, key, probe)
        return state.prober is probe

    def reachable(self, key: HostKey) -> None:
        """Something answered from ``key`` (any HTTP status, a TLS error): its other URLs may go ahead."""
        state = self.states.setdefault(key, _HostState())
        if not state.up:
            state.up = True
            self._settle(state)

    def give_up(self, key: HostKey, probe: _Probe, cause: _Failure) -> _HostDown:
        """The prober's last try failed too: the host is down for the rest of the run."""
        state = self.states[key]
        state.down = cause
        state.deferred += 1
        probe.hosts.discard(key)
        self._settle(state)
        return _HostDown(key, _host_label(key), cause)

    def release(self, probe: _Probe) -> None:
        """``probe``'s URL is done without a verdict on some host (say a policy refusal): let the next URL probe."""
        for key in probe.hosts:
            state = self.states[key]
            if state.prober is probe:
                self._settle(state)
        probe.hosts.clear()

    def given_up(self) -> list[tuple[str, _Failure, int]]:
        """(host, why, URLs deferred) for each host given up in this run."""
        return [(_host_label(key), state.down, state.deferred) for key, state in self.states.items()
                if state.down is not None]

    def _claim(self, state: _HostState, key: HostKey, probe: _Probe) -> None:
        state.up = False
        state.prober = probe
        state.settled = asyncio.Event()
        probe.hosts.add(key)

    @staticmethod
    def _settle(state: _HostState) -> None:
        state.prober = None
        state.settled.set()

    async def resolve(self, key: HostKey) -> list[str]:
        """The addresses of ``key``, looked up once per run; only a host's prober gets here before it is up."""
        if key in self.addresses:
            return self.addresses[key]
        host, port = key
        if host.rstrip(".").endswith(".invalid") or host.rstrip(".") == "invalid":
            # RFC 6761: `.invalid` never resolves, so answer without asking a resolver (no packet leaves the host).
            self.failed_lookups[key] = _permanent("dns_not_found", f"{host}: reserved name (RFC 6761), never resolves")
            raise self.failed_lookups[key]
        try:
            async with asyncio.timeout(self.resolve_timeout):
                if self.resolver is not None:
                    found = [str(address) for address in await self.resolver(host, port)]
                else:
                    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
                    found = [str(info[4][0]) for info in infos]
        except socket.gaierror as error:
            # "No such host" is an answer, not an outage: recorded as permanent so re-runs do not retry it.
            # "Try again" (EAI_AGAIN) and other resolver errors say the resolver (or the network) is down.
            if error.errno in _HOST_NOT_FOUND:
                self.failed_lookups[key] = _permanent("dns_not_found", f"{host}: {error!r}")
                raise self.failed_lookups[key] from error
            raise _unreachable("dns_error", f"{host}: {error!r}", key) from error
        except TimeoutError as error:
            raise _unreachable("dns_timeout", f"{host}: no answer within {self.resolve_timeout}s", key) from error
        except OSError as error:
            raise _unreachable("dns_error", f"{host}: {error!r}", key) from error
        self.addresses[key] = list(dict.fromkeys(found))
        return self.addresses[key]


@dataclass
class _Run:
    """State of one fetch run: clients, semaphores and counters live here, never in module globals.

    ``failed_runs`` holds, for URLs whose last record was retryable, how many runs in a row ended so.
    """

    options: FetchOptions
    cache: ImageCache
    mirror_dir: Path | None
    executor: ThreadPoolExecutor
    stack: AsyncExitStack
    logger: logging.Logger | None
    global_slots: asyncio.Semaphore
    hosts: _Hosts
    failed_runs: dict[str, int] = field(default_factory=dict)
    host_slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    clients: dict[str, list[_Shard]] = field(default_factory=dict)
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
            elif self.options.offline:
                return _Outcome("deferred", source, "offline", "offline: true: not fetched", elapsed_s=time.perf_counter() - started)
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
        except _HostDown as down:
            outcome = _Outcome("deferred", source, "host_unreachable", down.detail, attempts=down.attempts)
        await self._in_thread(self.cache.write_status, digest, self._record(url, outcome))
        return dataclasses.replace(outcome, elapsed_s=time.perf_counter() - started)

    def _record(self, url: str, outcome: _Outcome) -> StatusRecord:
        """The status record of ``outcome``; a retryable one says when a later run may try again."""
        now = self.options.now()
        failed_runs, next_attempt_at = 0, None
        if outcome.status in RETRYABLE:
            failed_runs = self.failed_runs.get(url, 0) + 1
            next_attempt_at = now + rerun_backoff(failed_runs, base=self.options.rerun_backoff_base,
                                                  cap=self.options.rerun_backoff_max)
        return StatusRecord(url=url, status=outcome.status, reason=outcome.reason, detail=outcome.detail,
                            variant=self.cache.variant if outcome.status == "ok" else None, source=outcome.source,
                            n_bytes=outcome.n_bytes, width=outcome.width, height=outcome.height,
                            attempts=outcome.attempts, recorded_at=now, failed_runs=failed_runs,
                            next_attempt_at=next_attempt_at)

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
        """The body of ``url`` and the number of tries; raises ``_Failure`` or ``_HostDown`` (``attempts`` set).

        A host-level failure is retried only by the host's prober; any other URL that meets one goes straight
        back to ``_Hosts.admit``, which waits for the prober's verdict.
        """
        options = self.options
        rng = random.Random(f"{options.seed}:{url}")
        probe = _Probe()
        attempts = retry = 0
        try:
            while True:
                attempts += 1
                try:
                    return await self._follow(url, probe), attempts
                except PolicyRefused as refused:  # a redirect hop refused by the policy
                    failure = _permanent(refused.reason, refused.detail)
                    failure.attempts = attempts
                    raise failure from refused
                except _HostDown as down:
                    down.attempts = attempts - 1  # the try that met a host already given up does not count
                    raise
                except _Failure as error:
                    error.attempts = attempts
                    if error.permanent:
                        raise
                    if error.host is not None and not self.hosts.failed(error.host, probe):
                        continue  # not one of this URL's retries: ``admit`` waits for the prober's verdict
                    if retry == options.max_retries:
                        if error.host is not None:
                            host_down = self.hosts.give_up(error.host, probe, error)
                            host_down.attempts = attempts
                            raise host_down from error
                        raise
                    delay = backoff_delay(retry, base=options.backoff_base, cap=options.backoff_max, rng=rng)
                    if error.retry_after is not None:
                        delay = error.retry_after
                    retry += 1
                    await options.sleep(delay)
        finally:
            self.hosts.release(probe)

    async def _follow(self, url: str, probe: _Probe) -> bytes:
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
            key = (host, target.port or (443 if target.scheme == "https" else 80))
            await self.hosts.admit(key, probe)  # before taking slots: a URL waiting on a probe holds none
            slot = self.host_slots.setdefault(host, asyncio.Semaphore(self.options.per_host_limit))
            async with slot, self.global_slots:
                body_or_location = await self._request(target, key)
            if isinstance(body_or_location, bytes):
                return body_or_location
            try:
                current = str(target.join(body_or_location))
            except httpx.InvalidURL as error:
                raise _permanent("bad_redirect", f"Location {body_or_location!r}: {error}") from error
        raise _permanent("too_many_redirects", f"more than {self.options.max_redirects} redirects from {url}")

    async def _request(self, target: httpx.URL, key: HostKey) -> bytes | str:
        """Send one request; return the body, or the ``Location`` of a redirect."""
        options = self.options
        policy = options.policy
        host = key[0]
        pinned = None
        if not policy.host_is_allowed(host):
            pinned = checked_address(host, await self.hosts.resolve(key), policy)
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
                    self.hosts.reachable(key)
                    return await self._read_response(response)
        except httpx.TransportError as error:
            raise self._transport_failure(error, key) from error
        except httpx.InvalidURL as error:
            raise _permanent("invalid_url", repr(error)) from error
        except TimeoutError as error:
            raise _transient("timeout", f"no full response within total_timeout={options.total_timeout}s") from error
        except httpx.DecodingError as error:  # a broken Content-Encoding (gzip/deflate) from the server
            raise _permanent("bad_encoding", repr(error)) from error
        finally:
            shard.in_flight -= 1

    def _transport_failure(self, error: httpx.TransportError, key: HostKey) -> _Failure:
        """Classify a transport error: about the host (see ``_Hosts``), or about this one request."""
        reason = _connect_failure_reason(error)
        if reason == "dns_not_found":
            self.hosts.failed_lookups[key] = _permanent(reason, f"{key[0]}: {error!r}")
            return self.hosts.failed_lookups[key]
        if reason is not None:
            return _unreachable(reason, repr(error), key)
        if isinstance(error, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return _permanent("invalid_url", repr(error))
        self.hosts.reachable(key)  # connected (a TLS error, a reset, a slow body): the host itself is there
        if isinstance(error, httpx.TimeoutException):
            return _transient("timeout", repr(error))
        return _transient("transport_error", repr(error))

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


def _backing_off_outcome(record: StatusRecord, elapsed: float) -> _Outcome:
    due = datetime.fromtimestamp(record.next_attempt_at or 0.0, UTC).isoformat(timespec="seconds")
    detail = f"next attempt after {due} (run {record.failed_runs} without an answer: {record.reason}: {record.detail})"
    return _Outcome("deferred", "cache", "backoff", detail, elapsed_s=elapsed)


def _round_robin_by_host(urls: list[str]) -> list[str]:
    """``urls`` reordered to take one URL of each host in turn, so that hosts are probed side by side.

    In dump order the fetch window can be full of one dead host's URLs, all waiting on its probe; offline,
    hosts would then be given up one after another.
    """
    seen: Counter[tuple[str, int | None]] = Counter()
    turns: list[int] = []  # the URL's position among its host's URLs
    for url in urls:
        try:
            parts = urlsplit(url)
            key = ((parts.hostname or "").lower(), parts.port)
        except ValueError:  # a bad port or IPv6 literal: fails on its own later
            key = ("", None)
        turns.append(seen[key])
        seen[key] += 1
    order = sorted(range(len(urls)), key=turns.__getitem__)  # stable: hosts keep their order within a turn
    return [urls[i] for i in order]


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
    failed_runs: dict[str, int] = {}
    now = options.now()
    backing_off = 0
    for url in unique_urls:
        lookup_started = time.perf_counter()
        record = cache.read_status(digests[url])
        if record is not None and cache.is_usable(record, digests[url], options.retry_permanent):
            elapsed = time.perf_counter() - lookup_started
            outcomes[url] = _cached_outcome(record, cache.image_path(digests[url]), elapsed)
        elif record is not None and record.is_backing_off(now) and not options.retry_deferred:
            outcomes[url] = _backing_off_outcome(record, time.perf_counter() - lookup_started)
            backing_off += 1
        else:
            to_fetch.append(url)
            if record is not None and record.is_retryable:
                failed_runs[url] = record.failed_runs
    if logger is not None:
        logger.info("images: %d unique URLs, %d answered by the cache, %d backing off, %d to fetch",
                    len(unique_urls), len(outcomes) - backing_off, backing_off, len(to_fetch))
    workers = options.decode_workers or min(4, os.cpu_count() or 1)
    hosts = _Hosts(options.connect_timeout, options.resolver)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-decode") as executor:
        async with AsyncExitStack() as stack:
            run = _Run(options, cache, mirror_dir, executor, stack, logger, asyncio.Semaphore(options.max_concurrency),
                       hosts, failed_runs)
            await _drive(run, _round_robin_by_host(to_fetch), digests, outcomes, started)
    given_up = hosts.given_up()
    if logger is not None:
        for host, cause, n_deferred in given_up:  # one line per host, however many URLs it had
            logger.warning("images: host %s unreachable (%s: %s): deferred %d URLs to a later run",
                           host, cause.reason, cause.detail, n_deferred)
    return _report(requests, outcomes, digests, run.network_requests, time.perf_counter() - started,
                   {host: cause.reason for host, cause, _ in given_up})


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
            network_requests: int, elapsed: float, hosts_unreachable: dict[str, str]) -> FetchReport:
    rows = []
    for item_id, url in requests:
        o = outcomes[url]
        rows.append((item_id, url, digests[url], o.status, o.reason, o.detail, o.image_path, o.source, o.n_bytes,
                     o.width, o.height, o.attempts, o.elapsed_s))
    results = pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row")
    sources = Counter(results["source"].to_list())
    failures = Counter(r for s, r in zip(results["status"], results["reason"]) if s != "ok")
    deferred = Counter(r for s, r in zip(results["status"], results["reason"], strict=True) if s == "deferred")
    return FetchReport(
        results=results,
        fetched_from_network=sources["network"],
        from_cache=sources["cache"],
        from_mirror=sources["mirror"],
        failures_by_reason=dict(sorted(failures.items())),
        network_requests=network_requests,
        elapsed_s=elapsed,
        throughput=len(rows) / elapsed if elapsed > 0 else 0.0,
        deferred=deferred["host_unreachable"] + deferred["offline"],
        backing_off=deferred["backoff"],
        hosts_unreachable=dict(sorted(hosts_unreachable.items())),
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
