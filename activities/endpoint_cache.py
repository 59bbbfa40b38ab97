"""The worker's view of the registry: every attempt asks it for its endpoint.

A value is fresh for `ttl` seconds (a URL fixed by the customer, a rotation, a disable take
effect within that), then re-read. When the database cannot be reached, the last good value
keeps serving for `stale` more seconds, so a short outage or a failover costs nothing; past
that the attempt fails as `registry_unavailable` and is retried on the delivery's schedule.
Concurrent attempts to one endpoint share one read (no stampede on a cold cache).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from webhooks.registry.errors import RegistryUnavailableError
from webhooks.registry.models import ResolvedEndpoint
from webhooks.registry.service import EndpointRegistry

Clock = Callable[[], float]
Key = tuple[str, str]
"""("endpoint", id) or ("legacy", secret_ref)."""


@dataclass(frozen=True)
class _Entry:
    value: ResolvedEndpoint | None
    read_at: float


class EndpointCache:
    """Resolves endpoints (and old secret refs) through a short-TTL cache."""

    def __init__(
        self,
        registry: EndpointRegistry,
        *,
        ttl: float = 2.0,
        stale: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._registry = registry
        self._ttl = ttl
        self._stale = stale
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}
        self._reads: dict[Key, asyncio.Future[ResolvedEndpoint | None]] = {}
        self.reads = 0
        """Database reads so far (the benchmark reports reads per delivery)."""

    async def endpoint(self, endpoint_id: str) -> ResolvedEndpoint | None:
        """The endpoint now, or None if it was deleted. Raises RegistryUnavailableError
        when the database is unreachable and the last value is too old (or missing)."""
        return await self._get(("endpoint", endpoint_id), self._registry.resolve)

    async def legacy(self, ref: str) -> ResolvedEndpoint | None:
        """The endpoint imported for an old `secret_ref`, or None if never imported."""
        return await self._get(("legacy", ref), self._registry.resolve_legacy)

    async def _get(
        self, key: Key, read: Callable[[str], Awaitable[ResolvedEndpoint | None]]
    ) -> ResolvedEndpoint | None:
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and now - entry.read_at < self._ttl:
            return entry.value
        try:
            return await self._read(key, read)
        except RegistryUnavailableError:
            if entry is not None and now - entry.read_at < self._ttl + self._stale:
                return entry.value
            raise

    async def _read(
        self, key: Key, read: Callable[[str], Awaitable[ResolvedEndpoint | None]]
    ) -> ResolvedEndpoint | None:
        pending = self._reads.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ResolvedEndpoint | None] = asyncio.get_running_loop().create_future()
        self._reads[key] = future
        try:
            self.reads += 1
            value = await read(key[1])
            self._entries[key] = _Entry(value, self._clock())
            future.set_result(value)
            return value
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as err:
            future.set_exception(err)
            future.exception()  # retrieved: waiters get it, nobody warns
            raise
        finally:
            del self._reads[key]
