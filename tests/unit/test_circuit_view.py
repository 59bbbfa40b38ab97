"""A worker's gate and report aggregator for the endpoint circuits, driven call by call
against the real dev server and a real registry: what gating costs, the local trip and how
the circuit's published verdict overrides it, the one probe lease, and failing open.

The view runs without its background flusher (a flush interval of an hour): each test
flushes when it means to, so the counts are exact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client, RPCError
from temporalio.service import RPCStatusCode

from activities.circuit_view import CircuitView
from activities.endpoint_cache import EndpointCache
from tests.integration import eventually, unique
from webhooks.config import Settings
from webhooks.core.circuit import (
    HOLD_SECONDS,
    LOCAL_TRUST_SECONDS,
    CircuitConfig,
    CircuitPhase,
    CircuitSnapshot,
    PublishedCircuit,
    Signal,
)
from webhooks.core.ids import circuit_id
from webhooks.core.models import Gate
from webhooks.registry.errors import RegistryUnavailableError
from webhooks.registry.service import EndpointRegistry

CONFIG = CircuitConfig(
    consecutive_failures=5, min_requests=5, cooldown_seconds=0.5, max_cooldown_seconds=0.5
)


def new_view(
    client: Client, settings: Settings, registry: EndpointRegistry, config: CircuitConfig = CONFIG
) -> CircuitView:
    return CircuitView(
        client,
        task_queue=settings.control_queue,
        config=config,
        endpoints=EndpointCache(registry, ttl=0),
        registry=registry,
        flush_interval=3600,
    )


@pytest.fixture
async def view(
    client: Client, settings: Settings, registry: EndpointRegistry, worker: None
) -> AsyncIterator[CircuitView]:
    async with new_view(client, settings, registry) as view:
        yield view


async def snapshot_of(client: Client, endpoint: str) -> CircuitSnapshot | None:
    try:
        snapshot: CircuitSnapshot = await client.get_workflow_handle(circuit_id(endpoint)).query(
            "state", result_type=CircuitSnapshot
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.RESOURCE_EXHAUSTED):
            return None
        raise
    return snapshot


def verdict(endpoint: str, phase: CircuitPhase, **fields: object) -> PublishedCircuit:
    return PublishedCircuit.model_validate(
        {"endpoint_id": endpoint, "phase": phase, "changed_at": datetime.now(UTC), **fields}
    )


def is_hold(gate: Gate, *, long: bool) -> bool:
    if gate.allow or gate.disabled or gate.retry_at is None:
        return False
    far = gate.retry_at - datetime.now(UTC) > timedelta(seconds=HOLD_SECONDS / 2)
    return far is long


# --- cost ----------------------------------------------------------------------------------


async def test_a_healthy_endpoint_costs_nothing(view: CircuitView, client: Client) -> None:
    endpoint = unique("ep_fine")
    for _ in range(100):
        assert await view.gate(endpoint) == Gate(allow=True)
        view.record(endpoint, Signal.SUCCESS)
        view.record(endpoint, Signal.NEUTRAL)
    await view.flush()
    assert view.signals_sent == 0
    with pytest.raises(RPCError) as missing_circuit:
        await client.get_workflow_handle(circuit_id(endpoint)).describe()
    assert missing_circuit.value.status == RPCStatusCode.NOT_FOUND


async def test_many_failures_are_one_report(view: CircuitView, client: Client) -> None:
    endpoint = unique("ep_many")
    for _ in range(1000):
        view.record(endpoint, Signal.FAILURE)
    view.record(endpoint, Signal.SUCCESS)
    view.record(endpoint, Signal.FAILURE)
    await view.flush()
    assert view.signals_sent <= 2  # the trip's immediate report, then the rest
    snapshot = await eventually(
        lambda: snapshot_of(client, endpoint),
        lambda s: s is not None and s.requests_in_window() == 1002,
    )
    assert snapshot is not None
    assert snapshot.consecutive_failures == 1  # the run after the last success


# --- the local trip and the circuit's verdict ---------------------------------------------


async def test_a_local_trip_holds_briefly_then_the_published_verdict_holds(
    view: CircuitView, client: Client, registry: EndpointRegistry, settings: Settings
) -> None:
    endpoint = unique("ep_trip")
    for _ in range(4):
        view.record(endpoint, Signal.FAILURE)
    assert (await view.gate(endpoint)).allow  # 4 failures: still closed
    before = datetime.now(UTC)
    view.record(endpoint, Signal.FAILURE)
    held = await view.gate(endpoint)
    # Tripped on this worker's own evidence, before the circuit has said anything: held
    # for LOCAL_TRUST_SECONDS at most, never longer on a local opinion.
    assert is_hold(held, long=False)
    assert held.retry_at is not None
    assert held.retry_at <= before + timedelta(seconds=LOCAL_TRUST_SECONDS + 1)

    # The trip was reported at once; the circuit (on the control queue) opens and
    # publishes its verdict to the registry, which now decides: held until woken.
    published = await eventually(
        lambda: registry.circuit(endpoint),
        lambda v: v is not None and v.phase is CircuitPhase.OPEN,
    )
    assert published is not None
    description = await client.get_workflow_handle(circuit_id(endpoint)).describe()
    assert description.task_queue == settings.control_queue
    assert view.signals_sent == 1
    # Cooling down (0.5 s) or due: a long hold, or the one probe.
    gate = await view.gate(endpoint)
    assert is_hold(gate, long=True) or gate == Gate(allow=True, probe=True)


async def test_the_circuit_wins_over_a_local_trip(
    client: Client, settings: Settings, registry: EndpointRegistry
) -> None:
    endpoint = unique("ep_wins")
    async with new_view(client, settings, registry) as view:
        for _ in range(5):
            view.record(endpoint, Signal.FAILURE)
        assert is_hold(await view.gate(endpoint), long=False)
        # The circuit speaks after the trip (other workers see successes): closed.
        await registry.publish_circuit(verdict(endpoint, CircuitPhase.CLOSED))
        assert await view.gate(endpoint) == Gate(allow=True)


async def test_an_open_verdict_holds_a_worker_that_never_failed(
    client: Client, settings: Settings, registry: EndpointRegistry
) -> None:
    endpoint = unique("ep_open")
    later = datetime.now(UTC) + timedelta(minutes=5)
    async with new_view(client, settings, registry) as view:
        await registry.publish_circuit(verdict(endpoint, CircuitPhase.OPEN, next_probe_at=later))
        assert is_hold(await view.gate(endpoint), long=True)
        await registry.publish_circuit(verdict(endpoint, CircuitPhase.DISABLED, reason="ops"))
        assert await view.gate(endpoint) == Gate(allow=False, disabled=True)
        assert view.signals_sent == 0


async def test_an_older_verdict_never_overwrites_a_newer_one(registry: EndpointRegistry) -> None:
    endpoint = unique("ep_order")
    newer = verdict(endpoint, CircuitPhase.DISABLED, reason="ops")
    older = newer.model_copy(
        update={"phase": CircuitPhase.CLOSED, "changed_at": newer.changed_at - timedelta(1)}
    )
    assert await registry.publish_circuit(newer)
    assert not await registry.publish_circuit(older)  # a late retry of an older write
    stored = await registry.circuit(endpoint)
    assert stored is not None
    assert stored.phase is CircuitPhase.DISABLED


# --- probes --------------------------------------------------------------------------------


async def test_two_workers_asking_for_the_probe_at_once_get_one_between_them(
    client: Client, settings: Settings, registry: EndpointRegistry
) -> None:
    endpoint = unique("ep_race")
    due = datetime.now(UTC) - timedelta(seconds=1)
    await registry.publish_circuit(verdict(endpoint, CircuitPhase.OPEN, next_probe_at=due))
    async with (
        new_view(client, settings, registry) as one,
        new_view(client, settings, registry) as two,
    ):
        gates = [await view.gate(endpoint) for view in (one, two, one, two)]
    assert [g.probe and g.allow for g in gates].count(True) == 1
    assert all(is_hold(g, long=True) for g in gates if not g.allow)


async def test_a_lost_probe_is_given_again_after_its_lease(
    client: Client, settings: Settings, registry: EndpointRegistry
) -> None:
    endpoint = unique("ep_lease")
    config = CONFIG.model_copy(update={"probe_lease_seconds": 0.5})
    due = datetime.now(UTC) - timedelta(seconds=1)
    await registry.publish_circuit(verdict(endpoint, CircuitPhase.HALF_OPEN, next_probe_at=due))
    async with new_view(client, settings, registry, config) as view:
        assert await view.gate(endpoint) == Gate(allow=True, probe=True)
        assert not (await view.gate(endpoint)).allow
        # The worker that took it died: nothing reports; the lease runs out.
        await eventually(lambda: view.gate(endpoint), lambda g: g.allow and g.probe)
    assert view.probes_taken == 2


async def test_a_probe_success_closes_the_circuit_for_everyone(
    view: CircuitView, client: Client, registry: EndpointRegistry
) -> None:
    endpoint = unique("ep_probe")
    for _ in range(5):
        view.record(endpoint, Signal.FAILURE)
    await eventually(lambda: view.gate(endpoint), lambda g: g.allow and g.probe)
    view.record(endpoint, Signal.SUCCESS, probe=True)
    closed = await eventually(
        lambda: registry.circuit(endpoint),
        lambda v: v is not None and v.phase is CircuitPhase.CLOSED,
    )
    assert closed is not None
    assert await view.gate(endpoint) == Gate(allow=True)


async def test_a_410_disables_through_the_circuit(
    view: CircuitView, registry: EndpointRegistry
) -> None:
    endpoint = unique("ep_gone")
    view.record(endpoint, Signal.GONE)
    assert is_hold(await view.gate(endpoint), long=False)  # this worker, at once
    await eventually(lambda: view.gate(endpoint), lambda g: g.disabled)


# --- failing open --------------------------------------------------------------------------


class _Unreachable(EndpointRegistry):
    """The registry with its database gone (every read raises, as an outage does)."""

    def __init__(self) -> None:
        pass

    async def circuit(self, endpoint_id: str) -> PublishedCircuit | None:
        raise RegistryUnavailableError("the registry database is unreachable (test)")


async def test_an_unreadable_verdict_fails_open_under_the_local_copy(
    client: Client, settings: Settings
) -> None:
    endpoint = unique("ep_unknown")
    down = _Unreachable()
    async with CircuitView(
        client,
        task_queue=settings.control_queue,
        config=CONFIG,
        endpoints=EndpointCache(down, ttl=0),
        registry=down,
        flush_interval=3600,
    ) as view:
        assert await view.gate(endpoint) == Gate(allow=True)
        for _ in range(5):
            view.record(endpoint, Signal.FAILURE)
        # Still cut off by this worker's own trip, for a bounded time.
        assert is_hold(await view.gate(endpoint), long=False)
