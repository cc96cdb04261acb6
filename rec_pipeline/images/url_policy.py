"""Which image URLs may be fetched, and from where: scheme rules, the local mirror, and address checks.

Image URLs come from untrusted review dumps, so a URL is treated like user input to a server-side fetcher
(the SSRF problem): a dump line pointing at ``http://169.254.169.254/latest/meta-data`` or at a database on
the private network must never be requested. The rules, applied to the first URL *and to every redirect hop*:

- schemes: only ``http`` and ``https``; ``file://`` only when the path, after resolving symlinks, lies inside
  the mirror folder; everything else (``ftp``, ``data``, ``gopher`` ...) is refused;
- addresses: the host name is resolved and *every* address it resolves to must be public. Private, loopback,
  link-local, multicast, reserved, unspecified and other non-global addresses (``ipaddress``'s ``is_global``
  is False) are refused, IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``) are judged as the IPv4 address they
  carry. Exceptions are explicit: ``allowed_hosts`` (exact host names, case-insensitive, whose addresses are
  not checked) and ``allowed_networks`` (CIDR blocks whose addresses are accepted, e.g. ``"127.0.0.1/32"``).

DNS rebinding: checking the resolved address and then letting the HTTP client resolve the name again leaves a
window in which a hostile DNS server can answer with a public address first and a private one second. The
fetcher closes it by connecting to the address that was checked (the URL's host is replaced by the checked
IP; the ``Host`` header and TLS SNI keep the original name, so virtual hosting and certificate checks work).
Hosts in ``allowed_hosts`` skip that pinning since their addresses are trusted anyway.

Mirror layout: ``https://host/a/b.jpg`` maps to ``<mirror>/host/a/b.jpg`` (host lower-cased, port and query
dropped, the path used as it appears in the URL, still percent-encoded: the layout ``wget -x`` writes).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NETWORK_SCHEMES = frozenset({"http", "https"})


class PolicyRefused(Exception):
    """A URL or address the policy does not allow. ``reason`` is a short, stable category for reports."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class UrlPolicy:
    """The allow-lists; everything else follows the default-deny rules in the module docstring."""

    allowed_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Parse once up front so a typo in a network fails at configuration time, not mid-run.
        for network in self.allowed_networks:
            ipaddress.ip_network(network, strict=False)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)

    def host_is_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in {h.lower().rstrip(".") for h in self.allowed_hosts}


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_refusal(address: str | IPAddress, networks: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be connected to, or None when it may. Allowed networks win over the deny rules."""
    ip = _unmapped(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if any(ip.version == net.version and ip in net for net in networks):
        return None
    for label in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{label}"):
            return label
    # Shared address space (100.64/10), documentation ranges and the like are neither private nor global.
    if not ip.is_global:
        return "non_global"
    return None


def check_scheme(url: str) -> str:
    """Return the lower-cased scheme of ``url`` or refuse it."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in NETWORK_SCHEMES and scheme != "file":
        raise PolicyRefused("refused_scheme", f"scheme {scheme or '(none)'!r} is not http, https or file")
    return scheme


def mirror_path(url: str, mirror_dir: Path | None) -> Path | None:
    """The mirror file an http(s) URL maps to, or None (no mirror, no host, or a path escaping the mirror)."""
    if mirror_dir is None:
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() not in NETWORK_SCHEMES or not parts.hostname:
        return None
    relative = parts.path.lstrip("/")
    if not relative:
        return None
    root = mirror_dir.resolve()
    candidate = (root / parts.hostname.lower() / relative).resolve()
    # ``..`` segments or a symlink inside the mirror must not lead outside it.
    if not candidate.is_relative_to(root):
        return None
    return candidate


def file_url_path(url: str, mirror_dir: Path | None) -> Path:
    """The local file a ``file://`` URL names, refused unless it resolves (symlinks too) inside the mirror."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise PolicyRefused("refused_file_url", f"file URL with a remote host {parts.netloc!r}")
    if mirror_dir is None:
        raise PolicyRefused("refused_file_url", "file URLs need a mirror folder to resolve into")
    root = mirror_dir.resolve()
    resolved = Path(unquote(parts.path)).resolve()
    if not resolved.is_relative_to(root):
        raise PolicyRefused("refused_file_url", f"{resolved} is outside the mirror {root}")
    return resolved


def checked_address(host: str, addresses: list[str], policy: UrlPolicy) -> str | None:
    """The address to connect to, or None for an allow-listed host (connect by name).

    Every address must pass: if a name resolves to one public and one private address, a later connection
    could land on either, so the name is refused as a whole.
    """
    if policy.host_is_allowed(host):
        return None
    if not addresses:
        raise PolicyRefused("refused_address", f"{host} resolved to no address")
    networks = policy.networks
    for address in addresses:
        refusal = address_refusal(address, networks)
        if refusal is not None:
            raise PolicyRefused("refused_address", f"{host} resolves to {address} ({refusal})")
    # Pinning to one address gives up the client's happy-eyeballs fallback, so prefer IPv4, which is reachable
    # from far more hosts and containers than IPv6.
    return next((a for a in addresses if ipaddress.ip_address(a).version == 4), addresses[0])
