"""The SSRF rules at create and update time: the URL's host must resolve only to addresses
the destination policy allows. The worker checks again at connect time (rebinding-safe);
this check makes the mistake visible to whoever registers the URL.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from ipaddress import ip_address

import httpx

from webhooks.core.destinations import DestinationPolicy, IPAddress
from webhooks.registry.errors import InvalidDestinationError

Resolver = Callable[[str], Awaitable[Sequence[IPAddress]]]
RESOLVE_TIMEOUT_SECONDS = 5.0


async def resolve_host(host: str) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def vet_url(url: str, policy: DestinationPolicy, resolver: Resolver = resolve_host) -> None:
    """Raise InvalidDestinationError if webhooks could not be sent to `url`."""
    parsed = httpx.URL(url)
    refusal = policy.scheme_refusal(parsed.scheme)
    if refusal is not None:
        raise InvalidDestinationError(f"url: {refusal} (WEBHOOKS_REQUIRE_HTTPS is on)")
    if policy.allow_private:
        return
    host = parsed.host
    try:
        addresses: Sequence[IPAddress] = [ip_address(host)]
    except ValueError:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                addresses = await resolver(host)
        except (OSError, TimeoutError):
            raise InvalidDestinationError(f"url: cannot resolve host {host!r}") from None
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise InvalidDestinationError(
                f"url: {host} is a {reason} address; webhooks only go to public addresses"
                if str(address) == host
                else f"url: {host} resolves to {address}, a {reason} address; webhooks only "
                "go to public addresses"
            )
