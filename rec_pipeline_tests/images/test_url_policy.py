"""URL policy: which addresses, schemes and local paths an untrusted image URL may reach."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from rec_pipeline.images.url_policy import (
    PolicyRefused,
    UrlPolicy,
    address_refusal,
    check_scheme,
    checked_address,
    file_url_path,
    mirror_path,
)


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link_local"),
        ("fe80::1", "link_local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non_global"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fc00::1", "private"),
    ],
)
def test_non_public_addresses_are_refused_with_their_category(address: str, label: str) -> None:
    assert address_refusal(address) == label


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


def test_allowed_networks_admit_exactly_their_addresses() -> None:
    networks = UrlPolicy(allowed_networks=("127.0.0.1/32",)).networks
    assert address_refusal("127.0.0.1", networks) is None
    assert address_refusal("127.0.0.2", networks) == "loopback"
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"), networks) is None


def test_invalid_allowed_network_fails_at_configuration_time() -> None:
    with pytest.raises(ValueError):
        UrlPolicy(allowed_networks=("not-a-network",))


def test_a_host_with_any_private_address_is_refused_as_a_whole() -> None:
    with pytest.raises(PolicyRefused) as refused:
        checked_address("cdn.example", ["93.184.215.14", "10.1.2.3"], UrlPolicy())
    assert refused.value.reason == "refused_address"
    assert "10.1.2.3" in refused.value.detail


def test_checked_address_returns_the_address_to_pin_the_connection_to_preferring_ipv4() -> None:
    assert checked_address("cdn.example", ["93.184.215.14", "93.184.215.15"], UrlPolicy()) == "93.184.215.14"
    assert checked_address("cdn.example", ["2606:4700::1", "93.184.215.15"], UrlPolicy()) == "93.184.215.15"
    assert checked_address("cdn.example", ["2606:4700::1"], UrlPolicy()) == "2606:4700::1"


def test_allowed_hosts_skip_the_address_check_case_insensitively() -> None:
    policy = UrlPolicy(allowed_hosts=("Mirror.Internal",))
    assert checked_address("mirror.internal", ["10.0.0.5"], policy) is None
    with pytest.raises(PolicyRefused):
        checked_address("other.internal", ["10.0.0.5"], policy)


@pytest.mark.parametrize("url", ["ftp://host/a.jpg", "data:image/png;base64,AAAA", "gopher://host/", "a.jpg", ""])
def test_schemes_other_than_http_https_file_are_refused(url: str) -> None:
    with pytest.raises(PolicyRefused) as refused:
        check_scheme(url)
    assert refused.value.reason == "refused_scheme"


def test_schemes_are_case_insensitive() -> None:
    assert check_scheme("HTTPS://host/a.jpg") == "https"


def test_mirror_path_maps_host_and_path_under_the_mirror(tmp_path: Path) -> None:
    assert mirror_path("https://Images.Example.com:8443/I/a%2Bb.jpg?x=1", tmp_path) == (
        tmp_path.resolve() / "images.example.com" / "I" / "a%2Bb.jpg"
    )


def test_mirror_path_never_leaves_the_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "host").mkdir(parents=True)
    (mirror / "host" / "escape").symlink_to(tmp_path)
    assert mirror_path("https://host/escape/secret.jpg", mirror) is None
    assert mirror_path("https://host/%2e%2e/%2e%2e/secret.jpg", mirror) is not None  # encoded dots stay literal
    assert mirror_path("https://host/", mirror) is None
    assert mirror_path("https://host/a.jpg", None) is None


def test_file_urls_inside_the_mirror_resolve(tmp_path: Path) -> None:
    (tmp_path / "host").mkdir()
    target = tmp_path / "host" / "a b.png"
    target.write_bytes(b"x")
    assert file_url_path(f"file://{tmp_path}/host/a%20b.png", tmp_path) == target.resolve()


def test_file_urls_outside_the_mirror_or_via_symlinks_out_are_refused(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (mirror / "link.png").symlink_to(tmp_path / "secret.png")
    for url in (f"file://{tmp_path}/secret.png", f"file://{mirror}/link.png", f"file://{mirror}/../secret.png",
                "file://remote-host/etc/passwd"):
        with pytest.raises(PolicyRefused) as refused:
            file_url_path(url, mirror)
        assert refused.value.reason == "refused_file_url"
    with pytest.raises(PolicyRefused):
        file_url_path(f"file://{mirror}/a.png", None)
