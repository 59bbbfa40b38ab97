"""Circuits on visibility: which endpoints are not closed (each circuit workflow keeps its
phase in `WebhookStatus`)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from webhooks.core import search_attributes as sa
from webhooks.core.circuit import CircuitPhase
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
