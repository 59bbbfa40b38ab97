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
from ipaddress import ip_address

import httpcore
import httpx

from webhooks.core.destinations import DestinationPolicy, IPAddress

__all__ = [
    "BlockedDestinationError",
    "DestinationPolicy",
    "GuardedBackend",
    "GuardedTransport",
    "IPAddress",
]

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


class BlockedDestinationError(httpx.ConnectError):
    """The destination is not allowed. An `httpx.ConnectError`, so callers that handle
    transport errors handle it too (and httpx passes it through unchanged)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"blocked destination: {message}")


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
        refusal = self.policy.scheme_refusal(request.url.scheme)
        if refusal is not None:
            raise BlockedDestinationError(refusal)
        return await super().handle_async_request(request)
