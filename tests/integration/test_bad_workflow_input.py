"""A malformed or missing input never leaves a workflow task failing forever. A `DeadLetter`
or a `BulkDeadLetterAction` fails with the validation error (or, started without an input,
with `InvalidInput`); an `EndpointCircuit` (the one workflow that gates its endpoint: an
input must never end it) starts a fresh circuit for the endpoint its id names.
(`WebhookDelivery` dead-letters an input it cannot use: see test_delivery_edges.py.)"""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from webhooks.config import Settings
from webhooks.core.circuit import CircuitPhase, CircuitSnapshot
from webhooks.core.ids import circuit_id
from workflows.inputs import INVALID_INPUT_ERROR

# A workflow whose __init__ raises (here: started without an input) never awaits the run
# coroutine the SDK made for it; Python warns when that coroutine is collected.
pytestmark = pytest.mark.filterwarnings(
    "ignore:coroutine '_WorkflowInstanceImpl._apply_initialize_workflow.<locals>.run_workflow'"
    " was never awaited:RuntimeWarning"
)

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


@pytest.mark.parametrize("workflow_type", ["DeadLetter", "BulkDeadLetterAction"])
async def test_a_run_started_without_an_input_fails_at_once(
    client: Client, settings: Settings, worker: None, workflow_type: str
) -> None:
    handle = await client.start_workflow(
        workflow_type,
        id=f"no-input-{workflow_type}-{settings.task_queue}",
        task_queue=settings.task_queue if workflow_type == "DeadLetter" else settings.control_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.non_retryable) == (INVALID_INPUT_ERROR, True)
    assert f"{workflow_type} started without an input" in str(cause)


@pytest.mark.parametrize("args", [[MALFORMED], []], ids=["malformed", "no-input"])
async def test_an_unusable_circuit_input_starts_a_fresh_circuit(
    client: Client, settings: Settings, worker: None, args: list[object]
) -> None:
    endpoint = f"ep_bad_input_{len(args)}_{settings.task_queue[-8:]}"
    handle = await client.start_workflow(
        "EndpointCircuit",
        args=args,
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
