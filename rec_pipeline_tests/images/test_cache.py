"""The image cache's temporaries: swept once per run, at its start, instead of on every write.

The fetches here read a local mirror, so nothing touches the network.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rec_pipeline.atomic import _HOST_TAG
from rec_pipeline.images.cache import ImageCache, url_hash
from rec_pipeline.images.fetch import fetch_images
from rec_pipeline_tests.images.http_server import local_fetch_options, make_image_bytes


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _mirrored(mirror: Path, names: range) -> list[tuple[str, str]]:
    """(item, URL) pairs whose images lie in ``mirror``."""
    requests = []
    for n in names:
        path = mirror / "img.example" / "a" / f"{n}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_image_bytes(color=(n % 256, 40, 90)))
        requests.append((f"item{n}", f"https://img.example/a/{n}.png"))
    return requests


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Counter[Path]]:
    """How often each folder under ``tmp_path / "cache"`` is listed (``os.scandir``, which the sweeps use)."""
    cache_dir = tmp_path / "cache"
    listed: Counter[Path] = Counter()
    scandir: Callable[..., object] = os.scandir

    def counting_scandir(path: str | os.PathLike[str] = ".") -> object:
        entries = scandir(path)  # a folder that does not exist is not listed
        if Path(path).is_relative_to(cache_dir):
            listed[Path(path)] += 1
        return entries

    monkeypatch.setattr(os, "scandir", counting_scandir)
    yield listed


def test_cache_writes_list_no_folder_and_a_run_lists_each_folder_at_most_once(
    tmp_path: Path, listings: Counter[Path]
) -> None:
    cache_dir, mirror = tmp_path / "cache", tmp_path / "mirror"
    first = fetch_images(_mirrored(mirror, range(40)), cache_dir, mirror, local_fetch_options())
    assert first.n_ok == 40
    assert listings == Counter()  # 80 writes into a new cache: not one listing (one per write before)

    folders = {path for path in cache_dir.rglob("*") if path.is_dir()}
    listings.clear()  # rglob lists them too
    second = fetch_images(_mirrored(mirror, range(40, 80)), cache_dir, mirror, local_fetch_options())
    assert second.n_ok == 40
    assert set(listings) <= folders  # only the folders there at the start: the sweep, not the 80 writes
    assert max(listings.values()) == 1


def test_an_orphan_of_a_dead_writer_is_kept_during_the_run_and_removed_at_the_start_of_the_next(tmp_path: Path) -> None:
    cache_dir, mirror = tmp_path / "cache", tmp_path / "mirror"
    requests = _mirrored(mirror, range(3))
    cache = ImageCache(cache_dir, local_fetch_options().variant, "png")
    digest = url_hash(requests[0][1])
    # Named like a temporary of this URL's status record: the per-write sweep used to remove exactly these.
    orphan = cache.status_path(digest).parent / f".{digest}.{_HOST_TAG}-{_dead_pid()}.abcd1234.tmp.json"

    def now_planting_an_orphan() -> float:  # called once the run has started, before the records are written
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.touch()
        return 1_700_000_000.0

    report = fetch_images(requests, cache_dir, mirror, local_fetch_options(now=now_planting_an_orphan))
    assert report.n_ok == 3 and cache.read_status(digest) is not None
    assert orphan.exists()  # the record was written next to it without a sweep

    report = fetch_images(requests, cache_dir, mirror, local_fetch_options())
    assert report.from_cache == 3
    assert not orphan.exists()


def test_a_sweep_removes_only_temporaries_of_dead_writers_on_this_host_in_every_folder(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path, "16x16-pad-png", "png")
    digest = "ab" + "0" * 62
    status_folder, image_folder = cache.status_path(digest).parent, cache.image_path(digest).parent
    other_variant = tmp_path / "images" / "32x32-crop-jpg" / "cd"
    dead = _dead_pid()
    orphans = [
        status_folder / f".{digest}.{_HOST_TAG}-{dead}.abcd1234.tmp.json",
        image_folder / f".{digest}.{_HOST_TAG}-{dead}.abcd1234.tmp.png",
        other_variant / f".{'cd' + '1' * 62}.{_HOST_TAG}-{dead}.x_y9z000.tmp.jpg",
    ]
    kept = [
        status_folder / f".{digest}.{_HOST_TAG}-{os.getpid()}.abcd1234.tmp.json",  # a live writer: this test
        status_folder / f".{digest}.00000000-{dead}.abcd1234.tmp.json",  # another host on a shared filesystem
        status_folder / f"{digest}.json",
    ]
    for path in orphans + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{")

    assert sorted(cache.sweep_orphans()) == sorted(orphans)
    assert all(path.exists() for path in kept) and not any(path.exists() for path in orphans)
    assert cache.sweep_orphans() == []
