"""When to try a URL again: within the run (backoff with jitter, ``Retry-After``) and between runs (``rerun_backoff``).

Within a run, a transient failure is retried up to ``max_retries`` times after exponential backoff with "equal
jitter" (``backoff_delay``); a ``Retry-After`` header (seconds or HTTP date, ``parse_retry_after``) replaces the
backoff, capped at ``backoff_max``. The jitter comes from a ``random.Random`` seeded with ``(seed, url)``, so it
does not depend on scheduling. A host-level failure is retried by the host's prober only (``hosts.Hosts``): the
host's other URLs wait for its verdict instead of spending retries of their own.

Between runs, a URL that ended ``failed_transient`` or ``deferred`` is not tried again before ``now +
rerun_backoff(failed_runs)``: ``rerun_backoff_base`` doubling per run in a row that ended so, capped at
``rerun_backoff_max``. No jitter there: the URLs of a dead host come due together and cost one probe.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rec_pipeline.images.failures import FetchFailure, HostDown
from rec_pipeline.images.hosts import Hosts, Probe
from rec_pipeline.images.options import FetchOptions

T = TypeVar("T")


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


async def with_retries(
    url: str, attempt: Callable[[Probe], Awaitable[T]], hosts: Hosts, options: FetchOptions
) -> tuple[T, int]:
    """``attempt``'s result for ``url`` and the number of tries; raises ``FetchFailure`` or ``HostDown`` with
    ``attempts`` set.

    ``attempt`` is one try (the request and its redirects); it gets this URL's ``Probe`` to show ``hosts``.
    A host-level failure is retried only by the host's prober; any other URL that meets one tries again at
    once, and ``Hosts.admit`` makes that try wait for the prober's verdict.
    """
    rng = random.Random(f"{options.seed}:{url}")
    probe = Probe()
    attempts = retry = 0
    try:
        while True:
            attempts += 1
            try:
                return await attempt(probe), attempts
            except HostDown as down:
                down.attempts = attempts - 1  # the try that met a host already given up does not count
                raise
            except FetchFailure as error:
                error.attempts = attempts
                if error.permanent:
                    raise
                if error.host is not None and not hosts.failed(error.host, probe):
                    continue  # not one of this URL's retries: ``admit`` waits for the prober's verdict
                if retry == options.max_retries:
                    if error.host is not None:
                        host_down = hosts.give_up(error.host, probe, error)
                        host_down.attempts = attempts
                        raise host_down from error
                    raise
                delay = backoff_delay(retry, base=options.backoff_base, cap=options.backoff_max, rng=rng)
                if error.retry_after is not None:
                    delay = error.retry_after
                retry += 1
                await options.sleep(delay)
    finally:
        hosts.release(probe)
