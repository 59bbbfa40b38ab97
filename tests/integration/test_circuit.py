"""The endpoint circuit against a real dev server and real HTTP: a dead endpoint costs
almost nothing, a healthy one nothing at all, and recovery delivers everything."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tests.conftest import EndpointPublisher
from webhooks.config import Settings
from webhooks.core.circuit import CircuitConfig, CircuitPhase, CircuitSnapshot
from webhooks.core.ids import circuit_id
from webhooks.core.models import DeliveryResult, DeliveryState, RetrySchedule
from webhooks.dev.receiver import Behavior, ReceivedRequest, Receiver, Respond
from worker import running_worker

CONFIG = CircuitConfig(cooldown_seconds=2, max_cooldown_seconds=4, min_requests=10)
SCHEDULE = RetrySchedule(
    schedule_seconds=[0, 1, 2, 3], max_attempts=50, jitter=0.1, throttled_min_seconds=0
)


@pytest.fixture
def circuit_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"circuit_enabled": True, "circuit": CONFIG})


@pytest.fixture
async def circuit_worker(client: Client, circuit_settings: Settings) -> AsyncIterator[None]:
    async with running_worker(client, circuit_settings):
        yield


class Switch:
    """A receiver answer that a test flips from failing to healthy."""

    def __init__(self, status: int) -> None:
        self.status = status

    def __call__(self, _: ReceivedRequest) -> Behavior:
        return Respond(self.status)


async def until(check: Callable[[], object], within: float = 60, every: float = 0.2) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(every)


async def circuit_state(client: Client, endpoint_id: str) -> CircuitSnapshot:
    handle = client.get_workflow_handle(circuit_id(endpoint_id))
    for _ in range(50):
        try:
            snapshot: CircuitSnapshot = await handle.query("state", result_type=CircuitSnapshot)
            return snapshot
        except RPCError as err:
            # A loaded server sheds queries ("consistent query buffer is full"): not yet.
            if err.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("the circuit never answered its state query")


async def test_dead_endpoint_is_cut_off_and_recovers(
    client: Client, circuit_settings: Settings, circuit_worker: None, publisher: EndpointPublisher
) -> None:
    publisher = publisher.on(client, circuit_settings.task_queue)
    bad, good = Switch(500), Switch(200)
    async with Receiver(bad) as bad_rx, Receiver(good) as good_rx:

        async def publish(endpoint: str, url: str, n: int) -> list[str]:
            ids: list[str] = []
            for chunk in range(0, n, 50):
                ids += await asyncio.gather(
                    *(
                        publisher.publish(
                            endpoint_id=endpoint,
                            url=url,
                            event_type="test.circuit",
                            data={"i": i},
                            event_id=f"evt_{i}",
                            retry=SCHEDULE,
                        )
                        for i in range(chunk, min(chunk + 50, n))
                    )
                )
            return ids

        started = time.monotonic()
        bad_ids = await publish("ep_dead", bad_rx.url, 1000)
        good_ids = await publish("ep_healthy", good_rx.url, 50)
        await until(lambda: len(good_rx.requests) >= 50)
        snapshot = await circuit_state(client, "ep_dead")
        assert snapshot.phase in (CircuitPhase.OPEN, CircuitPhase.HALF_OPEN)
        failing_for = time.monotonic() - started
        # Let it stay dead through a few cooldowns: only probes may reach it.
        await asyncio.sleep(6)
        failing_for = time.monotonic() - started
        requests_while_failing = len(bad_rx.requests)
        first_open = snapshot.opened_at
        assert first_open is not None
        before_open = sum(1 for r in bad_rx.requests if r.received_at <= first_open.timestamp())
        probes = requests_while_failing - before_open
        max_probes = int(failing_for / CONFIG.cooldown_seconds) + 1
        print(
            f"\n1000 deliveries to a dead endpoint over {failing_for:.1f} s: "
            f"{requests_while_failing} requests ({before_open} before the circuit opened, "
            f"{probes} after; bound {max_probes} probes)"
        )
        assert probes <= max_probes
        assert before_open < 100, "the local circuit should trip after a handful of failures"

        # The healthy endpoint never noticed: every delivery went through on its first try.
        for delivery_id in good_ids:
            result = await client.get_workflow_handle(
                delivery_id, result_type=DeliveryResult
            ).result()
            assert result.state is DeliveryState.DELIVERED
            assert result.attempts == 1
        with pytest.raises(Exception, match="not found"):
            await circuit_state(client, "ep_healthy")

        # Recovery: the next probe succeeds, the circuit closes, everything waiting goes.
        bad.status = 200
        results = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.get_workflow_handle(d, result_type=DeliveryResult).result()
                    for d in bad_ids
                )
            ),
            timeout=180,
        )
        assert all(r.state is DeliveryState.DELIVERED for r in results)
        delivered_ids = {r.headers["webhook-id"] for r in bad_rx.requests[requests_while_failing:]}
        assert delivered_ids >= set(bad_ids)

        handle = client.get_workflow_handle(circuit_id("ep_dead"))
        desc = await handle.describe()
        history = [e async for e in handle.fetch_history_events()]
        signals = sum(
            1 for e in history if e.HasField("workflow_execution_signaled_event_attributes")
        )
        elapsed = time.monotonic() - started
        print(
            f"circuit workflow received {signals} signals over {elapsed:.1f} s "
            f"(status {desc.status.name if desc.status else '?'})"
        )
        # At most about one report per second from our one worker, plus probe results.
        assert signals <= elapsed + 10
        if desc.status is WorkflowExecutionStatus.RUNNING:
            assert (await circuit_state(client, "ep_dead")).phase is CircuitPhase.CLOSED
