"""A malformed `WebhookDelivery` input from a non-Python publisher fails that workflow
with the validation error; it never leaves a workflow task failing forever."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowFailureError

from webhooks.config import Settings


@pytest.mark.parametrize("workflow_type", ["WebhookDelivery", "DeadLetter", "EndpointCircuit"])
async def test_malformed_input_fails_the_workflow(
    client: Client, settings: Settings, worker: None, workflow_type: str
) -> None:
    handle = await client.start_workflow(
        workflow_type,
        {"delivery_id": "has spaces", "url": "ftp://example.com"},
        id=f"bad-input-{workflow_type}-{settings.task_queue}",
        task_queue=settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "validation error" in str(failure.value.cause)
