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


# Each IPv6 form that carries IPv4, with the IPv4 it carries: forbidden ones must be refused naming that
# address, public ones judged like the plain public address they carry.
EMBEDDING_FORBIDDEN = [
    ("2002:7f00:1::", "loopback", "6to4 127.0.0.1"),
    ("2002:a9fe:a9fe::", "link_local", "6to4 169.254.169.254"),
    ("2002:a00:1::1", "private", "6to4 10.0.0.1"),
    ("2001:0:7f00:1::a247:2af1", "loopback", "Teredo server 127.0.0.1"),
    ("2001:0:5db8:d70e::5601:5601", "link_local", "Teredo client 169.254.169.254"),  # stored XOR-ed
    ("64:ff9b::7f00:1", "loopback", "NAT64 127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "link_local", "NAT64 169.254.169.254"),
    ("64:ff9b:1::a9fe:a9fe", "link_local", "NAT64/96 169.254.169.254"),
    # A public /96 reading does not hide the /48 one: the translator's prefix length is not in the address.
    ("64:ff9b:1:a08:8:808:808:808", "private", "NAT64/48 10.8.8.8"),
    ("::7f00:1", "loopback", "IPv4-compatible 127.0.0.1"),
    ("::a9fe:a9fe", "link_local", "IPv4-compatible 169.254.169.254"),
]
EMBEDDING_PUBLIC = [
    "2002:5db8:d70e::",  # 6to4 of 93.184.215.14
    "2001:0:5db8:d70e::a247:2af1",  # Teredo: server 93.184.215.14, client 93.184.213.14
    "64:ff9b::5db8:d70e",  # NAT64, as DNS64 answers for an IPv4-only CDN on an IPv6-only network
    "64:ff9b:1:808:8:808:808:808",  # local-use NAT64 reading 8.8.8.8 under every layout
    "::5db8:d70e",  # IPv4-compatible
    "::ffff:5db8:d70e",  # IPv4-mapped
]


@pytest.mark.parametrize(("address", "label", "carried"), EMBEDDING_FORBIDDEN)
def test_ipv6_forms_carrying_a_forbidden_ipv4_address_are_refused(address: str, label: str, carried: str) -> None:
    assert address_refusal(address) == f"{label} via {carried}"


@pytest.mark.parametrize("address", EMBEDDING_PUBLIC)
def test_ipv6_forms_carrying_a_public_ipv4_address_pass(address: str) -> None:
    assert address_refusal(address) is None


def test_a_name_resolving_to_6to4_of_the_metadata_address_is_refused() -> None:
    with pytest.raises(PolicyRefused) as refused:
        checked_address("cdn.example", ["93.184.215.14", "2002:a9fe:a9fe::"], UrlPolicy())
    assert refused.value.reason == "refused_address"
    assert "169.254.169.254" in refused.value.detail


def test_allowed_networks_admit_carried_addresses_and_the_carrier_itself() -> None:
    loopback = UrlPolicy(allowed_networks=("127.0.0.1/32",)).networks
    assert address_refusal("2002:7f00:1::", loopback) is None  # the IPv4 it carries is allowed
    assert address_refusal("64:ff9b::7f00:1", loopback) is None
    assert address_refusal("2001:0:7f00:1::80ff:fffe", loopback) is None  # Teredo server and client 127.0.0.1
    assert address_refusal("2001:0:7f00:1::8080:fffe", loopback) == "loopback via Teredo client 127.127.0.1"
    assert address_refusal("2002:7f00:2::", loopback) == "loopback via 6to4 127.0.0.2"
    # An allowed IPv6 network allows whatever its addresses carry: the operator vouched for that translator.
    translator = UrlPolicy(allowed_networks=("64:ff9b:1:a08::/64",)).networks
    assert address_refusal("64:ff9b:1:a08:8:808:808:808", translator) is None
    assert address_refusal("64:ff9b:1::a9fe:a9fe", translator) == "link_local via NAT64/96 169.254.169.254"


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


def _mirror_with_two_hosts(tmp_path: Path) -> Path:
    """``a.example`` and ``b.example`` each with one image, plus a secret file next to the mirror."""
    mirror = tmp_path / "mirror"
    for host in ("a.example", "b.example"):
        (mirror / host / "I").mkdir(parents=True)
        (mirror / host / "I" / "x.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    return mirror


@pytest.mark.parametrize(
    "url",
    [
        "http://a.example/../b.example/I/x.png",  # the cross-host read that was observed
        "http://a.example/I/../../b.example/I/x.png",
        "http://a.example/%2e%2e/b.example/I/x.png",  # encoded dots are dots to whoever decodes them
        "http://a.example/%2E%2E/%2E%2E/secret.png",
        "http://a.example/.%2e/b.example/I/x.png",
        "http://a.example/..%2fb.example%2fI%2fx.png",  # an encoded separator hides the ".." in one segment
        "http://a.example/I%2f..%2f..%2fb.example/I/x.png",
        "http://a.example/..%5cb.example%5cI%5cx.png",  # backslashes, encoded or not, separate for some tools
        "http://a.example/..\\b.example\\I\\x.png",
        "http://a.example//..//b.example/I/x.png",  # empty segments do not hide a ".."
        "http://a.example/%2f..%2f..%2fsecret.png",  # an encoded absolute path
        "http://a.example/I/x%00.png",
        "http://../secret.png",  # the host name itself is the way out
        "http://%2e%2e/secret.png",
    ],
)
def test_mirror_path_refuses_any_path_out_of_its_hosts_folder(tmp_path: Path, url: str) -> None:
    mirror = _mirror_with_two_hosts(tmp_path)
    with pytest.raises(PolicyRefused) as refused:
        mirror_path(url, mirror)
    assert refused.value.reason == "refused_mirror_path"


def test_mirror_path_normalises_paths_that_stay_inside_their_host(tmp_path: Path) -> None:
    mirror = _mirror_with_two_hosts(tmp_path)
    inside = mirror.resolve() / "a.example" / "I" / "x.png"
    for url in (
        "http://a.example/I/x.png",
        "http://a.example//I///x.png",
        "http://a.example/I/./x.png",
        "http://a.example/J/../I/x.png",
        "http://a.example/J/%2e%2e/I/%2E/x.png",
    ):
        assert mirror_path(url, mirror) == inside, url
    # A literal file name may hold what decodes to a separator, as long as no reading climbs out.
    assert mirror_path("http://a.example/I/a%2fb.png", mirror) == inside.parent / "a%2fb.png"
    assert mirror_path("http://a.example/I/a\\b.png", mirror) == inside.parent / "a\\b.png"


def test_mirror_path_names_no_file_for_urls_without_one(tmp_path: Path) -> None:
    mirror = _mirror_with_two_hosts(tmp_path)
    assert mirror_path("https://a.example/", mirror) is None
    assert mirror_path("https://a.example/I/..", mirror) is None
    assert mirror_path("https://a.example/a.jpg", None) is None
    assert mirror_path("ftp://a.example/a.jpg", mirror) is None


def test_mirror_path_follows_symlinks_only_within_the_hosts_folder(tmp_path: Path) -> None:
    mirror = _mirror_with_two_hosts(tmp_path)
    host = mirror / "a.example"
    (host / "out").symlink_to(tmp_path)
    (host / "other-host").symlink_to(mirror / "b.example")
    (host / "other.png").symlink_to(mirror / "b.example" / "I" / "x.png")
    (host / "same-host.png").symlink_to(host / "I" / "x.png")
    for url in (
        "https://a.example/out/secret.png",
        "https://a.example/out/missing.png",
        "https://a.example/other-host/I/x.png",
        "https://a.example/other.png",
    ):
        with pytest.raises(PolicyRefused) as refused:
            mirror_path(url, mirror)
        assert refused.value.reason == "refused_mirror_path", url
    assert mirror_path("https://a.example/same-host.png", mirror) == (host / "I" / "x.png").resolve()


def test_a_host_folder_may_be_an_alias_of_another_inside_the_mirror(tmp_path: Path) -> None:
    # Operators alias CDN names (images-na... and m.media-amazon.com serve the same files); a link out is refused.
    mirror = _mirror_with_two_hosts(tmp_path)
    (mirror / "alias.example").symlink_to(mirror / "a.example")
    (mirror / "outside.example").symlink_to(tmp_path)
    assert mirror_path("https://alias.example/I/x.png", mirror) == (mirror / "a.example" / "I" / "x.png").resolve()
    with pytest.raises(PolicyRefused):
        mirror_path("https://outside.example/secret.png", mirror)


def test_a_url_that_does_not_parse_is_refused_not_raised() -> None:
    for check in (check_scheme, lambda url: mirror_path(url, Path("."))):
        with pytest.raises(PolicyRefused) as refused:
            check("http://[::1/a.png")
        assert refused.value.reason == "invalid_url"


def test_file_urls_inside_the_mirror_resolve(tmp_path: Path) -> None:
    (tmp_path / "host").mkdir()
    target = tmp_path / "host" / "a b.png"
    target.write_bytes(b"x")
    assert file_url_path(f"file://{tmp_path}/host/a%20b.png", tmp_path) == target.resolve()


def test_file_urls_outside_the_mirror_or_via_symlinks_out_are_refused(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "a.example").mkdir(parents=True)
    (mirror / "b.example").mkdir()
    (mirror / "b.example" / "x.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    (mirror / "link.png").symlink_to(tmp_path / "secret.png")
    (mirror / "a.example" / "other-host.png").symlink_to(mirror / "b.example" / "x.png")
    for url in (
        f"file://{tmp_path}/secret.png",
        f"file://{mirror}/link.png",
        f"file://{mirror}/../secret.png",
        f"file://{mirror}/a.example/%2e%2e/%2e%2e/secret.png",
        f"file://{mirror}/a.example%2f..%2f..%2fsecret.png",
        f"file://{mirror}/a.example/..\\..\\secret.png",
        f"file://{mirror}/a.example/other-host.png",
        f"file://{mirror}/a.example/x%00.png",
        f"file://{mirror}",
        "file:relative/x.png",
        "file://remote-host/etc/passwd",
    ):
        with pytest.raises(PolicyRefused) as refused:
            file_url_path(url, mirror)
        assert refused.value.reason == "refused_file_url", url
    with pytest.raises(PolicyRefused):
        file_url_path(f"file://{mirror}/a.png", None)


def test_file_urls_decode_separators_and_collapse_empty_segments(tmp_path: Path) -> None:
    target = tmp_path / "b.example" / "I" / "x.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    for url in (
        f"file://{tmp_path}/b.example%2fI%2Fx.png",
        f"file://{tmp_path}//b.example///I/x.png",
        f"file://localhost{tmp_path}/b.example/I/x.png",
    ):
        assert file_url_path(url, tmp_path) == target.resolve(), url
