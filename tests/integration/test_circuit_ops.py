"""Operating the endpoint circuit on a real dev server with real HTTP: auto-disable and
`enable`, 410 Gone, an operator disabling a healthy endpoint, the CLI, continue-as-new
and the search attribute operators find circuits by."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import Client, RPCError, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCStatusCode

from activities.circuit_view import (
    SELF_WAKE_SECONDS,
    CircuitActivities,
    WakeProgress,
    _held_query,
)
from tests.conftest import EndpointPublisher
from tests.integration import BOUND_SECONDS, Cli, eventually, unique
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.circuit import (
    CircuitConfig,
    CircuitInput,
    CircuitPhase,
    CircuitSnapshot,
    OperatorRequest,
    OutcomeReport,
)
from webhooks.core.ids import circuit_id
from webhooks.core.models import DeadLetterReason, DeliveryResult, DeliveryState, RetrySchedule
from webhooks.core.visibility import quote
from webhooks.dev.receiver import ReceivedRequest, Receiver, Respond
from webhooks.ops import circuits
from webhooks.registry.service import EndpointRegistry
from worker import running_worker

EVENT = "test.circuit_ops"
CONFIG = CircuitConfig(
    cooldown_seconds=0.5,
    max_cooldown_seconds=1,
    min_requests=5,
    consecutive_failures=5,
)
RETRY = RetrySchedule(
    schedule_seconds=[0, 0.5, 1], max_attempts=100, jitter=0, throttled_min_seconds=0
)
"""Keeps retrying (every second) for far longer than any of these tests runs."""
CLOSE_SECONDS = 2 * (BOUND_SECONDS + CircuitConfig().settle_seconds + 2 * SELF_WAKE_SECONDS)
"""A closed circuit completes only after its wake: the settle, then two sweeps
SELF_WAKE_SECONDS apart, each as slow as visibility on a loaded machine (about 15 s when
idle); twice that, as a continue-as-new during the wake starts it again in the new run."""


class Switch:
    """The receiver's answer, which a test flips; remembers what it answered 2xx to."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.ok: set[str] = set()

    def __call__(self, request: ReceivedRequest) -> Respond:
        if 200 <= self.status < 300:
            self.ok.add(request.headers["webhook-id"])
        return Respond(self.status)


def circuit_settings(settings: Settings, config: CircuitConfig = CONFIG) -> Settings:
    return settings.model_copy(update={"circuit_enabled": True, "circuit": config})


@pytest.fixture
async def circuit_worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    async with running_worker(client, circuit_settings(settings)):
        yield


@pytest.fixture
def cli(client: Client, settings: Settings) -> Cli:
    return Cli(client, settings)


async def publish(publisher: EndpointPublisher, endpoint: str, url: str, n: int) -> list[str]:
    return list(
        await asyncio.gather(
            *(
                publisher.publish(
                    endpoint_id=endpoint,
                    url=url,
                    event_type=EVENT,
                    data={"i": i},
                    event_id=unique("evt"),
                    retry=RETRY,
                )
                for i in range(n)
            )
        )
    )


async def results(client: Client, ids: list[str]) -> list[DeliveryResult]:
    """The latest run's result of each delivery."""

    async def one(delivery_id: str) -> DeliveryResult:
        handle = client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
        result: DeliveryResult = await handle.result()
        return result

    return await asyncio.wait_for(asyncio.gather(*(one(d) for d in ids)), BOUND_SECONDS)


async def state(client: Client, endpoint: str) -> CircuitSnapshot | None:
    """The circuit's `state` query; None while it has no circuit workflow.

    A shed query (RESOURCE_EXHAUSTED: the circuit's query buffer is full on a busy worker)
    is no answer: it is asked again, never taken for "no circuit"."""
    handle = client.get_workflow_handle(circuit_id(endpoint))
    deadline = asyncio.get_running_loop().time() + BOUND_SECONDS
    while True:
        try:
            snapshot: CircuitSnapshot = await handle.query("state", result_type=CircuitSnapshot)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            if err.status is not RPCStatusCode.RESOURCE_EXHAUSTED:
                raise
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        return snapshot


async def phase_becomes(client: Client, endpoint: str, phase: CircuitPhase) -> CircuitSnapshot:
    snapshot = await eventually(
        lambda: state(client, endpoint),
        lambda s: s is not None and s.phase is phase,
        interval=0.05,
    )
    assert snapshot is not None
    return snapshot


async def dead_letter_count(client: Client, endpoint: str, reason: DeadLetterReason) -> int:
    query = (
        f"WorkflowType='DeadLetter' AND {sa.ENDPOINT_ID.name}='{endpoint}' "
        f"AND {sa.DEAD_LETTER_REASON.name}='{reason.value}'"
    )
    return (await client.count_workflows(query)).count


# --- auto-disable, enable, redelivery ------------------------------------------------------


async def test_a_dead_endpoint_is_disabled_and_enable_plus_redelivery_delivers_everything(
    client: Client, settings: Settings, cli: Cli, publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_dead")
    # Waiting deliveries sleep 30 s between checks: only the disable wakes them in time.
    config = CONFIG.model_copy(update={"disable_after_seconds": 3, "max_cooldown_seconds": 30})
    switch = Switch(500)
    async with (
        running_worker(client, circuit_settings(settings, config)),
        Receiver(switch) as rx,
    ):
        waiting = await publish(publisher, endpoint, rx.url, 20)
        disabled = await phase_becomes(client, endpoint, CircuitPhase.DISABLED)
        at_disable = len(rx.requests)
        assert disabled.disabled_reason == "failing continuously for 3 seconds"
        assert disabled.failing_since is not None

        # Every waiting delivery goes to the dead-letter queue, unsent.
        for result in await results(client, waiting):
            assert result.state is DeliveryState.DEAD_LETTERED
            assert result.dead_letter_reason is DeadLetterReason.ENDPOINT_DISABLED
        # At most a probe granted just before the disable may still have gone out.
        assert len(rx.requests) - at_disable <= 1
        after_waiting = len(rx.requests)

        # New deliveries too, without a single request.
        new = await publish(publisher, endpoint, rx.url, 5)
        for result in await results(client, new):
            assert result.state is DeliveryState.DEAD_LETTERED
            assert result.dead_letter_reason is DeadLetterReason.ENDPOINT_DISABLED
            assert result.attempts == 0
        assert len(rx.requests) == after_waiting
        # Nothing dropped: one dead letter per delivery.
        await eventually(
            lambda: dead_letter_count(client, endpoint, DeadLetterReason.ENDPOINT_DISABLED),
            lambda n: n == 25,
        )
        shown = await cli.json("circuit", "show", endpoint)
        assert shown["phase"] == "disabled"
        assert shown["disabled_reason"] == "failing continuously for 3 seconds"

        # The customer fixed it; an operator enables the endpoint and at once redelivers
        # (`enable && webhooks dlq redeliver ...`: no waiting for the circuit to close).
        switch.status = 200
        enabled = await cli.json("circuit", "enable", endpoint, "--by", "ops")
        assert enabled == {"endpoint_id": endpoint, "signalled": "enable"}
        redelivered = await cli.json(
            "dlq",
            "redeliver",
            "--endpoint",
            endpoint,
            "--reason",
            "endpoint_disabled",
            "--rate",
            "100",
        )
        assert redelivered["progress"]["signalled"] == 25  # the bulk job, followed to its end
        everything = set(waiting + new)
        await eventually(lambda: asyncio.sleep(0, switch.ok), lambda ok: ok >= everything)
        for result in await results(client, [*waiting, *new]):
            assert result.state is DeliveryState.DELIVERED
        # None was refused by a worker's stale copy of the disabled circuit.
        assert await dead_letter_count(client, endpoint, DeadLetterReason.ENDPOINT_DISABLED) == 25
        snapshot = await state(client, endpoint)
        assert snapshot is None or snapshot.disabled_reason is None


# --- recovery ------------------------------------------------------------------------------------


async def test_recovery_wakes_deliveries_held_for_long(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    """Waiting deliveries sleep a whole max cooldown; the circuit closing wakes them."""
    endpoint = unique("ep_back")
    config = CONFIG.model_copy(
        update={"cooldown_multiplier": 1, "max_cooldown_seconds": 10 * BOUND_SECONDS}
    )
    switch = Switch(500)
    async with (
        running_worker(client, circuit_settings(settings, config)),
        Receiver(switch) as rx,
    ):
        ids = await publish(publisher, endpoint, rx.url, 30)
        await phase_becomes(client, endpoint, CircuitPhase.OPEN)
        held = (
            f"WorkflowType='WebhookDelivery' AND {sa.ENDPOINT_ID.name}='{endpoint}' "
            f"AND {sa.STATUS.name}='circuit_open'"
        )
        await eventually(lambda: client.count_workflows(held), lambda c: c.count >= 20)
        failed = len(rx.requests)
        assert failed < 30  # cut off after a handful

        switch.status = 200
        # Far sooner than any of them would have checked again by itself.
        for result in await results(client, ids):
            assert result.state is DeliveryState.DELIVERED
        assert switch.ok == set(ids)
        snapshot = await state(client, endpoint)
        assert snapshot is None or snapshot.phase is CircuitPhase.CLOSED


async def test_a_hold_that_would_outlast_the_maximum_age_dead_letters_at_once(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    """Time held by the circuit counts toward `max_age`: no waiting past it for a probe."""
    endpoint = unique("ep_aged")
    config = CONFIG.model_copy(update={"cooldown_seconds": 60, "max_cooldown_seconds": 120})
    publisher = publisher.on(client, settings.task_queue)
    async with (
        running_worker(client, circuit_settings(settings, config)),
        Receiver(lambda _: Respond(500)) as rx,
    ):
        await publish(publisher, endpoint, rx.url, 10)
        await phase_becomes(client, endpoint, CircuitPhase.OPEN)
        tripped_after = len(rx.requests)
        # Its first send is held until the next probe, a minute away: past its 20 s.
        aged = await publisher.publish(
            endpoint_id=endpoint,
            url=rx.url,
            event_type=EVENT,
            data={"n": "aged"},
            retry=RETRY.model_copy(update={"max_age_seconds": 20}),
        )
        [result] = await results(client, [aged])
        assert len(rx.requests) == tripped_after
    assert result.state is DeliveryState.DEAD_LETTERED
    assert result.dead_letter_reason is DeadLetterReason.MAX_AGE
    assert result.attempts == 0
    assert all(r.headers["webhook-id"] != aged for r in rx.requests)


# --- 410 Gone ------------------------------------------------------------------------------------


async def test_410_gone_disables_the_endpoint(
    client: Client, settings: Settings, circuit_worker: None, publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_gone")
    async with Receiver(lambda _: Respond(410)) as rx:
        [gone] = await publish(publisher, endpoint, rx.url, 1)
        [result] = await results(client, [gone])
        assert result.state is DeliveryState.DEAD_LETTERED
        assert result.dead_letter_reason is DeadLetterReason.GONE
        snapshot = await phase_becomes(client, endpoint, CircuitPhase.DISABLED)
        assert snapshot.disabled_reason == "endpoint answered 410 Gone"

        # The worker saw the 410 itself: the next delivery is refused at once.
        [later] = await publish(publisher, endpoint, rx.url, 1)
        [result] = await results(client, [later])
        assert result.dead_letter_reason is DeadLetterReason.ENDPOINT_DISABLED
        assert len(rx.requests) == 1


# --- operators ------------------------------------------------------------------------------------


async def test_an_operator_disables_a_healthy_endpoint_and_resets_it(
    client: Client, settings: Settings, circuit_worker: None, cli: Cli, publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_ops")
    switch = Switch(200)
    async with Receiver(switch) as rx:
        [first] = await publish(publisher, endpoint, rx.url, 1)
        [result] = await results(client, [first])
        assert result.state is DeliveryState.DELIVERED
        with pytest.raises(RPCError) as missing_circuit:  # healthy: no circuit at all
            await client.get_workflow_handle(circuit_id(endpoint)).describe()
        assert missing_circuit.value.status == RPCStatusCode.NOT_FOUND

        shown = await cli.json("circuit", "show", endpoint)
        assert (shown["phase"], shown["failure_rate"], shown["trips"]) == ("closed", 0.0, 0)

        # Resetting a circuit that does not exist is a clear usage error.
        missing = await cli("circuit", "reset", endpoint)
        assert missing.exit_code == 2
        assert f"endpoint '{endpoint}' has no circuit" in missing.output

        disabled = await cli(
            "circuit", "disable", endpoint, "--reason", "customer asked", "--by", "alice"
        )
        assert disabled.exit_code == 0, disabled.output
        assert f"signalled disable to the circuit of {endpoint}" in disabled.output
        shown = await cli.json("circuit", "show", endpoint)
        assert shown["phase"] == "disabled"
        assert shown["disabled_reason"] == "customer asked"
        assert shown["next_probe_at"] is None
        assert shown["failure_rate"] == 0.0
        table = await cli("circuit", "show", endpoint)
        assert table.exit_code == 0
        assert "customer asked" in table.output

        # This worker never saw the endpoint fail: once `disable` has returned, its gate
        # reads the published verdict, and not one more request goes out.
        before = len(rx.requests)
        refused = await results(client, await publish(publisher, endpoint, rx.url, 5))
        assert {r.dead_letter_reason for r in refused} == {DeadLetterReason.ENDPOINT_DISABLED}
        assert all(r.attempts == 0 for r in refused)
        assert len(rx.requests) == before

        reset = await cli.json("circuit", "reset", endpoint)
        assert reset == {"endpoint_id": endpoint, "signalled": "reset"}
        shown = await cli.json("circuit", "show", endpoint)
        assert shown["phase"] == "closed"
        assert shown["disabled_reason"] is None
        assert shown["next_probe_at"] is None
        # Closed and idle: the circuit workflow completes; the endpoint is free again.
        # (It first wakes the endpoint's waiting deliveries: slower on a loaded machine.)
        handle = client.get_workflow_handle(circuit_id(endpoint))
        await asyncio.wait_for(handle.result(), 3 * BOUND_SECONDS)
        [again] = await results(client, await publish(publisher, endpoint, rx.url, 1))
        assert again.state is DeliveryState.DELIVERED


async def test_cli_show_of_an_open_circuit(
    client: Client, settings: Settings, worker: None, cli: Cli
) -> None:
    endpoint = unique("ep_show")
    handle = await start_circuit(client, settings, endpoint, CircuitConfig(cooldown_seconds=600))
    await handle.signal("report", OutcomeReport(successes=2, failures=8, trailing_failures=8))
    snapshot = await phase_becomes(client, endpoint, CircuitPhase.OPEN)
    assert snapshot.next_probe_at is not None

    shown = await cli.json("circuit", "show", endpoint)
    assert shown["phase"] == "open"
    assert shown["failure_rate"] == pytest.approx(0.8)
    assert shown["requests_in_window"] == 10
    assert shown["next_probe_at"] == snapshot.next_probe_at.isoformat().replace("+00:00", "Z")
    assert shown["opened_at"] is not None
    assert shown["trips"] == 1
    assert "buckets" not in shown
    table = await cli("circuit", "show", endpoint)
    assert "80% of 10" in table.output

    await handle.signal("reset", OperatorRequest(requested_by="test"))
    await asyncio.wait_for(handle.result(), CLOSE_SECONDS)


async def test_enable_of_an_endpoint_without_a_circuit_is_an_error(
    client: Client, cli: Cli
) -> None:
    endpoint = unique("ep_none")
    result = await cli("circuit", "enable", endpoint, "--json")
    assert result.exit_code == 2
    assert "has no circuit" in result.output


# --- continue-as-new and visibility ------------------------------------------------------------


async def start_circuit(
    client: Client, settings: Settings, endpoint: str, config: CircuitConfig
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "EndpointCircuit",
        CircuitInput(endpoint_id=endpoint, config=config),
        id=circuit_id(endpoint),
        task_queue=settings.task_queue,
    )


async def test_the_circuit_continues_as_new_and_keeps_its_state(
    client: Client, settings: Settings, worker: None
) -> None:
    endpoint = unique("ep_can")
    config = CircuitConfig(max_history_events=100, cooldown_seconds=600)
    handle = await start_circuit(client, settings, endpoint, config)
    first_run = (await handle.describe()).run_id
    await handle.signal("report", OutcomeReport(failures=25, trailing_failures=25))
    await phase_becomes(client, endpoint, CircuitPhase.OPEN)

    reports = 150
    for _ in range(reports):
        await handle.signal("report", OutcomeReport(failures=1, trailing_failures=1))
    snapshot = await eventually(
        lambda: state(client, endpoint),
        lambda s: s is not None and s.signals_received == reports + 1,
    )
    assert snapshot is not None
    description = await handle.describe()
    assert description.run_id != first_run, "it should have continued as new"
    assert snapshot.phase is CircuitPhase.OPEN
    assert snapshot.trips == 1
    assert snapshot.reports_received == reports + 1
    assert snapshot.consecutive_failures == 25 + reports
    assert snapshot.requests_in_window() == 25 + reports
    # Each run stays small.
    events = [e async for e in client.get_workflow_handle(handle.id).fetch_history_events()]
    assert len(events) <= config.max_history_events + 20
    # The new run is findable as open, like the first.
    listed = await eventually(
        lambda: listed_circuits(client, endpoint, "open"),
        lambda runs: description.run_id in runs,
    )
    assert first_run not in listed

    await handle.signal("reset")
    await asyncio.wait_for(handle.result(), CLOSE_SECONDS)


async def test_a_close_that_continues_as_new_at_once_is_still_published_and_woken(
    client: Client, settings: Settings, registry: EndpointRegistry, worker: None
) -> None:
    """The workflow task that closes the circuit also continues it as new (its history
    is long): the new run must still publish the close and run the wake. It once took
    "nothing published in this run" for "the registry holds no verdict", so the close
    was never published, the wake never ran and the circuit never completed."""
    endpoint = unique("ep_can_close")
    config = CircuitConfig(max_history_events=100, cooldown_seconds=600)
    handle = await start_circuit(client, settings, endpoint, config)
    await handle.signal("report", OutcomeReport(failures=25, trailing_failures=25))
    await phase_becomes(client, endpoint, CircuitPhase.OPEN)
    opened = await eventually(lambda: registry.circuit(endpoint), lambda v: v is not None)
    assert opened is not None
    assert opened.phase is CircuitPhase.OPEN

    async def run_and_length() -> tuple[str, int]:
        events = [e async for e in client.get_workflow_handle(handle.id).fetch_history_events()]
        return (await handle.describe()).run_id or "", len(events)

    # Bring the run's history close to its limit, one report at a time...
    run, length = await run_and_length()
    while length < config.max_history_events - 30:
        await handle.signal("report", OutcomeReport(failures=1, trailing_failures=1))
        run, length = await run_and_length()
    # ...then close it with a burst, so the task that closes it crosses the limit.
    await asyncio.gather(
        handle.signal("reset", OperatorRequest(requested_by="test")),
        *(handle.signal("enable", OperatorRequest(requested_by="test")) for _ in range(40)),
    )
    await asyncio.wait_for(handle.result(), CLOSE_SECONDS)
    closed_run = await client.get_workflow_handle(handle.id).describe()
    assert closed_run.run_id != run, "the close should have continued as new"
    verdict = await registry.circuit(endpoint)
    assert verdict is not None
    assert verdict.phase is CircuitPhase.CLOSED


async def listed_circuits(client: Client, endpoint: str, phase: str) -> list[str]:
    query = (
        f"WorkflowType='EndpointCircuit' AND {sa.STATUS.name}='{phase}' "
        f"AND {sa.ENDPOINT_ID.name}='{endpoint}' AND ExecutionStatus='Running'"
    )
    return [wf.run_id async for wf in client.list_workflows(query)]


async def test_the_search_attribute_shows_the_phase(
    client: Client, settings: Settings, worker: None
) -> None:
    endpoint = unique("ep_sa")
    handle = await start_circuit(
        client, settings, endpoint, CircuitConfig(cooldown_seconds=1, max_cooldown_seconds=1)
    )
    await eventually(lambda: listed_circuits(client, endpoint, "closed"), bool)
    await handle.signal("report", OutcomeReport(failures=20, trailing_failures=20))
    await eventually(lambda: listed_circuits(client, endpoint, "open"), bool)
    # The cooldown ends on the circuit's own timer: half-open, waiting for a probe.
    await eventually(lambda: listed_circuits(client, endpoint, "half_open"), bool)
    await handle.signal("disable", OperatorRequest(requested_by="test", reason="why not"))
    await eventually(lambda: listed_circuits(client, endpoint, "disabled"), bool)
    description = await handle.describe()
    assert description.typed_search_attributes.get(sa.ENDPOINT_ID) == endpoint

    await handle.signal("enable")
    await asyncio.wait_for(handle.result(), CLOSE_SECONDS)
    closed = f"WorkflowType='EndpointCircuit' AND {sa.ENDPOINT_ID.name}='{endpoint}'"
    finished = await eventually(
        lambda: first_status(client, closed), lambda status: status == "closed"
    )
    assert finished == "closed"


async def first_status(client: Client, query: str) -> str | None:
    async for wf in client.list_workflows(query):
        return wf.typed_search_attributes.get(sa.STATUS)
    return None


# --- the circuit cannot die ------------------------------------------------------------------


async def test_a_failing_wake_is_retried_and_the_disable_holds_meanwhile(
    client: Client,
    settings: Settings,
    publisher: EndpointPublisher,
    registry: EndpointRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Visibility is unavailable for the circuit's first three wake attempts (an injected
    failure inside the real activity): the circuit stays DISABLED, its verdict stays
    published, and once visibility answers, every held delivery is woken into the
    dead-letter queue."""
    endpoint = unique("ep_wake")
    config = CONFIG.model_copy(update={"cooldown_seconds": 600, "max_cooldown_seconds": 600})
    failures: list[str] = []
    sweep = CircuitActivities._sweep

    async def flaky_sweep(
        self: CircuitActivities, query: str, held: str, progress: WakeProgress
    ) -> None:
        if len(failures) < 3:
            failures.append(query)
            raise RuntimeError("visibility unavailable (injected)")
        await sweep(self, query, held, progress)

    monkeypatch.setattr(CircuitActivities, "_sweep", flaky_sweep)
    switch = Switch(500)
    async with (
        running_worker(client, circuit_settings(settings, config)),
        Receiver(switch) as rx,
    ):
        held = await publish(publisher, endpoint, rx.url, 15)
        await phase_becomes(client, endpoint, CircuitPhase.OPEN)

        async def held_count() -> int:
            query = (
                f"WorkflowType='WebhookDelivery' AND ExecutionStatus='Running' AND "
                f"WebhookEndpointId={quote(endpoint)} AND WebhookStatus='circuit_open'"
            )
            return (await client.count_workflows(query)).count

        await eventually(held_count, lambda n: n >= 5)
        requests_before = len(rx.requests)
        await circuits.steer_circuit(
            client,
            circuit_settings(settings, config),
            endpoint,
            "disable",
            OperatorRequest(requested_by="test", reason="customer asked"),
            verdicts=registry.circuit,
        )
        # The wake fails and is retried; meanwhile the circuit keeps its state.
        await eventually(lambda: asyncio.sleep(0, len(failures)), lambda n: n >= 1)
        snapshot = await state(client, endpoint)
        assert snapshot is not None
        assert snapshot.phase is CircuitPhase.DISABLED
        verdict = await registry.circuit(endpoint)
        assert verdict is not None
        assert verdict.phase is CircuitPhase.DISABLED

        for result in await results(client, held):
            assert result.state is DeliveryState.DEAD_LETTERED
            assert result.dead_letter_reason is DeadLetterReason.ENDPOINT_DISABLED
        assert len(failures) == 3
        # Nothing was sent once the disable had been published.
        assert len(rx.requests) == requests_before
        snapshot = await state(client, endpoint)
        assert snapshot is not None
        assert snapshot.phase is CircuitPhase.DISABLED
        description = await client.get_workflow_handle(circuit_id(endpoint)).describe()
        assert description.status is WorkflowExecutionStatus.RUNNING


async def test_an_endpoint_id_with_a_quote_makes_a_valid_wake_query(client: Client) -> None:
    """Every visibility query quotes its ids: a `'` in an endpoint id (an id from before
    the registry) is a valid query for the real server, not a syntax error that would
    fail every wake."""
    endpoint = "ep_o'brien"
    for states in ((DeliveryState.CIRCUIT_OPEN,), (DeliveryState.RETRYING,)):
        query = _held_query(endpoint, states, waking_after=datetime.now(UTC))
        assert [wf async for wf in client.list_workflows(query)] == []
