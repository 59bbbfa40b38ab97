"""Circuits for the CLI and the console: which endpoints are not closed (each circuit
workflow keeps its phase in `WebhookStatus`), one circuit's state, and the operator's
`disable`, `enable` and `reset`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.circuit import (
    CircuitInput,
    CircuitPhase,
    CircuitSnapshot,
    OperatorRequest,
    PublishedCircuit,
)
from webhooks.core.ids import circuit_id
from webhooks.core.names import CIRCUIT_WORKFLOW
from webhooks.core.visibility import quote


@dataclass(frozen=True)
class CircuitRow:
    endpoint_id: str
    phase: str


async def circuits_not_closed(client: Client, limit: int = 200) -> list[CircuitRow]:
    query = (
        f"WorkflowType={quote(CIRCUIT_WORKFLOW)} AND ExecutionStatus='Running' "
        f"AND {sa.STATUS.name}!={quote(CircuitPhase.CLOSED.value)}"
    )
    rows = []
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        endpoint = attrs.get(sa.ENDPOINT_ID)
        phase = attrs.get(sa.STATUS)
        if endpoint and phase:
            rows.append(CircuitRow(endpoint, phase))
    return rows


class NoCircuitError(Exception):
    """`reset`/`enable` of an endpoint that has no circuit (it is closed)."""


async def circuit_snapshot(client: Client, endpoint_id: str) -> CircuitSnapshot:
    """The circuit's whole state; a closed one for an endpoint that has no circuit."""
    handle = client.get_workflow_handle(circuit_id(endpoint_id))
    try:
        snapshot: CircuitSnapshot = await handle.query("state", result_type=CircuitSnapshot)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            # Never failed, or healthy long enough to be forgotten.
            return CircuitSnapshot(endpoint_id=endpoint_id)
        raise
    return snapshot


CLOCK_SLACK = timedelta(seconds=1)
OPERATOR_SIGNALS = {
    "disable": CircuitPhase.DISABLED,
    "enable": CircuitPhase.CLOSED,
    "reset": CircuitPhase.CLOSED,
}
"""The operator's signals and the phase each leads to."""


async def steer_circuit(
    client: Client,
    settings: Settings,
    endpoint_id: str,
    signal: str,
    request: OperatorRequest,
    *,
    verdicts: Callable[[str], Awaitable[PublishedCircuit | None]],
    within: float = 60.0,
) -> None:
    """Send an operator signal, then wait until every worker acts on it: the circuit has
    published the new phase to the registry (`verdicts`) and the workers' registry caches
    have expired. So once this returns, `disable` stops every send to the endpoint and
    `enable && webhooks dlq redeliver ...` is safe.

    `disable` starts the circuit of an endpoint that never failed (on the control queue);
    `reset`/`enable` of one without a circuit raise NoCircuitError."""
    phase = OPERATOR_SIGNALS[signal]
    # The verdict carries the circuit's (server's) time of the change: a little slack
    # for clocks that differ.
    asked = datetime.now(UTC) - CLOCK_SLACK
    if signal == "disable":
        await client.start_workflow(
            CIRCUIT_WORKFLOW,
            CircuitInput(
                endpoint_id=endpoint_id,
                config=settings.circuit,
                control_task_queue=settings.control_queue,
            ),
            id=circuit_id(endpoint_id),
            task_queue=settings.control_queue,
            start_signal=signal,
            start_signal_args=[request],
        )
    else:
        try:
            await client.get_workflow_handle(circuit_id(endpoint_id)).signal(signal, request)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NoCircuitError(
                    f"endpoint {endpoint_id!r} has no circuit: it is closed"
                ) from None
            raise
    deadline = time.monotonic() + within
    while True:
        verdict = await verdicts(endpoint_id)
        if verdict is not None and verdict.phase is phase and verdict.changed_at >= asked:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the circuit of {endpoint_id!r} did not publish {phase.value} within "
                f"{within:g} s: is a worker polling {settings.control_queue!r}?"
            )
        await asyncio.sleep(0.2)
    await asyncio.sleep(settings.registry_cache_seconds + 0.5)
