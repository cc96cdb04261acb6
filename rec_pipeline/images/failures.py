"""Why a URL could not be fetched: the exceptions every fetch layer raises and reads, and how they are built.

A ``FetchFailure`` is *permanent* (404, not an image, too large, no such host ...: recorded, never retried) or
*transient* (429, 5xx, timeouts, connection errors: retried within the run, then by later runs). A transient
failure that carries ``host`` says the *host* cannot be reached, not just this URL: ``hosts.Hosts`` then
decides for all of the host's URLs at once, and gives the host up with ``HostDown``.
"""

from __future__ import annotations

import socket

HostKey = tuple[str, int]  # (lower-cased host name, port): what one probe vouches for

# Resolver errors that mean "no such host": an answer, not an outage (so recorded as permanent).
HOST_NOT_FOUND = frozenset(
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if code is not None
)


class FetchFailure(Exception):
    """Why a URL could not be fetched; ``attempts`` is filled in by the retry loop when it gives up.

    ``host`` is set when the failure says the host cannot be reached at all (see ``hosts.Hosts``), not just
    this URL.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        host: HostKey | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.permanent = permanent
        self.retry_after = retry_after
        self.host = host
        self.attempts = 0


class HostDown(Exception):
    """The URL's host (or a redirect hop's) was given up for this run: the URL is deferred, not failed.

    Deliberately not a ``FetchFailure``, so no retry loop mistakes it for something worth another try.
    """

    def __init__(self, host: HostKey, cause: FetchFailure) -> None:
        super().__init__(f"{host_label(host)} unreachable ({cause.reason}: {cause.detail})")
        self.host = host
        self.detail = str(self)
        self.attempts = 0


def permanent(reason: str, detail: str) -> FetchFailure:
    return FetchFailure(reason, detail, permanent=True)


def transient(reason: str, detail: str, retry_after: float | None = None) -> FetchFailure:
    return FetchFailure(reason, detail, permanent=False, retry_after=retry_after)


def unreachable(reason: str, detail: str, host: HostKey) -> FetchFailure:
    return FetchFailure(reason, detail, permanent=False, host=host)


def host_label(key: HostKey) -> str:
    """``host`` for the default ports, ``host:port`` otherwise: how reports and logs name a host."""
    host, port = key
    return host if port in (80, 443) else f"{host}:{port}"
