"""The worker's view of the registry: every attempt asks it for its endpoint.

A value is fresh for `ttl` seconds (a URL fixed by the customer, a rotation, a disable take
effect within that), then re-read. When the database cannot be reached, the last good value
keeps serving for `stale` more seconds, so a short outage or a failover costs nothing; past
that the attempt fails as `registry_unavailable` and is retried on the delivery's schedule.
Concurrent attempts to one endpoint share one read (no stampede on a cold cache).
The endpoint circuit's published verdict is read through the same cache, so the gate
learns of an open, closed or disabled circuit within the same TTL as of a new URL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio import activity

from webhooks.core import metrics
from webhooks.core.circuit import PublishedCircuit
from webhooks.registry.errors import RegistryUnavailableError
from webhooks.registry.models import ResolvedEndpoint
from webhooks.registry.service import EndpointRegistry

Clock = Callable[[], float]
Key = tuple[str, str]
"""("endpoint", id), ("legacy", secret_ref) or ("circuit", endpoint id)."""
Value = ResolvedEndpoint | PublishedCircuit | None


@dataclass(frozen=True)
class _Entry:
    value: Value
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
        self._reads: dict[Key, asyncio.Future[Value]] = {}
        self.reads = 0
        """Database reads so far (the benchmark reports reads per delivery)."""

    async def endpoint(self, endpoint_id: str) -> ResolvedEndpoint | None:
        """The endpoint now, or None if it was deleted. Raises RegistryUnavailableError
        when the database is unreachable and the last value is too old (or missing)."""
        value = await self._get(("endpoint", endpoint_id), self._registry.resolve)
        assert value is None or isinstance(value, ResolvedEndpoint)
        return value

    async def legacy(self, ref: str) -> ResolvedEndpoint | None:
        """The endpoint imported for an old `secret_ref`, or None if never imported."""
        value = await self._get(("legacy", ref), self._registry.resolve_legacy)
        assert value is None or isinstance(value, ResolvedEndpoint)
        return value

    async def circuit(self, endpoint_id: str) -> PublishedCircuit | None:
        """The endpoint circuit's verdict, or None if it never tripped. Raises
        RegistryUnavailableError like `endpoint`."""
        value = await self._get(("circuit", endpoint_id), self._registry.circuit)
        assert value is None or isinstance(value, PublishedCircuit)
        return value

    async def _get(self, key: Key, read: Callable[[str], Awaitable[Value]]) -> Value:
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and now - entry.read_at < self._ttl:
            _count_lookup(key[0], "hit")
            return entry.value
        _count_lookup(key[0], "miss")
        try:
            return await self._read(key, read)
        except RegistryUnavailableError:
            if entry is not None and now - entry.read_at < self._ttl + self._stale:
                return entry.value
            raise

    async def _read(self, key: Key, read: Callable[[str], Awaitable[Value]]) -> Value:
        pending = self._reads.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
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


def _count_lookup(kind: str, result: str) -> None:
    """`webhooks_registry_cache_lookups_total{kind, result}`, through the attempt's
    activity meter (Temporal's runtime exports it with the worker's metrics; `kind` is the
    key's fixed first half, never the id). Outside an activity nothing is counted."""
    if activity.in_activity():
        m = metrics.REGISTRY_CACHE
        counter = activity.metric_meter().create_counter(m.name, m.description, m.unit)
        counter.add(1, {"kind": kind, "result": result})
