"""A worker's cached view of the endpoint circuits, driven call by call against the real dev
server: what gating costs, the local trip, probes, discovery, and trusting old copies.

The view runs without its background flusher (a flush interval of an hour): each test
flushes and discovers when it means to, so the counts are exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client, RPCError, WorkflowHandle
from temporalio.service import RPCStatusCode

from activities.circuit_view import PROBE_POLL_SECONDS, CircuitView
from tests.integration import eventually, unique
from webhooks.config import Settings
from webhooks.core.circuit import (
    CircuitConfig,
    CircuitInput,
    CircuitPhase,
    CircuitSnapshot,
    OperatorRequest,
    Signal,
)
from webhooks.core.ids import circuit_id
from webhooks.core.models import Gate
from worker import running_worker

CONFIG = CircuitConfig(
    consecutive_failures=5, min_requests=5, cooldown_seconds=0.5, max_cooldown_seconds=0.5
)
REFRESH = 0.2


@pytest.fixture
async def view(client: Client, settings: Settings, worker: None) -> AsyncIterator[CircuitView]:
    async with CircuitView(
        client,
        task_queue=settings.task_queue,
        config=CONFIG,
        flush_interval=3600,
        refresh_interval=REFRESH,
    ) as view:
        yield view


async def snapshot_of(client: Client, endpoint: str) -> CircuitSnapshot | None:
    try:
        snapshot: CircuitSnapshot = await client.get_workflow_handle(circuit_id(endpoint)).query(
            "state", result_type=CircuitSnapshot
        )
    except RPCError as err:
        # RESOURCE_EXHAUSTED: the circuit's query buffer is full (a busy worker): not yet.
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.RESOURCE_EXHAUSTED):
            return None
        raise
    return snapshot


async def gate_until(view: CircuitView, endpoint: str, want: Gate | None = None) -> Gate:
    """Ask like a delivery would, until the answer matches (`allow` if no `want`)."""

    async def ask() -> Gate:
        return view.gate(endpoint)

    def matches(gate: Gate) -> bool:
        if want is None:
            return gate.allow
        return gate.model_dump(exclude={"retry_at"}) == want.model_dump(exclude={"retry_at"})

    return await eventually(ask, matches, interval=0.05)


async def tripped(view: CircuitView, endpoint: str) -> None:
    for _ in range(CONFIG.consecutive_failures or 0):
        view.record(endpoint, Signal.FAILURE)
    await view.flush()


async def take_probe(view: CircuitView, client: Client, endpoint: str) -> None:
    """Wait out the cooldown, then ask until the circuit grants this worker the probe."""
    await eventually(
        lambda: snapshot_of(client, endpoint),
        lambda s: s is not None and s.phase is not CircuitPhase.CLOSED,
    )
    await gate_until(view, endpoint, Gate(allow=True, probe=True))


# --- cost ----------------------------------------------------------------------------------


async def test_a_healthy_endpoint_costs_nothing(view: CircuitView, client: Client) -> None:
    endpoint = unique("ep_fine")
    for _ in range(100):
        assert view.gate(endpoint) == Gate(allow=True)
        view.record(endpoint, Signal.SUCCESS)
        view.record(endpoint, Signal.NEUTRAL)
    await view.flush()
    assert view.signals_sent == 0
    with pytest.raises(RPCError) as missing_circuit:
        await client.get_workflow_handle(circuit_id(endpoint)).describe()
    assert missing_circuit.value.status == RPCStatusCode.NOT_FOUND


async def test_local_trip_holds_at_once_and_reports_once_per_flush(
    view: CircuitView, client: Client
) -> None:
    endpoint = unique("ep_trip")
    for _ in range(4):
        view.record(endpoint, Signal.FAILURE)
    assert view.gate(endpoint).allow  # 4 failures: still closed
    view.record(endpoint, Signal.FAILURE)
    before = datetime.now(UTC)
    held = view.gate(endpoint)
    # Tripped on this worker's own evidence, before the circuit workflow even exists.
    assert not held.allow
    assert not held.disabled
    assert held.retry_at is not None
    assert before < held.retry_at <= before + timedelta(seconds=CONFIG.cooldown_seconds)
    assert view.signals_sent == 0

    await view.flush()
    await view.flush()  # nothing new: no signal
    assert view.signals_sent == 1
    snapshot = await eventually(lambda: snapshot_of(client, endpoint), lambda s: s is not None)
    assert snapshot is not None
    assert snapshot.phase in (CircuitPhase.OPEN, CircuitPhase.HALF_OPEN)
    assert snapshot.signals_received == 1
    assert snapshot.consecutive_failures == 5


async def test_many_failures_are_one_report(view: CircuitView, client: Client) -> None:
    endpoint = unique("ep_many")
    for _ in range(1000):
        view.record(endpoint, Signal.FAILURE)
    view.record(endpoint, Signal.SUCCESS)
    view.record(endpoint, Signal.FAILURE)
    await view.flush()
    assert view.signals_sent == 1
    snapshot = await eventually(lambda: snapshot_of(client, endpoint), lambda s: s is not None)
    assert snapshot is not None
    assert snapshot.requests_in_window() == 1002
    assert snapshot.consecutive_failures == 1  # the run after the last success


async def test_one_waiting_delivery_comes_back_for_the_next_probe_the_rest_later(
    client: Client, settings: Settings, worker: None
) -> None:
    """The circuit closing wakes everyone: only a probe candidate need come back sooner."""
    endpoint = unique("ep_queue")
    config = CONFIG.model_copy(update={"cooldown_seconds": 30, "max_cooldown_seconds": 600})
    async with CircuitView(
        client, task_queue=settings.task_queue, config=config, flush_interval=3600
    ) as view:
        for _ in range(5):
            view.record(endpoint, Signal.FAILURE)
        first, *rest = [view.gate(endpoint) for _ in range(100)]
        assert first.retry_at is not None
        assert not first.allow
        assert {g.retry_at for g in rest} == {first.retry_at + timedelta(seconds=600)}


# --- probes --------------------------------------------------------------------------------


async def test_one_probe_and_its_success_closes_the_circuit(
    view: CircuitView, client: Client
) -> None:
    endpoint = unique("ep_probe")
    await tripped(view, endpoint)
    await take_probe(view, client, endpoint)
    # Everyone else waits while the probe is out.
    waiting = view.gate(endpoint)
    assert not waiting.allow
    assert waiting.retry_at is not None
    view.record(endpoint, Signal.SUCCESS, probe=True)
    assert view.gate(endpoint) == Gate(allow=True)  # this worker knows at once
    # ... and reports it at once, without waiting for the next flush.
    await eventually(
        lambda: snapshot_of(client, endpoint),
        lambda s: s is not None and s.phase is CircuitPhase.CLOSED,
    )


async def test_a_probe_answered_with_a_4xx_closes_the_circuit(
    view: CircuitView, client: Client
) -> None:
    """A 404 is no success, but the endpoint answered: it is up."""
    endpoint = unique("ep_404")
    await tripped(view, endpoint)
    await take_probe(view, client, endpoint)
    view.record(endpoint, Signal.NEUTRAL, probe=True)
    assert view.gate(endpoint) == Gate(allow=True)
    await eventually(
        lambda: snapshot_of(client, endpoint),
        lambda s: s is not None and s.phase is CircuitPhase.CLOSED,
    )


async def test_a_failed_probe_reopens_with_a_longer_cooldown(
    client: Client, settings: Settings, worker: None
) -> None:
    endpoint = unique("ep_fail")
    config = CONFIG.model_copy(update={"max_cooldown_seconds": 60})
    async with CircuitView(
        client, task_queue=settings.task_queue, config=config, flush_interval=3600
    ) as view:
        await tripped(view, endpoint)
        await take_probe(view, client, endpoint)
        view.record(endpoint, Signal.FAILURE, probe=True)
        held = view.gate(endpoint)
        assert not held.allow
        snapshot = await eventually(
            lambda: snapshot_of(client, endpoint), lambda s: s is not None and s.trips == 2
        )
        assert snapshot is not None
        assert snapshot.phase is CircuitPhase.OPEN


async def test_a_lost_probe_is_given_up_after_its_lease(
    client: Client, settings: Settings, worker: None
) -> None:
    endpoint = unique("ep_lost")
    config = CONFIG.model_copy(update={"probe_lease_seconds": 1})
    async with CircuitView(
        client, task_queue=settings.task_queue, config=config, flush_interval=3600
    ) as view:
        await tripped(view, endpoint)
        await take_probe(view, client, endpoint)
        # The delivery that took it never reports (its worker slot died, say). Once the
        # lease is over, the circuit grants another probe.
        await take_probe(view, client, endpoint)
        view.record(endpoint, Signal.SUCCESS, probe=True)
        assert view.gate(endpoint) == Gate(allow=True)


async def test_a_probe_request_to_a_circuit_closed_meanwhile_reopens_the_gate(
    view: CircuitView, client: Client
) -> None:
    endpoint = unique("ep_reset")
    await tripped(view, endpoint)
    handle = client.get_workflow_handle(circuit_id(endpoint))
    await handle.signal("reset", OperatorRequest(requested_by="test"))
    # This worker's copy still says open; asking for a probe learns otherwise.
    assert await gate_until(view, endpoint) == Gate(allow=True)


async def test_two_workers_asking_for_the_probe_at_once_get_one_between_them(
    client: Client, settings: Settings, worker: None
) -> None:
    endpoint = unique("ep_race")
    views = [
        CircuitView(client, task_queue=settings.task_queue, config=CONFIG, flush_interval=3600)
        for _ in range(2)
    ]
    async with views[0] as one, views[1] as two:
        await tripped(one, endpoint)
        await tripped(two, endpoint)
        await eventually(
            lambda: snapshot_of(client, endpoint),
            lambda s: s is not None and s.phase is not CircuitPhase.CLOSED,
        )
        # Both ask like their deliveries would, at the same moments, for several seconds
        # (the probe's lease, a minute, outlasts the test: there is one probe to give).
        granted = {0: 0, 1: 0}
        for _ in range(100):
            for index, view in enumerate((one, two)):
                gate = view.gate(endpoint)
                granted[index] += gate.allow and gate.probe
            await asyncio.sleep(0.05)
    assert sorted(granted.values()) == [0, 1], granted


# --- disabled ------------------------------------------------------------------------------


async def disabled_by_operator(
    client: Client, settings: Settings, endpoint: str
) -> WorkflowHandle[object, object]:
    handle: WorkflowHandle[object, object] = await client.start_workflow(
        "EndpointCircuit",
        CircuitInput(endpoint_id=endpoint, config=CONFIG),
        id=circuit_id(endpoint),
        task_queue=settings.task_queue,
        start_signal="disable",
        start_signal_args=[OperatorRequest(requested_by="test", reason="maintenance")],
    )
    return handle


async def discovered(view: CircuitView, endpoint: str) -> None:
    """Discover until the view refuses the endpoint (visibility is asynchronous)."""

    async def ask() -> Gate:
        await view.discover()
        return view.gate(endpoint)

    await eventually(ask, lambda g: g.disabled)


async def test_discovery_finds_a_circuit_this_worker_never_saw_fail(
    view: CircuitView, client: Client, settings: Settings
) -> None:
    endpoint = unique("ep_found")
    assert view.gate(endpoint) == Gate(allow=True)
    await disabled_by_operator(client, settings, endpoint)
    await discovered(view, endpoint)


async def test_discovery_ignores_other_task_queues(
    view: CircuitView, client: Client, settings: Settings
) -> None:
    endpoint = unique("ep_elsewhere")
    other = settings.model_copy(update={"task_queue": unique("other-queue")})
    async with running_worker(client, other):
        handle = await disabled_by_operator(client, other, endpoint)
        query = f"WorkflowId='{handle.id}' AND WebhookStatus='disabled'"
        await eventually(lambda: client.count_workflows(query), lambda c: c.count == 1)
        await view.discover()
        assert view.gate(endpoint) == Gate(allow=True)
        await handle.terminate()


async def test_an_old_disabled_copy_is_checked_again_before_refusing(
    view: CircuitView, client: Client, settings: Settings
) -> None:
    endpoint = unique("ep_enable")
    handle = await disabled_by_operator(client, settings, endpoint)
    await discovered(view, endpoint)

    # Nothing refreshes this copy until a delivery asks: let it age past what a
    # refusal may be based on (2 refresh intervals), then enable the endpoint.
    await asyncio.sleep(2 * REFRESH + 0.1)
    await handle.signal("enable", OperatorRequest(requested_by="test"))
    asked = datetime.now(UTC)
    first = view.gate(endpoint)
    assert first == Gate(allow=False, retry_at=first.retry_at)  # wait, not refuse
    assert first.retry_at is not None
    assert first.retry_at >= asked + timedelta(seconds=PROBE_POLL_SECONDS)
    await gate_until(view, endpoint)


async def test_a_410_disables_at_once_on_this_worker(view: CircuitView, client: Client) -> None:
    endpoint = unique("ep_gone")
    view.record(endpoint, Signal.GONE)
    assert view.gate(endpoint) == Gate(allow=False, disabled=True)
    await view.flush()
    snapshot = await eventually(lambda: snapshot_of(client, endpoint), lambda s: s is not None)
    assert snapshot is not None
    assert snapshot.phase is CircuitPhase.DISABLED


def test_the_refresh_interval_must_keep_within_the_documented_lag(client: Client) -> None:
    with pytest.raises(ValueError, match="refresh_interval"):
        CircuitView(client, task_queue="q", config=CONFIG, refresh_interval=2)
