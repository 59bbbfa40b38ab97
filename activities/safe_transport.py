"""The destination guard: webhooks never reach private, internal or special-purpose addresses.

Customers choose webhook URLs, so a URL is attacker input and a naive sender is an SSRF
proxy into our network (cloud metadata at 169.254.169.254, admin ports on localhost, the
database on 10.x). Checking the URL text is not enough: a public-looking name can resolve
to 127.0.0.1, and a name can answer a public address to a check and a private one to the
connect a moment later (DNS rebinding). So the guard sits in the HTTP client's network
backend: at connect time it resolves the host itself, vets every resolved address, and
connects to the vetted IP literal. TLS still uses the hostname for SNI and certificate
checks, and the Host header is the URL's, so receivers see no difference.

A refused destination raises `BlockedDestinationError`; the send activity reports it as
`blocked_destination`, a permanent failure: dead-lettered at once, never retried, and no
packet is sent to the refused address.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import TYPE_CHECKING

import httpcore
import httpx

if TYPE_CHECKING:
    from webhooks.config import Settings

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


class BlockedDestinationError(httpx.ConnectError):
    """The destination is not allowed. An `httpx.ConnectError`, so callers that handle
    transport errors handle it too (and httpx passes it through unchanged)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"blocked destination: {message}")


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
    def from_settings(cls, settings: Settings) -> DestinationPolicy:
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

    def check_scheme(self, url: httpx.URL) -> None:
        """Raise BlockedDestinationError for http:// while https is required."""
        if self.require_https and url.scheme != "https":
            raise BlockedDestinationError(f"https is required, not {url.scheme}://")


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (TCP), in the resolver's order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses: dict[IPAddress, None] = {}
    for *_, sockaddr in infos:
        # Drop an IPv6 zone ("fe80::1%eth0"): the address class is what matters.
        addresses[ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(addresses)


def _literal(host: str) -> IPAddress | None:
    try:
        return ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, vets, then connects to the IP literal."""

    def __init__(
        self,
        policy: DestinationPolicy,
        inner: httpcore.AsyncNetworkBackend | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()
        self._resolve = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        # httpcore passes these by keyword, so the interface's names are kept.
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = _literal(host)
        addresses = [literal] if literal is not None else await self._lookup(host, port, timeout)
        # Every address must pass, not just one: a name with one public and one private
        # record would otherwise reach the private one whenever the public one fails.
        for address in addresses:
            reason = self._policy.refusal(address)
            if reason is not None:
                raise BlockedDestinationError(
                    f"{address} is {reason}"
                    if literal is not None
                    else f"{host} resolves to {address}, which is {reason}"
                )
        last: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                last = err
        assert last is not None  # `addresses` is never empty
        raise last

    async def _lookup(self, host: str, port: int, limit: float | None) -> Sequence[IPAddress]:
        try:
            async with asyncio.timeout(limit):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as err:
            # Keeps the gaierror as the cause: the send activity reports it as `dns`.
            raise httpcore.ConnectError(f"cannot resolve {host}: {err}") from err
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedDestinationError("unix sockets are never webhook destinations")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport and connection pool, with the guarded backend underneath.

    No proxy is ever used (it would connect to the proxy, not to the vetted address).
    """

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        limits: httpx.Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        limits = limits or httpx.Limits()
        ssl_context = ssl_context or httpx.create_ssl_context()
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        self.policy = policy
        # httpx builds its pool without a network backend option: replace it by the same
        # pool on the guarded backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend or GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.policy.check_scheme(request.url)
        return await super().handle_async_request(request)
