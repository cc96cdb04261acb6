"""Re-runs, the disk cache and the local mirror: what is fetched again, and what never touches the network."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from rec_pipeline.images.cache import url_hash
from rec_pipeline.images.fetch import fetch_images, image_requests
from rec_pipeline_tests.images.http_server import LocalHTTPServer, Reply, local_fetch_options, make_image_bytes

PNG = make_image_bytes((40, 30))


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as running:
        yield running


def _by_item(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["item_id"]: row for row in frame.iter_rows(named=True)}


def test_a_rerun_with_everything_cached_makes_no_request(server: LocalHTTPServer, tmp_path: Path) -> None:
    requests = [(f"i{n}", server.route(f"/{n}.png", Reply(body=PNG))) for n in range(5)]
    requests.append(("gone", server.url("/missing.png")))  # 404: a permanent failure, also answered by the cache
    first = fetch_images(requests, tmp_path, None, local_fetch_options())
    assert first.n_ok == 5 and len(server.requests) == 6
    server.clear_log()

    second = fetch_images(requests, tmp_path, None, local_fetch_options())
    assert server.requests == [] and second.network_requests == 0
    assert second.from_cache == 6 and second.fetched_from_network == 0
    assert second.results["status"].to_list() == first.results["status"].to_list()
    assert second.results["image_path"].to_list() == first.results["image_path"].to_list()
    gone = _by_item(second.results)["gone"]
    assert (gone["status"], gone["reason"], gone["source"]) == ("failed_permanent", "http_404", "cache")
    assert _by_item(second.results)["i0"]["width"] == 40  # source dimensions survive in the status record


def test_a_rerun_retries_transient_failures_but_not_permanent_ones(server: LocalHTTPServer, tmp_path: Path) -> None:
    flaky = server.route("/flaky.png", Reply(status=502, content_type="text/plain"), Reply(body=PNG))
    gone = server.url("/gone.png")
    requests = [("flaky", flaky), ("gone", gone)]
    first = _by_item(fetch_images(requests, tmp_path, None, local_fetch_options(max_retries=0)).results)
    assert first["flaky"]["status"] == "failed_transient" and first["gone"]["status"] == "failed_permanent"
    server.clear_log()

    # Once its back-off has passed (the clock moved on by more than rerun_backoff_base): tried again.
    later = local_fetch_options(max_retries=0, now=lambda: time.time() + 2 * 3600)
    second = _by_item(fetch_images(requests, tmp_path, None, later).results)
    assert server.requests == ["/flaky.png"]
    assert (second["flaky"]["status"], second["flaky"]["source"]) == ("ok", "network")
    assert second["gone"]["source"] == "cache"


def test_a_transient_failure_is_not_retried_before_its_back_off_has_passed(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    flaky = server.route("/flaky.png", Reply(status=502, content_type="text/plain"), Reply(body=PNG))
    fetch_images([("flaky", flaky)], tmp_path, None, local_fetch_options(max_retries=0))
    server.clear_log()
    report = fetch_images([("flaky", flaky)], tmp_path, None, local_fetch_options(max_retries=0))
    row = report.results.row(0, named=True)
    assert server.requests == [] and report.network_requests == 0 and report.backing_off == 1
    assert (row["status"], row["reason"], row["source"]) == ("deferred", "backoff", "cache")
    assert "http_502" in row["detail"]


def test_retry_permanent_fetches_recorded_failures_again(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/later.png", Reply(status=404, content_type="text/plain"), Reply(body=PNG))
    fetch_images([("i", url)], tmp_path, None, local_fetch_options())
    assert fetch_images([("i", url)], tmp_path, None, local_fetch_options()).results["status"][0] == "failed_permanent"
    again = fetch_images([("i", url)], tmp_path, None, local_fetch_options(retry_permanent=True))
    assert again.results["status"][0] == "ok"
    assert server.count("/later.png") == 2


def test_new_items_alone_are_fetched_on_a_rerun(server: LocalHTTPServer, tmp_path: Path) -> None:
    old = [(f"i{n}", server.route(f"/{n}.png", Reply(body=PNG))) for n in range(4)]
    fetch_images(old, tmp_path, None, local_fetch_options())
    server.clear_log()
    new = ("new", server.route("/new.png", Reply(body=PNG)))
    report = fetch_images([*old, new], tmp_path, None, local_fetch_options())
    assert server.requests == ["/new.png"]
    assert (report.from_cache, report.fetched_from_network) == (4, 1)


def test_a_different_image_size_is_processed_again(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/a.png", Reply(body=PNG))
    small = fetch_images([("i", url)], tmp_path, None, local_fetch_options(image_size=(16, 16)))
    large = fetch_images([("i", url)], tmp_path, None, local_fetch_options(image_size=(32, 32)))
    assert server.count("/a.png") == 2
    assert small.results["image_path"][0] != large.results["image_path"][0]
    with Image.open(large.results["image_path"][0]) as image:
        assert image.size == (32, 32)


def test_status_records_are_json_with_the_reason_and_no_temp_files_remain(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    url = server.route("/page.png", Reply(body=b"<html/>", content_type="text/html"))
    fetch_images([("i", url)], tmp_path, None, local_fetch_options())
    digest = url_hash(url)
    record = json.loads((tmp_path / "status" / digest[:2] / f"{digest}.json").read_text())
    assert (record["url"], record["status"], record["reason"]) == (url, "failed_permanent", "not_image")
    assert [p for p in tmp_path.rglob("*") if ".tmp" in p.name] == []


def test_an_image_whose_status_record_is_missing_is_redone(server: LocalHTTPServer, tmp_path: Path) -> None:
    # A run killed between writing the image and its record leaves this state.
    url = server.route("/a.png", Reply(body=PNG))
    fetch_images([("i", url)], tmp_path, None, local_fetch_options())
    digest = url_hash(url)
    (tmp_path / "status" / digest[:2] / f"{digest}.json").unlink()
    report = fetch_images([("i", url)], tmp_path, None, local_fetch_options())
    assert report.results["source"][0] == "network" and server.count("/a.png") == 2


def test_a_mirror_hit_needs_no_request(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/I/a.png", Reply(body=PNG))
    mirror = tmp_path / "mirror"
    (mirror / "127.0.0.1" / "I").mkdir(parents=True)
    (mirror / "127.0.0.1" / "I" / "a.png").write_bytes(make_image_bytes((50, 10)))
    report = fetch_images([("i", url)], tmp_path / "cache", mirror, local_fetch_options())
    row = report.results.row(0, named=True)
    assert (row["status"], row["source"], row["width"]) == ("ok", "mirror", 50)
    assert server.requests == [] and report.from_mirror == 1


def test_the_mirror_serves_hosts_that_could_never_be_resolved(tmp_path: Path) -> None:
    # Offline runs: the real dumps point at Amazon's CDN; with a mirror, no DNS lookup or connection is needed.
    mirror = tmp_path / "mirror"
    (mirror / "images.example.invalid" / "I").mkdir(parents=True)
    (mirror / "images.example.invalid" / "I" / "x.jpg").write_bytes(make_image_bytes(image_format="JPEG"))
    url = "https://images.example.invalid/I/x.jpg"
    report = fetch_images([("i", url)], tmp_path / "cache", mirror, local_fetch_options(allowed_networks=()))
    assert report.results.row(0, named=True)["source"] == "mirror" and report.n_ok == 1


def test_a_missing_mirror_file_falls_back_to_the_network(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.route("/b.png", Reply(body=PNG))
    (tmp_path / "mirror").mkdir()
    report = fetch_images([("i", url)], tmp_path / "cache", tmp_path / "mirror", local_fetch_options())
    assert report.results["source"][0] == "network" and server.count("/b.png") == 1


def test_file_urls_are_read_only_inside_the_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ok.png").write_bytes(PNG)
    (tmp_path / "outside.png").write_bytes(PNG)
    (mirror / "sneaky.png").symlink_to(tmp_path / "outside.png")
    requests = [
        ("inside", (mirror / "ok.png").as_uri()),
        ("outside", (tmp_path / "outside.png").as_uri()),
        ("symlink", (mirror / "sneaky.png").as_uri()),
        ("missing", (mirror / "nope.png").as_uri()),
    ]
    rows = _by_item(fetch_images(requests, tmp_path / "cache", mirror, local_fetch_options()).results)
    assert (rows["inside"]["status"], rows["inside"]["source"]) == ("ok", "mirror")
    for item in ("outside", "symlink"):
        assert (rows[item]["status"], rows[item]["reason"]) == ("failed_permanent", "refused_file_url")
    assert (rows["missing"]["status"], rows["missing"]["reason"]) == ("failed_permanent", "file_not_found")


def test_oversize_mirror_files_are_refused_like_oversize_downloads(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "host").mkdir(parents=True)
    (mirror / "host" / "big.png").write_bytes(b"\0" * 5000)
    report = fetch_images(
        [("i", "https://host/big.png")], tmp_path / "cache", mirror, local_fetch_options(max_bytes=1000)
    )
    assert report.failures_by_reason == {"too_large": 1}


def test_image_requests_take_the_first_non_empty_urls_per_item() -> None:
    items = pl.DataFrame(
        {"item_id": ["a", "b", "c"], "image_urls": [["", "http://x/a1.jpg", "http://x/a2.jpg"], [], None]},
        schema={"item_id": pl.String, "image_urls": pl.List(pl.String)},
    )
    assert image_requests(items) == [("a", "http://x/a1.jpg")]
    assert image_requests(items, images_per_item=2) == [("a", "http://x/a1.jpg"), ("a", "http://x/a2.jpg")]
