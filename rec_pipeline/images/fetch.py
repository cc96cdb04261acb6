"""Fetch one image per (item, URL) safely and incrementally into the on-disk cache: the orchestration.

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
4. **network**, in three layers: one try is ``transport.Transport.follow`` (resolve and check every address, pin
   the connection to it, follow redirects by hand re-checking each hop, size and ``Content-Type`` limits);
   ``retry.with_retries`` retries transient failures within the run (backoff with jitter, ``Retry-After``);
   ``hosts.Hosts`` lets one URL probe each host, and defers all of a host's URLs at once (``host_unreachable``)
   when the probe gives up, so an offline run costs one probe per host, not a timeout per URL;
5. **decode** (``decode.decode_image``, in a thread pool): pixel-count guard, ``verify()``, decode, RGB,
   resize, encode; then the image and the status record are written atomically. The record of a URL without
   a final answer says when a later run may try it again (``retry.rerun_backoff``).

Failures are *permanent* (404, 410, other 4xx, non-image, too large, too many pixels, undecodable, refused by
policy, too many redirects, no such host) or *transient* (429, 5xx, 408, timeouts, connection errors); see
``failures``.

Concurrency (here, not in the layers below): at most ``max_concurrency`` requests in flight overall and
``per_host_limit`` per host name; a task waiting for a busy host holds no global slot, one waiting for a host's
probe holds none at all. URLs are started round-robin over hosts, so dead hosts are probed side by side, not one
after the other, from a bounded window of tasks.

The cache's folders are swept for temporaries of killed writers once, at the start of the run
(``ImageCache.sweep_orphans``), not on every write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import polars as pl

from rec_pipeline.images.cache import RETRYABLE, ImageCache, Status, StatusRecord, url_hash
from rec_pipeline.images.decode import ImageRejected, decode_image
from rec_pipeline.images.failures import FetchFailure, HostDown, HostKey, permanent
from rec_pipeline.images.hosts import Hosts, Probe
from rec_pipeline.images.options import FetchOptions
from rec_pipeline.images.retry import backoff_delay, parse_retry_after, rerun_backoff, with_retries
from rec_pipeline.images.transport import Transport
from rec_pipeline.images.url_policy import PolicyRefused, check_scheme, file_url_path, mirror_path

__all__ = [
    "RESULT_SCHEMA",
    "FetchOptions",
    "FetchReport",
    "afetch_images",
    "backoff_delay",
    "fetch_images",
    "image_requests",
    "parse_retry_after",
    "rerun_backoff",
]

Source = Literal["mirror", "cache", "network"]
T = TypeVar("T")

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
class FetchReport:
    """Per-row results plus counters. Counters count result rows (item, URL) by ``source``, whatever the status;
    ``network_requests`` counts HTTP requests actually sent (redirect hops and retries included).

    Rows not tried to the end are ``deferred``: ``deferred`` counts those whose host was unreachable in this
    run (reason ``host_unreachable``) or that an ``offline`` run did not send (reason ``offline``),
    ``backing_off`` those skipped because their next attempt is not due yet (reason ``backoff``).
    ``hosts_unreachable`` maps each host given up in this run to why (``dns_error`` ...).
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
    cache = ImageCache(Path(cache_dir), options.variant, options.extension)
    swept = cache.sweep_orphans()  # once per run, before any write: the writes themselves do not look
    digests = {url: url_hash(url) for url in dict.fromkeys(url for _, url in requests)}
    plan = _answer_from_cache(digests, cache, options)
    if logger is not None:
        logger.info(
            "images: %d unique URLs, %d answered by the cache, %d backing off, %d to fetch%s",
            len(digests),
            len(plan.outcomes) - plan.backing_off,
            plan.backing_off,
            len(plan.to_fetch),
            f" ({len(swept)} temporaries of killed writers removed)" if swept else "",
        )
    hosts = Hosts()
    workers = options.decode_workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-decode") as executor:
        async with Transport(options, hosts) as transport:
            run = _Run(options, cache, mirror_dir, executor, transport, hosts, logger, plan.failed_runs)
            await _drive(run, _round_robin_by_host(plan.to_fetch), digests, plan.outcomes, started)
    given_up = hosts.given_up()
    if logger is not None:
        for host, cause, n_deferred in given_up:  # one line per host, however many URLs it had
            logger.warning(
                "images: host %s unreachable (%s: %s): deferred %d URLs to a later run",
                host,
                cause.reason,
                cause.detail,
                n_deferred,
            )
    return _report(
        requests,
        plan.outcomes,
        digests,
        transport.network_requests,
        time.perf_counter() - started,
        {host: cause.reason for host, cause, _ in given_up},
    )


@dataclass
class _Plan:
    """What the cache answered (``outcomes``), what is left to fetch, and the run count of retryable URLs."""

    outcomes: dict[str, _Outcome] = field(default_factory=dict)
    to_fetch: list[str] = field(default_factory=list)
    failed_runs: dict[str, int] = field(default_factory=dict)
    backing_off: int = 0


def _answer_from_cache(digests: dict[str, str], cache: ImageCache, options: FetchOptions) -> _Plan:
    """Step 1: one status read per URL decides whether it is answered, backing off, or to be fetched."""
    plan = _Plan()
    now = options.now()
    for url, digest in digests.items():
        lookup_started = time.perf_counter()
        record = cache.read_status(digest)
        if record is not None and cache.is_usable(record, digest, options.retry_permanent):
            plan.outcomes[url] = _cached_outcome(record, cache.image_path(digest), time.perf_counter() - lookup_started)
        elif record is not None and record.is_backing_off(now) and not options.retry_deferred:
            plan.outcomes[url] = _backing_off_outcome(record, time.perf_counter() - lookup_started)
            plan.backing_off += 1
        else:
            plan.to_fetch.append(url)
            if record is not None and record.is_retryable:
                plan.failed_runs[url] = record.failed_runs
    return plan


@dataclass
class _Run:
    """State of one fetch run: slots and the layers below live here, never in module globals.

    ``failed_runs`` holds, for URLs whose last record was retryable, how many runs in a row ended so.
    """

    options: FetchOptions
    cache: ImageCache
    mirror_dir: Path | None
    executor: ThreadPoolExecutor
    transport: Transport
    hosts: Hosts
    logger: logging.Logger | None
    failed_runs: dict[str, int] = field(default_factory=dict)
    host_slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    global_slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.global_slots = asyncio.Semaphore(self.options.max_concurrency)

    async def process(self, url: str, digest: str) -> _Outcome:
        """Steps 2 to 5 for one URL; never raises for a URL's own failure, which becomes its outcome and record."""
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
                return _Outcome(
                    "deferred", source, "offline", "offline: true: not fetched", elapsed_s=time.perf_counter() - started
                )
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
            outcome = _Outcome(
                "ok",
                source,
                image_path=str(path),
                n_bytes=len(data),
                width=decoded.source_width,
                height=decoded.source_height,
                attempts=attempts,
            )
            await self._in_thread(self.cache.write_image, digest, decoded.data)
        except (PolicyRefused, ImageRejected) as error:
            outcome = _Outcome("failed_permanent", source, error.reason, error.detail, attempts=attempts)
        except FetchFailure as error:
            status: Status = "failed_permanent" if error.permanent else "failed_transient"
            outcome = _Outcome(status, source, error.reason, error.detail, attempts=error.attempts)
        except HostDown as down:
            outcome = _Outcome("deferred", source, "host_unreachable", down.detail, attempts=down.attempts)
        await self._in_thread(self.cache.write_status, digest, self._record(url, outcome))
        return dataclasses.replace(outcome, elapsed_s=time.perf_counter() - started)

    async def _download(self, url: str) -> tuple[bytes, int]:
        """The body of ``url`` and the number of tries: transport tries, retried, each hop admitted by ``_admitted``."""

        async def one_try(probe: Probe) -> bytes:
            return await self.transport.follow(url, lambda key: self._admitted(key, probe))

        return await with_retries(url, one_try, self.hosts, self.options)

    @asynccontextmanager
    async def _admitted(self, key: HostKey, probe: Probe) -> AsyncIterator[None]:
        """Wait until ``key`` may be talked to (no slot held while its probe runs), then hold a host slot and a
        global one."""
        await self.hosts.admit(key, probe)
        slot = self.host_slots.setdefault(key[0], asyncio.Semaphore(self.options.per_host_limit))
        async with slot, self.global_slots:
            yield

    def _record(self, url: str, outcome: _Outcome) -> StatusRecord:
        """The status record of ``outcome``; a retryable one says when a later run may try again."""
        now = self.options.now()
        failed_runs, next_attempt_at = 0, None
        if outcome.status in RETRYABLE:
            failed_runs = self.failed_runs.get(url, 0) + 1
            next_attempt_at = now + rerun_backoff(
                failed_runs, base=self.options.rerun_backoff_base, cap=self.options.rerun_backoff_max
            )
        return StatusRecord(
            url=url,
            status=outcome.status,
            reason=outcome.reason,
            detail=outcome.detail,
            variant=self.cache.variant if outcome.status == "ok" else None,
            source=outcome.source,
            n_bytes=outcome.n_bytes,
            width=outcome.width,
            height=outcome.height,
            attempts=outcome.attempts,
            recorded_at=now,
            failed_runs=failed_runs,
            next_attempt_at=next_attempt_at,
        )

    def _read_local(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.options.max_bytes:
                raise permanent("too_large", f"{path} is {size:,} bytes > max_bytes={self.options.max_bytes:,}")
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError) as error:
            raise permanent("file_not_found", str(path)) from error
        except OSError as error:  # permissions, I/O errors: the file is there but cannot be used
            raise permanent("file_unreadable", f"{path}: {error}") from error

    async def _in_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking work (decoding, file I/O with fsync) off the event loop, in this run's pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))


def _cached_outcome(record: StatusRecord, path: Path, elapsed: float) -> _Outcome:
    return _Outcome(
        record.status,
        "cache",
        record.reason,
        record.detail,
        str(path) if record.status == "ok" else None,
        record.n_bytes,
        record.width,
        record.height,
        0,
        elapsed,
    )


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


async def _drive(
    run: _Run, urls: list[str], digests: dict[str, str], outcomes: dict[str, _Outcome], started: float
) -> None:
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
            if run.logger is not None and (
                done_count >= next_log_at or done_count == len(urls) or now - last_log >= run.options.progress_seconds
            ):
                last_log = now
                next_log_at = (done_count // every + 1) * every
                run.logger.info(
                    "images: fetched %d/%d (%d requests, %.1f URLs/s)",
                    done_count,
                    len(urls),
                    run.transport.network_requests,
                    done_count / max(now - started, 1e-9),
                )
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _report(
    requests: Sequence[tuple[str, str]],
    outcomes: dict[str, _Outcome],
    digests: dict[str, str],
    network_requests: int,
    elapsed: float,
    hosts_unreachable: dict[str, str],
) -> FetchReport:
    rows = []
    for item_id, url in requests:
        o = outcomes[url]
        rows.append(
            (
                item_id,
                url,
                digests[url],
                o.status,
                o.reason,
                o.detail,
                o.image_path,
                o.source,
                o.n_bytes,
                o.width,
                o.height,
                o.attempts,
                o.elapsed_s,
            )
        )
    results = pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row")
    sources = Counter(results["source"].to_list())
    failures = Counter(r for s, r in zip(results["status"], results["reason"], strict=True) if s != "ok")
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
    return list(zip(exploded["item_id"].to_list(), exploded["image_urls"].to_list(), strict=True))
