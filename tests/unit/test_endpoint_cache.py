"""The worker's endpoint cache over a real SQLite registry: fresh for the TTL, the last good
value while the database is briefly unreachable, `registry_unavailable` after that, and one
read for many concurrent attempts."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment

from activities.endpoint_cache import EndpointCache
from tests.conftest import ACCOUNT, KEY_TEXT
from webhooks.core import metrics
from webhooks.core.destinations import DestinationPolicy
from webhooks.registry.crypto import SecretKeyRing
from webhooks.registry.errors import RegistryUnavailableError
from webhooks.registry.migrate import upgrade
from webhooks.registry.models import EndpointChanges, NewEndpoint
from webhooks.registry.service import EndpointRegistry
from webhooks.registry.store import RegistryStore, create_engine


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "db"


@pytest.fixture
async def registry(folder: Path) -> AsyncIterator[EndpointRegistry]:
    engine = create_engine(f"sqlite:///{folder / 'registry.db'}")
    await upgrade(engine)
    yield EndpointRegistry(
        RegistryStore(engine),
        SecretKeyRing.from_text(KEY_TEXT),
        destinations=DestinationPolicy(allow_private=True),
    )
    await engine.dispose()


async def unreachable(registry: EndpointRegistry, folder: Path) -> Path:
    """Close every pooled connection and move the database away: the next one fails."""
    await registry.store.engine.dispose()
    moved = folder.with_name("moved")
    await asyncio.to_thread(folder.rename, moved)
    return moved


async def test_fresh_then_reread_then_stale_then_unavailable_then_back(
    registry: EndpointRegistry, folder: Path
) -> None:
    clock = Clock()
    cache = EndpointCache(registry, ttl=2, stale=10, clock=clock)
    created = await registry.create(NewEndpoint(account_id=ACCOUNT, url="http://a.example/"))
    eid = created.endpoint.id
    first = await cache.endpoint(eid)
    assert first is not None
    assert first.url == "http://a.example/"
    await registry.update(eid, EndpointChanges(url="http://b.example/"))
    clock.now += 1
    cached = await cache.endpoint(eid)
    assert cached is not None
    assert cached.url == "http://a.example/"  # still fresh
    clock.now += 1.5
    reread = await cache.endpoint(eid)
    assert reread is not None
    assert reread.url == "http://b.example/"
    assert cache.reads == 2

    moved = await unreachable(registry, folder)
    clock.now += 5  # past the TTL, within the stale window: the last good value
    stale = await cache.endpoint(eid)
    assert stale is not None
    assert stale.url == "http://b.example/"
    clock.now += 10  # past both
    with pytest.raises(RegistryUnavailableError, match="unreachable"):
        await cache.endpoint(eid)
    with pytest.raises(RegistryUnavailableError):
        await cache.legacy("default")  # nothing cached at all

    await asyncio.to_thread(moved.rename, folder)
    back = await cache.endpoint(eid)
    assert back is not None
    assert back.url == "http://b.example/"


async def test_deleted_and_unknown_are_none_and_cached(registry: EndpointRegistry) -> None:
    clock = Clock()
    cache = EndpointCache(registry, ttl=2, clock=clock)
    assert await cache.endpoint("ep_unknown") is None
    assert await cache.legacy("nope") is None
    assert await cache.endpoint("ep_unknown") is None
    assert cache.reads == 2


async def test_concurrent_attempts_share_one_read(registry: EndpointRegistry) -> None:
    created = await registry.create(NewEndpoint(account_id=ACCOUNT, url="http://a.example/"))
    cache = EndpointCache(registry, ttl=2)
    found = await asyncio.gather(*(cache.endpoint(created.endpoint.id) for _ in range(50)))
    assert {f.url for f in found if f is not None} == {"http://a.example/"}
    assert cache.reads == 1


async def test_a_failed_shared_read_fails_every_waiter(
    registry: EndpointRegistry, folder: Path
) -> None:
    await unreachable(registry, folder)
    cache = EndpointCache(registry, ttl=2)
    results = await asyncio.gather(
        *(cache.endpoint("ep_x") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RegistryUnavailableError) for r in results)
    assert cache.reads == 1


async def test_a_cancelled_read_cancels_its_waiters_and_leaves_no_entry(
    registry: EndpointRegistry,
) -> None:
    created = await registry.create(NewEndpoint(account_id=ACCOUNT, url="http://a.example/"))
    cache = EndpointCache(registry, ttl=2)
    first = asyncio.ensure_future(cache.endpoint(created.endpoint.id))
    await asyncio.sleep(0)  # the read has started
    second = asyncio.ensure_future(cache.endpoint(created.endpoint.id))
    await asyncio.sleep(0)
    first.cancel()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    again = await cache.endpoint(created.endpoint.id)
    assert again is not None
    assert cache.reads == 2


async def test_lookups_are_counted_as_hits_and_misses_in_an_activity(
    registry: EndpointRegistry,
) -> None:
    buffer = MetricBuffer(100)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    clock = Clock()
    cache = EndpointCache(registry, ttl=2, clock=clock)
    created = await registry.create(NewEndpoint(account_id=ACCOUNT, url="http://a.example/"))

    async def look_up(ticks: list[float]) -> None:
        for tick in ticks:
            clock.now += tick
            await cache.endpoint(created.endpoint.id)

    await cache.endpoint(created.endpoint.id)  # outside an activity: not counted
    clock.now += 5
    env = ActivityEnvironment()
    env.metric_meter = runtime.metric_meter
    await env.run(look_up, [0, 1, 0.5, 3, 0])  # miss, hit, hit, miss (expired), hit
    counted: Counter[str] = Counter()
    for update in buffer.retrieve_updates():
        assert update.metric.name == metrics.REGISTRY_CACHE.name
        # Temporal's labels and ours; never the endpoint id.
        labels = {"kind", "result", "namespace", "task_queue", "activity_type", "service_name"}
        assert set(update.attributes) == labels
        assert update.attributes["kind"] == "endpoint"
        counted[str(update.attributes["result"])] += int(update.value)
    assert counted == {"hit": 3, "miss": 2}
