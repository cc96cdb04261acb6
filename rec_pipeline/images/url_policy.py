"""Which image URLs may be fetched, and from where: scheme rules, the local mirror, and address checks.

Image URLs come from untrusted review dumps, so a URL is treated like user input to a server-side fetcher
(the SSRF problem): a dump line pointing at ``http://169.254.169.254/latest/meta-data`` or at a database on
the private network must never be requested. The rules, applied to the first URL *and to every redirect hop*:

- schemes: only ``http`` and ``https``; ``file://`` only when the path, after resolving symlinks, lies inside
  the mirror (see ``file_url_path``); everything else (``ftp``, ``data``, ``gopher`` ...) is refused, and so
  is a URL that does not even parse (``invalid_url``);
- addresses: the host name is resolved and *every* address it resolves to must be public. Private, loopback,
  link-local, multicast, reserved, unspecified and other non-global addresses (``ipaddress``'s ``is_global``
  is False) are refused. Exceptions are explicit: ``allowed_hosts`` (exact host names, case-insensitive, whose
  addresses are not checked) and ``allowed_networks`` (CIDR blocks whose addresses are accepted, e.g.
  ``"127.0.0.1/32"``).

IPv6 addresses that carry an IPv4 destination are judged as the IPv4 address(es) they carry, because that is
where the packets end up: IPv4-mapped ``::ffff:0:0/96`` and IPv4-compatible ``::/96``, 6to4 ``2002::/16``,
Teredo ``2001::/32`` (its server *and* its XOR-ed client address), NAT64 ``64:ff9b::/96`` and the local-use
NAT64 prefix ``64:ff9b:1::/48`` (every RFC 6052 layout a translator inside it could use, /48 to /96, must pass,
since the address does not say which one it uses). So ``2002:7f00:1::`` (6to4 of 127.0.0.1) is refused as
loopback, and ``64:ff9b::5db8:d70e`` (NAT64 of a public address, as DNS64 answers on IPv6-only networks) is
accepted. Python's own verdict on those prefixes is not used: it says nothing about the carried address and
changes between Python versions (``2002::/16`` is global in 3.11, private from 3.12.4).

DNS rebinding: checking the resolved address and then letting the HTTP client resolve the name again leaves a
window in which a hostile DNS server can answer with a public address first and a private one second. The
fetcher closes it by connecting to the address that was checked (the URL's host is replaced by the checked
IP; the ``Host`` header and TLS SNI keep the original name, so virtual hosting and certificate checks work).
Hosts in ``allowed_hosts`` skip that pinning since their addresses are trusted anyway.

Mirror layout: ``https://host/a/b.jpg`` maps to ``<mirror>/host/a/b.jpg`` (host lower-cased, port and query
dropped, the path used as it appears in the URL, still percent-encoded: the layout ``wget -x`` writes). A URL
may only ever read a file of *its own* host: see ``mirror_path``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NETWORK_SCHEMES = frozenset({"http", "https"})

_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


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


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses ``address`` carries, each named by the form carrying it; [] for a plain IPv6 address.

    ``::`` and ``::1`` are not IPv4-compatible addresses (RFC 4291) but IPv6's own unspecified and loopback.
    """
    if address.ipv4_mapped is not None:
        return [("IPv4-mapped", address.ipv4_mapped)]
    if address.sixtofour is not None:
        return [("6to4", address.sixtofour)]
    if address.teredo is not None:
        server, client = address.teredo
        return [("Teredo server", server), ("Teredo client", client)]
    value = int(address)
    if address in _NAT64_WELL_KNOWN:
        return [("NAT64", ipaddress.IPv4Address(value & 0xFFFFFFFF))]
    if address in _NAT64_LOCAL_USE:
        return [(f"NAT64/{prefix}", ipv4) for prefix, ipv4 in _rfc6052_readings(value)]
    if address in _IPV4_COMPATIBLE and value > 1:
        return [("IPv4-compatible", ipaddress.IPv4Address(value))]
    return []


def _rfc6052_readings(value: int) -> list[tuple[int, ipaddress.IPv4Address]]:
    """The IPv4 address under each RFC 6052 layout a translator prefix inside a /48 can have (/96 to /48).

    The /48, /56 and /64 layouts skip bits 64-71 (the "u" octet), which must then be zero; a non-zero u octet
    leaves only the /96 reading.
    """
    readings = [(96, ipaddress.IPv4Address(value & 0xFFFFFFFF))]
    if (value >> 56) & 0xFF == 0:
        # Bits 0-63 and 72-127 glued into 120 bits: the /n layout puts the IPv4 address at bits n to n+31.
        glued = ((value >> 64) << 56) | (value & ((1 << 56) - 1))
        readings += [(prefix, ipaddress.IPv4Address((glued >> (88 - prefix)) & 0xFFFFFFFF)) for prefix in (64, 56, 48)]
    return readings


def _in_networks(ip: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def _own_refusal(ip: IPAddress) -> str | None:
    for label in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{label}"):
            return label
    # Shared address space (100.64/10), documentation ranges and the like are neither private nor global.
    if not ip.is_global:
        return "non_global"
    return None


def address_refusal(address: str | IPAddress, networks: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be connected to, or None when it may. Allowed networks win over the deny rules.

    An address carrying IPv4 (``embedded_ipv4``) passes when it lies in an allowed network itself, or when every
    carried IPv4 address passes (lies in an allowed network, or is public). The label names the carried address
    that failed, e.g. ``"loopback via 6to4 127.0.0.1"``; an IPv4-mapped address *is* its IPv4 address on the
    wire, so it gets the plain IPv4 label.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    allowed = tuple(networks)
    if _in_networks(ip, allowed):
        return None
    carried = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else []
    if not carried:
        return _own_refusal(ip)
    for form, ipv4 in carried:
        refusal = None if _in_networks(ipv4, allowed) else _own_refusal(ipv4)
        if refusal is not None:
            return refusal if form == "IPv4-mapped" else f"{refusal} via {form} {ipv4}"
    return None


def _split(url: str) -> SplitResult:
    """``urlsplit`` that refuses instead of raising: one malformed dump line must not end the whole run."""
    try:
        return urlsplit(url)
    except ValueError as error:  # e.g. an unclosed IPv6 bracket
        raise PolicyRefused("invalid_url", f"{url!r}: {error}") from error


def check_scheme(url: str) -> str:
    """Return the lower-cased scheme of ``url`` or refuse it."""
    scheme = _split(url).scheme.lower()
    if scheme not in NETWORK_SCHEMES and scheme != "file":
        raise PolicyRefused("refused_scheme", f"scheme {scheme or '(none)'!r} is not http, https or file")
    return scheme


def _climbs_out(segments: Iterable[str]) -> bool:
    """True when ``..`` segments climb above the folder the segments start in (at any point)."""
    depth = 0
    for segment in segments:
        if segment == "..":
            depth -= 1
            if depth < 0:
                return True
        elif segment not in ("", "."):
            depth += 1
    return False


def _mirror_segments(url: str, path: str) -> list[str]:
    """The path's segments below the host folder, as the mirror stores them (still percent-encoded).

    Two readings of the path must stay inside the host folder. The literal one is what is read from disk:
    empty segments collapse, and ``.``/``..`` segments, percent-encoded ones too (``%2e%2e``), are applied.
    The decoded one is how a server or another mirroring tool may read it: percent-decoded, with ``%2f`` and
    backslashes as separators. A segment such as ``..%2f..`` is one harmless file name literally, but it would
    point at another host's folder for a tool that decodes it, so such a URL is refused too.
    """
    decoded = unquote(path)
    if "\0" in decoded:
        raise PolicyRefused("refused_mirror_path", f"{url!r}: NUL in the path")
    if _climbs_out(decoded.replace("\\", "/").split("/")):
        raise PolicyRefused("refused_mirror_path", f"{url!r}: the path climbs out of its host's folder")
    kept: list[str] = []
    for segment in path.split("/"):
        name = unquote(segment)
        if name in ("", "."):
            continue
        if name == "..":
            if not kept:
                raise PolicyRefused("refused_mirror_path", f"{url!r}: the path climbs out of its host's folder")
            kept.pop()
        else:
            kept.append(segment)
    return kept


def _resolved(path: Path, url: str, reason: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop (RuntimeError before Python 3.13), permissions
        raise PolicyRefused(reason, f"{url!r}: {path} cannot be resolved: {error}") from error


def mirror_path(url: str, mirror_dir: Path | None) -> Path | None:
    """The mirror file an http(s) URL maps to: a path inside ``<mirror>/<the URL's host>/``, or None.

    None means "not a mirror question": no mirror, not http(s), no host, or no file named (``https://host/``);
    the fetcher then goes to the network. A URL whose path leaves its host's folder in any reading (``..`` or
    ``%2e%2e`` above the host, ``%2f`` or ``\\`` hiding separators, a host name ``..``), or whose file resolves
    through a symlink to outside that folder, raises ``PolicyRefused("refused_mirror_path")`` rather than
    returning None. Refusing is deliberate: such a URL is hostile or broken, not a CDN's image URL, and a
    permanent refusal is recorded once, counted in the report and never retried, whereas "not mirrored" would
    send it to the network and, offline, defer it again on every run. The verdict does not depend on whether
    the file exists, so it tells a hostile URL nothing about which files the mirror holds.
    """
    if mirror_dir is None:
        return None
    parts = _split(url)
    if parts.scheme.lower() not in NETWORK_SCHEMES or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host_name = unquote(host)
    if host_name in (".", "..") or any(c in host_name for c in "/\\\0"):
        raise PolicyRefused("refused_mirror_path", f"{url!r}: host {host!r} is not a folder name")
    segments = _mirror_segments(url, parts.path)
    if not segments:
        return None
    root = _resolved(mirror_dir, url, "refused_mirror_path")
    host_dir = root / host
    resolved = _resolved(host_dir.joinpath(*segments), url, "refused_mirror_path")
    # The host folder itself may be a symlink (an alias the operator set up); what lies below it may not lead
    # out of it, into another host's folder or out of the mirror.
    if not (resolved.is_relative_to(_resolved(host_dir, url, "refused_mirror_path")) and resolved.is_relative_to(root)):
        raise PolicyRefused("refused_mirror_path", f"{url!r}: {resolved} is outside {host_dir}")
    return resolved


def file_url_path(url: str, mirror_dir: Path | None) -> Path:
    """The local file a ``file://`` URL names, refused unless it resolves (symlinks too) inside the mirror.

    A file URL has no host of its own: it names its mirror file directly. When the path it spells out goes
    through a host folder (``<mirror>/<host>/...``), the file must resolve inside that folder, so a symlink
    cannot lead into another host's folder; a file at the top of the mirror must resolve inside the mirror.
    The path is percent-decoded (``%2f`` is a separator, as in any file URL); ``.``/``..`` segments, between
    backslashes too, are refused rather than resolved: no tool writing a mirror's file URLs needs them, and they
    are the usual way out.
    """
    parts = _split(url)
    if parts.netloc not in ("", "localhost"):
        raise PolicyRefused("refused_file_url", f"file URL with a remote host {parts.netloc!r}")
    if mirror_dir is None:
        raise PolicyRefused("refused_file_url", "file URLs need a mirror folder to resolve into")
    decoded = unquote(parts.path)
    if "\0" in decoded or not decoded.startswith("/"):
        raise PolicyRefused("refused_file_url", f"{url!r} is not an absolute path without NUL")
    if any(name in (".", "..") for name in decoded.replace("\\", "/").split("/")):
        raise PolicyRefused("refused_file_url", f"{url!r} has dot segments")
    named = Path("/", *(name for name in decoded.split("/") if name))
    root = _resolved(mirror_dir, url, "refused_file_url")
    # The mirror may be spelled through a symlink or as resolved; either spelling locates the host folder.
    base = next((b for b in (Path(os.path.abspath(mirror_dir)), root) if named.is_relative_to(b)), None)
    if base is None:
        raise PolicyRefused("refused_file_url", f"{named} is outside the mirror {root}")
    below = named.relative_to(base).parts
    if not below:
        raise PolicyRefused("refused_file_url", f"{named} is the mirror folder itself, not a file in it")
    folder = _resolved(base / below[0], url, "refused_file_url") if len(below) > 1 else root
    resolved = _resolved(named, url, "refused_file_url")
    if not (resolved.is_relative_to(folder) and resolved.is_relative_to(root)):
        raise PolicyRefused("refused_file_url", f"{resolved} is outside {folder} of the mirror {root}")
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
