"""Fetching over real HTTP from a local threaded server: success, failure classes, limits and the URL policy.

The tests count what happened (requests the server logged, lookups the resolver stub answered, waits the
fetcher asked for, requests in flight), never wall time. A test whose broken form would wait instead of fail
(a timeout that never fires, an hour of backoff) carries a ``timeout`` mark: a hang guard, not a timing
assertion. Nothing leaves 127.0.0.1: names go through a resolver stub or end in ``.invalid``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from PIL import Image

from rec_pipeline.images.fetch import FetchReport, fetch_images
from rec_pipeline_tests.images.http_server import (
    LocalHTTPServer,
    Reply,
    bomb_png,
    local_fetch_options,
    make_image_bytes,
    redirect,
)

PNG = make_image_bytes((40, 30))
JPEG = make_image_bytes((60, 20), image_format="JPEG")


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as running:
        yield running


class SleepLog:
    """A ``FetchOptions.sleep`` that records each wait the fetcher asks for and yields without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


class CountingResolver:
    """A ``FetchOptions.resolver`` answering from a table, counting lookups per name; any other name gets what
    getaddrinfo says for a name that does not exist (EAI_NONAME). No DNS query leaves the machine."""

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: Counter[str] = Counter()

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls[host] += 1
        if host in self.answers:
            return self.answers[host]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def _row(report: FetchReport, item_id: str = "i1") -> dict:
    return report.results.filter(report.results["item_id"] == item_id).row(0, named=True)


def _fetch_one(url: str, tmp_path: Path, **overrides) -> tuple[dict, FetchReport]:
    report = fetch_images([("i1", url)], tmp_path / "cache", None, local_fetch_options(**overrides))
    return _row(report), report


def test_png_and_jpeg_are_fetched_resized_and_stored(server: LocalHTTPServer, tmp_path: Path) -> None:
    png_url = server.route("/a.png", Reply(body=PNG))
    jpeg_url = server.route("/b.jpg", Reply(body=JPEG, content_type="image/jpeg"))
    report = fetch_images([("i1", png_url), ("i2", jpeg_url)], tmp_path / "cache", None, local_fetch_options())
    assert report.results["status"].to_list() == ["ok", "ok"]
    assert report.fetched_from_network == 2 and report.network_requests == 2 and report.failures_by_reason == {}
    png_row, jpeg_row = _row(report, "i1"), _row(report, "i2")
    assert (png_row["width"], png_row["height"], png_row["n_bytes"]) == (40, 30, len(PNG))
    assert (jpeg_row["width"], jpeg_row["height"], jpeg_row["n_bytes"]) == (60, 20, len(JPEG))
    for row in (png_row, jpeg_row):
        assert row["source"] == "network" and row["attempts"] == 1 and row["reason"] is None
        with Image.open(row["image_path"]) as stored:
            assert stored.format == "PNG" and stored.size == (16, 16) and stored.mode == "RGB"


def test_items_sharing_a_url_cost_one_request(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/shared.png", Reply(body=PNG))
    report = fetch_images([("i1", url), ("i2", url), ("i3", url)], tmp_path, None, local_fetch_options())
    assert server.count("/shared.png") == 1
    assert report.results["item_id"].to_list() == ["i1", "i2", "i3"]
    assert report.results["image_path"].n_unique() == 1 and report.n_ok == 3


@pytest.mark.parametrize("status", [404, 410, 403])
def test_client_errors_are_permanent_and_not_retried(server: LocalHTTPServer, tmp_path: Path, status: int) -> None:
    url = server.route("/gone.png", Reply(status=status, body=b"no", content_type="text/plain"))
    row, report = _fetch_one(url, tmp_path, max_retries=3)
    assert (row["status"], row["reason"]) == ("failed_permanent", f"http_{status}")
    assert server.count("/gone.png") == 1
    assert report.failures_by_reason == {f"http_{status}": 1}


def test_server_error_then_success_is_retried_within_the_run(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/flaky.png", Reply(status=500, body=b"oops", content_type="text/plain"), Reply(body=PNG))
    row, _ = _fetch_one(url, tmp_path, max_retries=2)
    assert row["status"] == "ok" and row["attempts"] == 2
    assert server.count("/flaky.png") == 2


def test_persistent_server_errors_end_as_transient_after_all_retries(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/down.png", Reply(status=503, body=b"down", content_type="text/plain"))
    row, _ = _fetch_one(url, tmp_path, max_retries=2)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed_transient", "http_503", 3)
    assert server.count("/down.png") == 3


def test_a_retry_waits_out_the_backoff(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/flaky.png", Reply(status=503, content_type=None), Reply(body=PNG))
    sleeps = SleepLog()
    row, _ = _fetch_one(url, tmp_path, backoff_base=4.0, backoff_max=10.0, sleep=sleeps)
    assert row["status"] == "ok" and server.count("/flaky.png") == 2
    assert len(sleeps.delays) == 1 and 2.0 <= sleeps.delays[0] <= 4.0  # "equal jitter" of the first 4 s step


def test_retry_after_replaces_a_long_backoff(server: LocalHTTPServer, tmp_path: Path) -> None:
    # The backoff alone would wait 2.5-5 s; "Retry-After: 0" says go again now.
    url = server.route(
        "/busy.png", Reply(status=429, content_type=None, headers=(("Retry-After", "0"),)), Reply(body=PNG)
    )
    sleeps = SleepLog()
    row, _ = _fetch_one(url, tmp_path, backoff_base=5.0, backoff_max=10.0, sleep=sleeps)
    assert row["status"] == "ok" and row["attempts"] == 2 and server.count("/busy.png") == 2
    assert sleeps.delays == [0.0]


def test_retry_after_is_waited_for_but_capped(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route(
        "/busy.png", Reply(status=429, content_type=None, headers=(("Retry-After", "3600"),)), Reply(body=PNG)
    )
    sleeps = SleepLog()
    row, _ = _fetch_one(url, tmp_path, backoff_base=0.001, backoff_max=0.4, sleep=sleeps)
    assert row["status"] == "ok" and server.count("/busy.png") == 2
    assert sleeps.delays == [0.4]  # the server's hour, capped at backoff_max; not the 1 ms backoff


@pytest.mark.timeout(60)  # hang guard: the server never answers, so only the read timeout can end the fetch
def test_a_response_slower_than_the_read_timeout_is_a_transient_timeout(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    url = server.route("/slow.png", Reply(body=PNG, delay=3600.0))
    row, _ = _fetch_one(url, tmp_path, read_timeout=0.3, total_timeout=3600.0, max_retries=0)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed_transient", "timeout", 1)
    assert "ReadTimeout" in row["detail"] and server.count("/slow.png") == 1


@pytest.mark.timeout(60)  # hang guard: the server never answers, so only total_timeout can end the fetch
def test_total_timeout_caps_a_request_even_with_a_generous_read_timeout(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    url = server.route("/slow.png", Reply(body=PNG, delay=3600.0))
    row, _ = _fetch_one(url, tmp_path, read_timeout=3600.0, total_timeout=0.3, max_retries=0)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed_transient", "timeout", 1)
    assert "total_timeout" in row["detail"] and server.count("/slow.png") == 1


def test_declared_oversize_body_is_refused_from_the_header(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/big.png", Reply(body=b"\0" * 200_000))
    row, _ = _fetch_one(url, tmp_path, max_bytes=50_000)
    assert (row["status"], row["reason"]) == ("failed_permanent", "too_large")


@pytest.mark.timeout(60)  # hang guard
def test_an_endless_body_is_aborted_at_max_bytes(server: LocalHTTPServer, tmp_path: Path) -> None:
    # No Content-Length and a body that never ends: the fetch can only finish by stopping at the limit (a client
    # that kept reading would end on total_timeout instead, reason "timeout").
    url = server.route("/endless.png", Reply(stream_forever=True))
    row, _ = _fetch_one(url, tmp_path, max_bytes=300_000, read_timeout=10.0, total_timeout=30.0)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed_permanent", "too_large", 1)
    assert server.count("/endless.png") == 1


def test_a_truncated_image_file_is_permanently_undecodable(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/half.png", Reply(body=PNG[: len(PNG) // 2]))
    row, _ = _fetch_one(url, tmp_path)
    assert (row["status"], row["reason"]) == ("failed_permanent", "undecodable")


def test_a_body_cut_short_by_the_connection_is_transient(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/cut.png", Reply(body=PNG[:100], declared_length=len(PNG)))
    row, _ = _fetch_one(url, tmp_path, max_retries=0)
    assert (row["status"], row["reason"]) == ("failed_transient", "transport_error")


def test_non_image_content_type_is_permanent(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/page.png", Reply(body=b"<html>login</html>", content_type="text/html; charset=utf-8"))
    row, _ = _fetch_one(url, tmp_path, max_retries=3)
    assert (row["status"], row["reason"]) == ("failed_permanent", "not_image")
    assert server.count("/page.png") == 1


def test_a_decompression_bomb_is_rejected_by_its_header(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/bomb.png", Reply(body=bomb_png(30_000, 30_000)))
    row, _ = _fetch_one(url, tmp_path)
    assert (row["status"], row["reason"]) == ("failed_permanent", "too_many_pixels")
    assert row["image_path"] is None


def test_redirects_are_followed_and_each_hop_counted(server: LocalHTTPServer, tmp_path: Path) -> None:
    server.route("/final.png", Reply(body=PNG))
    url = server.route("/moved.png", redirect("/final.png", status=301))
    row, report = _fetch_one(url, tmp_path)
    assert row["status"] == "ok"
    assert server.requests == ["/moved.png", "/final.png"] and report.network_requests == 2


def test_a_redirect_to_a_metadata_address_is_refused_without_connecting(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    url = server.route("/evil.png", redirect("http://169.254.169.254/latest/meta-data/"))
    row, report = _fetch_one(url, tmp_path, max_retries=2)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed_permanent", "refused_address", 1)
    assert "169.254.169.254" in row["detail"]
    # One request, to our server: a connection attempt to the metadata address would have counted as a second.
    assert report.network_requests == 1 and server.count("/evil.png") == 1


def test_a_redirect_to_a_name_resolving_to_6to4_of_the_metadata_address_is_refused(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    resolver = CountingResolver({"127.0.0.1": ["127.0.0.1"], "metadata.offline.test": ["2002:a9fe:a9fe::"]})
    url = server.route("/evil.png", redirect("http://metadata.offline.test/latest/meta-data/"))
    row, report = _fetch_one(url, tmp_path, resolver=resolver)
    assert (row["status"], row["reason"]) == ("failed_permanent", "refused_address")
    assert "2002:a9fe:a9fe::" in row["detail"] and "169.254.169.254" in row["detail"]
    assert report.network_requests == 1 and resolver.calls == {"127.0.0.1": 1, "metadata.offline.test": 1}


@pytest.mark.parametrize("location", ["http://10.0.0.1/a.png", "file:///etc/passwd", "ftp://127.0.0.1/a.png"])
def test_redirects_to_private_addresses_or_other_schemes_are_refused(
    server: LocalHTTPServer, tmp_path: Path, location: str
) -> None:
    url = server.route("/evil.png", redirect(location))
    row, _ = _fetch_one(url, tmp_path)
    assert row["status"] == "failed_permanent"
    assert row["reason"] in {"refused_address", "refused_scheme"}


def test_a_redirect_loop_stops_at_max_redirects(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/loop.png", redirect("/loop.png"))
    row, _ = _fetch_one(url, tmp_path, max_redirects=2)
    assert (row["status"], row["reason"]) == ("failed_permanent", "too_many_redirects")
    assert server.count("/loop.png") == 3


def test_loopback_is_refused_by_default_without_any_request(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/a.png", Reply(body=PNG))
    row, _ = _fetch_one(url, tmp_path, allowed_networks=())
    assert (row["status"], row["reason"]) == ("failed_permanent", "refused_address")
    assert server.requests == []


def test_a_pinned_connection_keeps_the_host_name_in_the_host_header(server: LocalHTTPServer, tmp_path: Path) -> None:
    # "localhost" is resolved and checked, the connection goes to the checked address, and the server still
    # sees the name the URL used (virtual hosting on real CDNs depends on it).
    server.route("/a.png", Reply(body=PNG))
    row, _ = _fetch_one(f"http://localhost:{server.port}/a.png", tmp_path, allowed_networks=("127.0.0.0/8", "::1/128"))
    assert row["status"] == "ok"
    assert server.host_headers == [f"localhost:{server.port}"]


def test_allowed_hosts_admit_a_named_local_host(server: LocalHTTPServer, tmp_path: Path) -> None:
    server.route("/a.png", Reply(body=PNG))
    row, _ = _fetch_one(
        f"http://localhost:{server.port}/a.png", tmp_path, allowed_networks=(), allowed_hosts=("localhost",)
    )
    assert row["status"] == "ok"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a.png", "javascript:alert(1)", "", "http:///a.png"])
def test_unusable_urls_fail_permanently_without_requests(server: LocalHTTPServer, tmp_path: Path, url: str) -> None:
    row, _ = _fetch_one(url, tmp_path)
    assert row["status"] == "failed_permanent"
    assert row["reason"] in {"refused_scheme", "invalid_url"}
    assert server.requests == []


@pytest.mark.parametrize(("max_concurrency", "per_host_limit", "expected"), [(8, 2, 2), (8, 6, 6), (3, 8, 3)])
def test_concurrency_limits_bound_requests_in_flight(
    server: LocalHTTPServer, tmp_path: Path, max_concurrency: int, per_host_limit: int, expected: int
) -> None:
    requests = [(f"i{n}", server.route(f"/{n}.png", Reply(body=PNG, delay=0.15))) for n in range(12)]
    options = local_fetch_options(max_concurrency=max_concurrency, per_host_limit=per_host_limit)
    report = fetch_images(requests, tmp_path, None, options)
    assert report.n_ok == 12
    assert server.max_in_flight == expected


def test_non_string_urls_are_a_caller_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        fetch_images([("i1", None)], tmp_path, None, local_fetch_options())  # type: ignore[list-item]


def test_progress_is_logged_through_the_given_logger(
    server: LocalHTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Staggered delays, so the four URLs finish one by one.
    requests = [(f"i{n}", server.route(f"/{n}.png", Reply(body=PNG, delay=0.1 * n))) for n in range(4)]
    logger = logging.getLogger("rec_pipeline_tests.images.progress")
    with caplog.at_level(logging.INFO, logger=logger.name):
        fetch_images(requests, tmp_path, None, local_fetch_options(progress_every=2), logger=logger)
    messages = [record.getMessage() for record in caplog.records if record.name == logger.name]
    assert any("4 to fetch" in message for message in messages)
    assert any("fetched 2/4" in message for message in messages)
    assert any("fetched 4/4" in message for message in messages)


def test_a_host_that_does_not_exist_is_a_permanent_failure_looked_up_once(tmp_path: Path) -> None:
    """ "No such host" (EAI_NONAME) is an answer, not an outage: one lookup for all the host's URLs, no retry,
    and re-runs answer from the recorded failure without asking again."""
    resolver = CountingResolver()
    requests = [(f"item{i}", f"https://no-such-host.offline.test/{i}.png") for i in range(5)]
    options = local_fetch_options(resolver=resolver, max_retries=2)
    first = fetch_images(requests, tmp_path / "cache", None, options)
    assert resolver.calls == {"no-such-host.offline.test": 1}
    assert set(first.results["status"]) == {"failed_permanent"}
    assert set(first.results["reason"]) == {"dns_not_found"}
    assert first.results["attempts"].to_list() == [1] * 5 and first.network_requests == 0
    assert first.hosts_unreachable == {}  # not "down": the name was answered
    second = fetch_images(requests, tmp_path / "cache", None, options)
    assert set(second.results["source"]) == {"cache"} and second.network_requests == 0
    assert resolver.calls == {"no-such-host.offline.test": 1}


def test_names_under_invalid_are_answered_without_a_lookup(tmp_path: Path) -> None:
    # RFC 6761: `.invalid` never resolves, so not even the resolver is asked.
    resolver = CountingResolver()
    row, report = _fetch_one("https://images.example.invalid/a.png", tmp_path, resolver=resolver)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed_permanent", "dns_not_found", 1)
    assert resolver.calls == {} and report.network_requests == 0


def test_a_mirror_url_cannot_read_another_hosts_mirrored_file(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "b.example").mkdir(parents=True)
    (mirror / "b.example" / "x.png").write_bytes(PNG)
    requests = [
        ("own", "http://b.example/x.png"),
        ("dots", "http://a.example/../b.example/x.png"),
        ("encoded", "http://a.example/%2e%2e/b.example/x.png"),
        ("separator", "http://a.example/..%2fb.example%2fx.png"),
    ]
    # Offline: whatever the mirror does not answer stays off the network.
    report = fetch_images(requests, tmp_path / "cache", mirror, local_fetch_options(offline=True))
    rows = {row["item_id"]: row for row in report.results.iter_rows(named=True)}
    assert (rows["own"]["status"], rows["own"]["source"]) == ("ok", "mirror")
    for item in ("dots", "encoded", "separator"):
        assert (rows[item]["status"], rows[item]["reason"]) == ("failed_permanent", "refused_mirror_path"), item
    assert report.network_requests == 0 and report.from_mirror == 1


def test_a_url_that_does_not_parse_fails_alone_without_ending_the_run(server: LocalHTTPServer, tmp_path: Path) -> None:
    good = server.route("/a.png", Reply(body=PNG))
    report = fetch_images([("bad", "http://[::1/a.png"), ("good", good)], tmp_path, None, local_fetch_options())
    assert (_row(report, "bad")["status"], _row(report, "bad")["reason"]) == ("failed_permanent", "invalid_url")
    assert _row(report, "good")["status"] == "ok" and server.requests == ["/a.png"]
