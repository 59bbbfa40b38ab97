"""A malformed input never leaves a workflow task failing forever. A `DeadLetter` fails with
the validation error; an `EndpointCircuit` (the one workflow that gates its endpoint: an
input must never end it) starts a fresh circuit for the endpoint its id names.
(`WebhookDelivery` dead-letters an input it cannot use: see test_delivery_edges.py.)"""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowFailureError

from webhooks.config import Settings
from webhooks.core.circuit import CircuitPhase, CircuitSnapshot
from webhooks.core.ids import circuit_id

MALFORMED = {"delivery_id": "has spaces", "url": "ftp://example.com"}


async def test_a_malformed_dead_letter_input_fails_the_workflow(
    client: Client, settings: Settings, worker: None
) -> None:
    handle = await client.start_workflow(
        "DeadLetter",
        MALFORMED,
        id=f"bad-input-DeadLetter-{settings.task_queue}",
        task_queue=settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "validation error" in str(failure.value.cause)


async def test_a_malformed_circuit_input_starts_a_fresh_circuit(
    client: Client, settings: Settings, worker: None
) -> None:
    endpoint = f"ep_bad_input_{settings.task_queue[-8:]}"
    handle = await client.start_workflow(
        "EndpointCircuit",
        MALFORMED,
        id=circuit_id(endpoint),
        task_queue=settings.control_queue,
        start_signal="disable",
        result_type=CircuitSnapshot,
    )
    snapshot = await handle.query("state", result_type=CircuitSnapshot)
    assert snapshot.endpoint_id == endpoint
    assert snapshot.phase is CircuitPhase.DISABLED  # it took the signal that came with it
    await handle.signal("enable")
    final = await handle.result()
    assert final.phase is CircuitPhase.CLOSED
