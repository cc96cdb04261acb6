"""Offline and flaky networks: an unreachable host costs one probe per run, and its URLs back off between runs.

Nothing leaves 127.0.0.1: names that "do not resolve" go through ``FetchOptions.resolver`` (a counting stub that
answers like getaddrinfo offline), refused connections use closed local ports, and connect timeouts a local
listener whose accept queue is full (the kernel drops further SYNs, as a firewall would). The tests count
resolver calls, requests and log lines, never wall time; ``FetchOptions.now`` is a fake clock.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from rec_pipeline.images.cache import ImageCache, StatusRecord, url_hash
from rec_pipeline.images.fetch import FetchReport, fetch_images
from rec_pipeline.images.transport import connect_failure_reason
from rec_pipeline_tests.images.http_server import (
    LocalHTTPServer,
    Reply,
    local_fetch_options,
    make_image_bytes,
    redirect,
)

PNG = make_image_bytes((40, 30))
T0 = 1_700_000_000.0
HOUR = 3600.0


class Clock:
    """A settable wall clock for ``FetchOptions.now``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class OfflineResolver:
    """Answers like getaddrinfo without a reachable nameserver (EAI_AGAIN), except for the names in ``answers``;
    counts the calls per host. ``fail_first`` makes a name fail that many times before it resolves."""

    def __init__(self, answers: dict[str, list[str]] | None = None, fail_first: int = 0) -> None:
        self.answers = answers or {}
        self.fail_first = fail_first
        self.calls: Counter[str] = Counter()

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls[host] += 1
        if host in self.answers and self.calls[host] > self.fail_first:
            return self.answers[host]
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _stalled_port() -> Iterator[int]:
    """A 127.0.0.1 port whose accept queue is full: a connect there hangs until the client's connect timeout."""
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        time.sleep(0.05)  # let the fillers' handshakes take the queue
        yield port


def _options(clock: Clock, resolver: OfflineResolver | None = None, **overrides):
    return local_fetch_options(now=clock, resolver=resolver, backoff_base=0.001, backoff_max=0.01, **overrides)


def _statuses(report: FetchReport) -> Counter[tuple[str, str | None]]:
    return Counter(zip(report.results["status"].to_list(), report.results["reason"].to_list(), strict=True))


def _record(cache_dir: Path, url: str) -> StatusRecord:
    record = ImageCache(cache_dir, "unused", "png").read_status(url_hash(url))
    assert record is not None
    return record


def test_ten_thousand_urls_on_hosts_that_do_not_resolve_cost_one_probe_per_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = [f"cdn{n}.offline.test" for n in range(5)]
    requests = [(f"i{n}", f"https://{hosts[n % 5]}/I/{n}.jpg") for n in range(10_000)]
    resolver, clock = OfflineResolver(), Clock()
    options = _options(clock, resolver, max_retries=2, max_concurrency=16, per_host_limit=4)
    logger = logging.getLogger("rec_pipeline_tests.images.offline")
    with caplog.at_level(logging.INFO, logger=logger.name):
        first = fetch_images(requests, tmp_path, None, options, logger=logger)

    assert resolver.calls == {host: 3 for host in hosts}  # the first try and two retries, once per host
    assert first.network_requests == 0
    assert _statuses(first) == {("deferred", "host_unreachable"): 10_000}
    assert (first.deferred, first.backing_off) == (10_000, 0)
    assert first.hosts_unreachable == {host: "dns_error" for host in hosts}
    assert first.results["attempts"].sum() == 15  # only the five probing URLs tried anything
    warnings = [r.getMessage() for r in caplog.records if r.name == logger.name and r.levelno == logging.WARNING]
    assert len(warnings) == 5
    assert all("unreachable (dns_error" in w and "deferred 2000 URLs" in w for w in warnings)
    json.dumps(first.summary())  # plain values, ready for Dagster metadata

    resolver.calls.clear()
    second = fetch_images(requests, tmp_path, None, options)
    assert resolver.calls == {} and second.network_requests == 0
    assert _statuses(second) == {("deferred", "backoff"): 10_000}
    assert (second.deferred, second.backing_off, second.from_cache) == (0, 10_000, 10_000)
    assert second.hosts_unreachable == {}


def test_urls_are_tried_again_once_their_back_off_has_passed_and_it_grows_per_run_up_to_the_cap(tmp_path: Path) -> None:
    hosts = ["a.offline.test", "b.offline.test"]
    requests = [(f"i{n}", f"https://{hosts[n % 2]}/{n}.png") for n in range(20)]
    resolver, clock = OfflineResolver(), Clock()
    options = _options(clock, resolver, max_retries=1, rerun_backoff_base=HOUR, rerun_backoff_max=3 * HOUR)
    url = requests[0][1]

    fetch_images(requests, tmp_path, None, options)
    assert resolver.calls == {host: 2 for host in hosts}
    record = _record(tmp_path, url)
    assert (record.status, record.failed_runs, record.next_attempt_at) == ("deferred", 1, T0 + HOUR)

    expected = [(2, 2 * HOUR), (3, 3 * HOUR), (4, 3 * HOUR)]  # doubling, then capped
    for failed_runs, delay in expected:
        due = _record(tmp_path, url).next_attempt_at
        assert due is not None
        clock.now = due - 1
        resolver.calls.clear()
        assert fetch_images(requests, tmp_path, None, options).backing_off == 20 and resolver.calls == {}
        clock.now = due
        resolver.calls.clear()
        report = fetch_images(requests, tmp_path, None, options)
        assert resolver.calls == {host: 2 for host in hosts} and report.deferred == 20
        record = _record(tmp_path, url)
        assert (record.failed_runs, record.next_attempt_at) == (failed_runs, clock.now + delay)


def test_a_host_that_comes_back_is_fetched_and_its_back_off_cleared(server: LocalHTTPServer, tmp_path: Path) -> None:
    requests = [
        (f"i{n}", server.route(f"/{n}.png", Reply(body=PNG)).replace("127.0.0.1", "cdn.offline.test")) for n in range(6)
    ]
    resolver, clock = OfflineResolver(), Clock()
    options = _options(clock, resolver, max_retries=1)
    assert fetch_images(requests, tmp_path, None, options).deferred == 6
    assert server.requests == []

    resolver.answers["cdn.offline.test"] = ["127.0.0.1"]  # the network is back
    clock.now += 2 * HOUR
    report = fetch_images(requests, tmp_path, None, options)
    assert report.n_ok == 6 and report.hosts_unreachable == {} and len(server.requests) == 6
    record = _record(tmp_path, requests[0][1])
    assert (record.status, record.failed_runs, record.next_attempt_at) == ("ok", 0, None)


def test_a_host_that_resolves_on_a_retry_is_not_given_up(server: LocalHTTPServer, tmp_path: Path) -> None:
    requests = [
        (f"i{n}", server.route(f"/{n}.png", Reply(body=PNG)).replace("127.0.0.1", "slow-dns.test")) for n in range(8)
    ]
    resolver = OfflineResolver({"slow-dns.test": ["127.0.0.1"]}, fail_first=1)
    report = fetch_images(requests, tmp_path, None, _options(Clock(), resolver, max_retries=2))
    assert report.n_ok == 8 and report.deferred == 0 and report.hosts_unreachable == {}
    assert resolver.calls == {"slow-dns.test": 2}  # one failed lookup, one answer shared by all eight URLs


def test_refused_connections_give_a_host_up_after_its_probe(tmp_path: Path) -> None:
    ports = [_closed_port() for _ in range(3)]
    requests = [(f"i{n}", f"http://127.0.0.1:{ports[n % 3]}/{n}.png") for n in range(90)]
    report = fetch_images(requests, tmp_path, None, _options(Clock(), max_retries=1, per_host_limit=4))
    assert report.network_requests == 3 * 2  # one probe per port, tried twice; the other 87 URLs never connect
    assert _statuses(report) == {("deferred", "host_unreachable"): 90}
    assert report.hosts_unreachable == {f"127.0.0.1:{port}": "connection_refused" for port in ports}


def test_connect_timeouts_give_a_host_up_after_its_probe(tmp_path: Path) -> None:
    with _stalled_port() as first, _stalled_port() as second:
        requests = [(f"i{n}", f"http://127.0.0.1:{(first, second)[n % 2]}/{n}.png") for n in range(20)]
        report = fetch_images(requests, tmp_path, None, _options(Clock(), connect_timeout=0.2, max_retries=1))
    assert report.network_requests == 2 * 2
    assert report.deferred == 20
    assert set(report.hosts_unreachable.values()) == {"connect_timeout"}


def test_http_errors_are_about_one_url_not_the_host(server: LocalHTTPServer, tmp_path: Path) -> None:
    requests = [
        ("broken", server.route("/broken.png", Reply(status=500, content_type="text/plain"))),
        ("gone", server.url("/gone.png")),
    ]
    requests += [(f"i{n}", server.route(f"/{n}.png", Reply(body=PNG))) for n in range(10)]
    report = fetch_images(requests, tmp_path, None, _options(Clock(), max_retries=1, per_host_limit=2))
    assert report.hosts_unreachable == {} and report.deferred == 0 and report.n_ok == 10
    assert _statuses(report)[("failed_transient", "http_500")] == 1
    assert _statuses(report)[("failed_permanent", "http_404")] == 1
    assert server.count("/broken.png") == 2
    record = _record(tmp_path, requests[0][1])
    assert (record.failed_runs, record.next_attempt_at) == (1, T0 + HOUR)  # a transient URL backs off too


def test_a_redirect_to_an_unreachable_host_defers_the_url_not_its_host(server: LocalHTTPServer, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{_closed_port()}"
    requests = [(f"r{n}", server.route(f"/r{n}.png", redirect(f"http://{dead}/{n}.png"))) for n in range(4)]
    requests.append(("direct", server.route("/direct.png", Reply(body=PNG))))
    report = fetch_images(requests, tmp_path, None, _options(Clock(), max_retries=1))
    rows = {row["item_id"]: row for row in report.results.iter_rows(named=True)}
    assert report.hosts_unreachable == {dead: "connection_refused"}
    assert all((rows[f"r{n}"]["status"], rows[f"r{n}"]["reason"]) == ("deferred", "host_unreachable") for n in range(4))
    assert dead in rows["r0"]["detail"]
    assert rows["direct"]["status"] == "ok"
    # The four redirects, the probing URL's redirect again on its retry (a retry starts over), the dead hop's two
    # tries, the direct image.
    assert report.network_requests == 4 + 1 + 2 + 1


def test_the_mirror_still_serves_urls_of_an_unreachable_host(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "cdn.offline.test" / "I").mkdir(parents=True)
    (mirror / "cdn.offline.test" / "I" / "0.png").write_bytes(PNG)
    requests = [(f"i{n}", f"https://cdn.offline.test/I/{n}.png") for n in range(5)]
    resolver = OfflineResolver()
    report = fetch_images(requests, tmp_path / "cache", mirror, _options(Clock(), resolver, max_retries=1))
    assert (report.from_mirror, report.n_ok, report.deferred) == (1, 1, 4)
    assert resolver.calls == {"cdn.offline.test": 2}


def test_retry_deferred_tries_urls_whose_back_off_has_not_passed(tmp_path: Path) -> None:
    requests = [(f"i{n}", f"https://cdn.offline.test/{n}.png") for n in range(3)]
    resolver, clock = OfflineResolver(), Clock()
    fetch_images(requests, tmp_path, None, _options(clock, resolver, max_retries=0))
    report = fetch_images(requests, tmp_path, None, _options(clock, resolver, max_retries=0, retry_deferred=True))
    assert resolver.calls == {"cdn.offline.test": 2} and report.deferred == 3
    assert _record(tmp_path, requests[0][1]).failed_runs == 2


def test_status_records_from_before_the_back_off_fields_still_load(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/old.png", Reply(body=PNG))
    digest = url_hash(url)
    old = {
        "url": url,
        "status": "failed_transient",
        "reason": "timeout",
        "detail": "slow",
        "variant": None,
        "source": "network",
        "n_bytes": None,
        "width": None,
        "height": None,
        "attempts": 4,
        "recorded_at": T0,
        "version": 1,
    }
    (tmp_path / "status" / digest[:2]).mkdir(parents=True)
    (tmp_path / "status" / digest[:2] / f"{digest}.json").write_text(json.dumps(old))
    record = _record(tmp_path, url)
    assert (record.failed_runs, record.next_attempt_at) == (0, None)
    report = fetch_images([("i", url)], tmp_path, None, _options(Clock()))
    assert report.n_ok == 1 and server.count("/old.png") == 1  # no next_attempt_at: due at once, as before


def _connect_error(cause: BaseException) -> httpx.ConnectError:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise httpx.ConnectError("All connection attempts failed") from inner
    except httpx.ConnectError as error:
        return error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_connect_error(OSError(errno.ENETUNREACH, "Network is unreachable")), "network_unreachable"),
        (_connect_error(OSError(errno.EHOSTUNREACH, "No route to host")), "no_route_to_host"),
        (_connect_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")), "connection_refused"),
        (_connect_error(socket.gaierror(socket.EAI_AGAIN, "Temporary failure")), "dns_error"),
        (_connect_error(socket.gaierror(socket.EAI_NONAME, "Name or service not known")), "dns_not_found"),
        (httpx.ConnectTimeout("timed out"), "connect_timeout"),
        (_connect_error(OSError("certificate verify failed")), None),
        (httpx.ReadTimeout("timed out"), None),
        (httpx.RemoteProtocolError("peer closed connection"), None),
    ],
)
def test_only_connect_failures_about_the_host_count_as_host_level(
    error: httpx.TransportError, reason: str | None
) -> None:
    assert connect_failure_reason(error) == reason


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as running:
        yield running


def test_offline_answers_from_the_mirror_and_defers_the_rest_without_a_lookup_or_a_record(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "img.example" / "I").mkdir(parents=True)
    (mirror / "img.example" / "I" / "a.png").write_bytes(PNG)
    requests = [("mirrored", "https://img.example/I/a.png"), ("elsewhere", "https://cdn.offline.test/I/b.png")]
    resolver, clock = OfflineResolver(), Clock()
    report = fetch_images(requests, tmp_path / "cache", mirror, _options(clock, resolver, offline=True))
    assert resolver.calls == {} and report.network_requests == 0
    assert _statuses(report) == {("ok", None): 1, ("deferred", "offline"): 1}
    assert (report.deferred, report.backing_off) == (1, 0)
    # Nothing recorded for the deferred URL: going online later tries it at once, with no back-off to wait out.
    assert ImageCache(tmp_path / "cache", "unused", "png").read_status(url_hash(requests[1][1])) is None
    online = fetch_images(requests[1:], tmp_path / "cache", mirror, _options(clock, resolver, max_retries=0))
    assert resolver.calls == {"cdn.offline.test": 1} and online.deferred == 1
