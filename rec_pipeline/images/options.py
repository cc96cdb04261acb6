"""``FetchOptions``: every setting of a fetch run, in one frozen dataclass shared by all the fetch layers.

A module of its own so that the layers (``transport``, ``retry``, ``fetch``) can all read the options without
importing each other in a circle; ``rec_pipeline.images.fetch`` re-exports it, which is where callers import it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from rec_pipeline.images.cache import variant_name
from rec_pipeline.images.decode import OutputFormat, ResizeMode
from rec_pipeline.images.url_policy import UrlPolicy

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


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

    @property
    def extension(self) -> str:
        """The file extension of stored images."""
        return "png" if self.output_format == "PNG" else "jpg"
