"""Which addresses a webhook may reach: the pure half of the SSRF guard.

The connection layer (`activities.safe_transport`) vets every resolved address at connect
time; the registry vets a URL's host when an endpoint is created or changed. Both ask this
module, so there is one definition of "private".
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class DestinationSettings(Protocol):
    """The settings the policy is built from (`webhooks.config.Settings` has them)."""

    @property
    def allow_private_destinations(self) -> bool: ...
    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]: ...
    @property
    def require_https(self) -> bool: ...


def _nets(*entries: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((IPv4Network(n) if "." in n else IPv6Network(n), label) for n, label in entries)


# Explicit tables rather than `ipaddress`'s is_private/is_global alone: those differ
# between Python versions, miss CGNAT and multicast, and name no class for the error.
BLOCKED_V4 = _nets(
    ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches localhost on Linux
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "cgnat"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # includes cloud metadata, 169.254.169.254
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved"),  # documentation (TEST-NET-1)
    ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("198.51.100.0/24", "reserved"),  # documentation (TEST-NET-2)
    ("203.0.113.0/24", "reserved"),  # documentation (TEST-NET-3)
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # future use, and the broadcast address
)
BLOCKED_V6 = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "reserved"),  # deprecated IPv4-compatible addresses
    ("::ffff:0:0:0/96", "reserved"),  # IPv4-translated (SIIT)
    ("64:ff9b:1::/48", "reserved"),  # local-use NAT64
    ("100::/64", "reserved"),  # discard-only
    ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo included
    ("2001:db8::/32", "reserved"),  # documentation
    ("3fff::/20", "reserved"),  # documentation
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_NAT64 = IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: IPv6Address) -> tuple[IPv4Address, str] | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, 6to4, NAT64), if any:
    connecting to it reaches that IPv4 host, so it is judged as that host."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "ipv4-mapped"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF), "nat64"
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why a webhook must not go to `address` (its class), or None if it is a public one."""
    if isinstance(address, IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            inner, how = embedded
            reason = blocked_reason(inner)
            return f"{how} {reason}" if reason else None
        table = BLOCKED_V6
    else:
        table = BLOCKED_V4
    for network, label in table:
        if address in network:
            return label
    # Anything else Python knows to be non-global (new special-purpose ranges).
    return None if address.is_global else "reserved"


@dataclass(frozen=True)
class DestinationPolicy:
    """Where webhooks may go. The default refuses every non-public address."""

    allow_private: bool = False
    """Lift the guard entirely (development and tests only)."""
    allowed_networks: tuple[IPNetwork, ...] = ()
    """Networks reachable even while the guard is on, e.g. a partner on a VPN range."""
    require_https: bool = False
    """Refuse plain http:// URLs (production)."""

    @classmethod
    def from_settings(cls, settings: DestinationSettings) -> DestinationPolicy:
        return cls(
            allow_private=settings.allow_private_destinations,
            allowed_networks=settings.allowed_networks,
            require_https=settings.require_https,
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to `address` is refused, or None if it is allowed."""
        if self.allow_private or self._allowlisted(address):
            return None
        return blocked_reason(address)

    def _allowlisted(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, IPv6Address) and (embedded := embedded_ipv4(address)):
            candidates.append(embedded[0])
        return any(a in net for a in candidates for net in self.allowed_networks)

    def scheme_refusal(self, scheme: str) -> str | None:
        """Why a URL with this scheme is refused (http:// while https is required), or None."""
        if self.require_https and scheme.lower() != "https":
            return f"https is required, not {scheme}://"
        return None
