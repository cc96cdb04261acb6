"""One try at one URL over HTTP(S): resolve and check, pin, send, follow redirects, enforce the limits.

- **resolve and check**: the host is resolved once per run (``options.resolver`` or ``getaddrinfo``) and *every*
  address checked against the policy (``url_policy.checked_address``); hosts in ``allowed_hosts`` skip both;
- **pin**: the request goes to the checked address (the URL's host replaced by the IP, with ``Host`` and TLS SNI
  keeping the name), so DNS rebinding cannot swap in a private address between check and connect;
- **redirects** are followed by hand, at most ``max_redirects``, and every hop goes through the same checks (a
  hop to ``file://`` is refused): letting httpx follow them would connect to unchecked addresses;
- **limits**: ``total_timeout`` on the wall clock per request; the body is streamed and the request aborted as
  soon as it passes ``max_bytes`` (at once when ``Content-Length`` says so), counting *decoded* bytes so a gzip
  bomb is caught too; the ``Content-Type`` must be ``image/*``.

Errors come out as ``failures.FetchFailure`` (permanent or transient, see ``failures``), with ``host`` set when
the connect failure is about the host rather than the URL (``connect_failure_reason``); what was seen of a host
is reported to ``hosts.Hosts`` (``reachable``, ``not_found``). Retrying and admission are the caller's: every
hop is sent inside ``gate(host)``, which waits for the host's probe and takes the concurrency slots.

Clients: each host name gets its own few ``httpx.AsyncClient`` objects (small pools cost less CPU than one big
one: see ``Transport._shard`` for the figures), so pooled connections, which are opened to the checked IP, are
never shared between host names (TLS SNI and ``Host`` differ per name); ``trust_env=False`` because a proxy from
the environment would bypass the address checks and the pinning.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from rec_pipeline.images.failures import (
    HOST_NOT_FOUND,
    FetchFailure,
    HostKey,
    permanent,
    transient,
    unreachable,
)
from rec_pipeline.images.hosts import Hosts
from rec_pipeline.images.options import FetchOptions, Resolver
from rec_pipeline.images.retry import parse_retry_after
from rec_pipeline.images.url_policy import PolicyRefused, check_scheme, checked_address

Gate = Callable[[HostKey], AbstractAsyncContextManager[None]]
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
CONNECTIONS_PER_CLIENT = 4

# Connect errors that are about the host or the route to it, not about one URL.
_UNREACHABLE_ERRNOS: dict[int, str] = {
    code: reason
    for name, reason in (
        ("ECONNREFUSED", "connection_refused"),
        ("ENETUNREACH", "network_unreachable"),
        ("EHOSTUNREACH", "no_route_to_host"),
        ("ENETDOWN", "network_unreachable"),
        ("EHOSTDOWN", "no_route_to_host"),
    )
    if (code := getattr(errno, name, None)) is not None
}


@dataclass
class _Shard:
    """One of a host's clients and how many requests it carries right now."""

    client: httpx.AsyncClient
    in_flight: int = 0


class Transport:
    """The HTTP side of one fetch run: per-host clients, resolved addresses and the request count.

    Use as ``async with Transport(options, hosts) as transport``: leaving the block closes every client.
    """

    def __init__(self, options: FetchOptions, hosts: Hosts) -> None:
        self.options = options
        self.hosts = hosts
        self.network_requests = 0  # requests actually sent, redirect hops and retries included
        self._policy = options.policy
        self._addresses: dict[HostKey, list[str]] = {}
        self._clients: dict[str, list[_Shard]] = {}
        self._ssl_context: ssl.SSLContext | None = None
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def follow(self, url: str, gate: Gate) -> bytes:
        """One try: the body of ``url``, following redirects and checking every hop against the policy.

        Raises ``FetchFailure`` (a policy refusal of a hop included) or whatever ``gate`` raises.
        """
        try:
            return await self._follow(url, gate)
        except PolicyRefused as refused:  # an address or a redirect hop refused: as final as a refused URL
            raise permanent(refused.reason, refused.detail) from refused

    async def _follow(self, url: str, gate: Gate) -> bytes:
        current = url
        for hop in range(self.options.max_redirects + 1):
            if hop > 0 and check_scheme(current) == "file":
                raise PolicyRefused("refused_scheme", f"redirect to a file URL {current!r}")
            try:
                target = httpx.URL(current)
            except httpx.InvalidURL as error:
                raise permanent("invalid_url", f"{current!r}: {error}") from error
            host = target.raw_host.decode("ascii").lower()
            if not host:
                raise permanent("invalid_url", f"no host in {current!r}")
            key = (host, target.port or (443 if target.scheme == "https" else 80))
            async with gate(key):
                body_or_location = await self._request(target, key)
            if isinstance(body_or_location, bytes):
                return body_or_location
            try:
                current = str(target.join(body_or_location))
            except httpx.InvalidURL as error:
                raise permanent("bad_redirect", f"Location {body_or_location!r}: {error}") from error
        raise permanent("too_many_redirects", f"more than {self.options.max_redirects} redirects from {url}")

    async def resolve(self, key: HostKey) -> list[str]:
        """The addresses of ``key``, looked up once per run; only a host's prober gets here before it is up."""
        if key not in self._addresses:
            try:
                found = await lookup(*key, resolver=self.options.resolver, timeout=self.options.connect_timeout)
            except FetchFailure as failure:
                if failure.permanent:  # no such host: its other URLs fail at once
                    self.hosts.not_found(key, failure)
                raise
            self._addresses[key] = list(dict.fromkeys(found))
        return self._addresses[key]

    async def _request(self, target: httpx.URL, key: HostKey) -> bytes | str:
        """Send one request; return the body, or the ``Location`` of a redirect."""
        options = self.options
        host = key[0]
        pinned = None
        if not self._policy.host_is_allowed(host):
            pinned = checked_address(host, await self.resolve(key), self._policy)
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
            raise permanent("invalid_url", repr(error)) from error
        except TimeoutError as error:
            raise transient("timeout", f"no full response within total_timeout={options.total_timeout}s") from error
        except httpx.DecodingError as error:  # a broken Content-Encoding (gzip/deflate) from the server
            raise permanent("bad_encoding", repr(error)) from error
        finally:
            shard.in_flight -= 1

    def _transport_failure(self, error: httpx.TransportError, key: HostKey) -> FetchFailure:
        """Classify a transport error: about the host (see ``hosts.Hosts``), or about this one request."""
        reason = connect_failure_reason(error)
        if reason == "dns_not_found":
            return self.hosts.not_found(key, permanent(reason, f"{key[0]}: {error!r}"))
        if reason is not None:
            return unreachable(reason, repr(error), key)
        if isinstance(error, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return permanent("invalid_url", repr(error))
        self.hosts.reachable(key)  # connected (a TLS error, a reset, a slow body): the host itself is there
        if isinstance(error, httpx.TimeoutException):
            return transient("timeout", repr(error))
        return transient("transport_error", repr(error))

    async def _read_response(self, response: httpx.Response) -> bytes | str:
        options = self.options
        code = response.status_code
        if code in REDIRECT_CODES:
            location = response.headers.get("location")
            if not location:
                raise permanent("bad_redirect", f"HTTP {code} without Location")
            return location
        if code == 429 or code == 408 or code >= 500:
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), now=time.time(), cap=options.backoff_max
            )
            raise transient(f"http_{code}", f"HTTP {code}", retry_after)
        if code != 200:
            raise permanent(f"http_{code}", f"HTTP {code}")
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise permanent("not_image", f"Content-Type {content_type or '(none)'!r}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > options.max_bytes:
            raise permanent("too_large", f"Content-Length {int(declared):,} > max_bytes={options.max_bytes:,}")
        chunks: list[bytes] = []
        received = 0
        # aiter_bytes yields *decoded* bytes, so a gzip-encoded bomb is caught by the same limit.
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > options.max_bytes:
                # Leaving the ``stream`` block closes the connection: the rest is never downloaded.
                raise permanent("too_large", f"body passed max_bytes={options.max_bytes:,} while streaming")
            chunks.append(chunk)
        return b"".join(chunks)

    def _shard(self, host: str) -> _Shard:
        """The least busy of ``host``'s clients: a few small connection pools rather than one large one.

        httpcore 1.0 re-examines its whole pool whenever a request starts or ends: an ``is_readable`` poll per
        idle connection, and a list of all connections built once per connection (quadratic in the pool size).
        One pool of ``per_host_limit`` connections pays that on every event; pools of ``CONNECTIONS_PER_CLIENT``
        keep it small. Measured with ``bench/images.py --clients`` (2,000 images, 50 ms latency, 32 in flight to
        one host, medians of 3, on a shared 2-core machine): one client per host 120.6 images/s at 6.10 ms CPU
        per image, shards of 4 connections 135.8 images/s at 4.05 ms: a third less CPU per image and 13% more
        throughput where decoding competes for the CPU, so the shards stay.
        The per-host semaphore caps requests at ``per_host_limit``, so the least busy shard always has a free
        connection and no request waits inside a pool.
        """
        shards = self._clients.get(host)
        if shards is None:
            options = self.options
            if self._ssl_context is None:
                # One context for all clients: loading the CA bundle costs ~10-30 ms each time.
                self._ssl_context = ssl.create_default_context(cafile=_ca_bundle())
            n_shards = -(-options.per_host_limit // CONNECTIONS_PER_CLIENT)
            per_client = -(-options.per_host_limit // n_shards)
            shards = []
            for _ in range(n_shards):
                client = httpx.AsyncClient(
                    timeout=httpx.Timeout(
                        connect=options.connect_timeout,
                        read=options.read_timeout,
                        write=options.read_timeout,
                        pool=options.total_timeout,
                    ),
                    limits=httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client),
                    follow_redirects=False,
                    trust_env=False,
                    verify=self._ssl_context,
                    headers={"User-Agent": options.user_agent, "Accept": "image/*"},
                )
                self._stack.push_async_callback(client.aclose)
                shards.append(_Shard(client))
            self._clients[host] = shards
        return min(shards, key=lambda shard: shard.in_flight)


async def lookup(host: str, port: int, *, resolver: Resolver | None, timeout: float) -> list[str]:
    """The addresses ``host`` resolves to; raises a permanent ``dns_not_found`` or a host-level failure.

    "No such host" is an answer, not an outage: permanent, so re-runs do not retry it. "Try again" (EAI_AGAIN),
    other resolver errors and a timeout say the resolver (or the network) is down: host-level, transient.
    """
    key = (host, port)
    if host.rstrip(".").endswith(".invalid") or host.rstrip(".") == "invalid":
        # RFC 6761: `.invalid` never resolves, so answer without asking a resolver (no packet leaves the host).
        raise permanent("dns_not_found", f"{host}: reserved name (RFC 6761), never resolves")
    try:
        async with asyncio.timeout(timeout):
            if resolver is not None:
                return [str(address) for address in await resolver(host, port)]
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            return [str(info[4][0]) for info in infos]
    except socket.gaierror as error:
        if error.errno in HOST_NOT_FOUND:
            raise permanent("dns_not_found", f"{host}: {error!r}") from error
        raise unreachable("dns_error", f"{host}: {error!r}", key) from error
    except TimeoutError as error:
        raise unreachable("dns_timeout", f"{host}: no answer within {timeout}s", key) from error
    except OSError as error:
        raise unreachable("dns_error", f"{host}: {error!r}", key) from error


def connect_failure_reason(error: httpx.TransportError) -> str | None:
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
            return "dns_not_found" if cause.errno in HOST_NOT_FOUND else "dns_error"
        if isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS:
            return _UNREACHABLE_ERRNOS[cause.errno]
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions it was raised from (httpx wraps httpcore wraps anyio wraps the OSError)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _ca_bundle() -> str | None:
    try:
        import certifi
    except ImportError:  # fall back to the system store
        return None
    return certifi.where()
