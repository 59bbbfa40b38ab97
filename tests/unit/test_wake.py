"""`wake_deliveries` stopped by its worker's shutdown resumes from its cursor on another
worker without signalling any delivery twice: a second `retry_now` landing while a woken
delivery sends its last attempt makes Temporal fail that workflow task and run the POST
again (seen in the fault campaign's rolling restart)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any, cast

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import circuit_view
from activities.circuit_view import CircuitActivities
from webhooks.core import search_attributes as sa
from webhooks.core.models import DeliveryState
from webhooks.registry.service import EndpointRegistry

HELD = [f"msg_{i}" for i in range(5)]


class Visibility:
    """Held deliveries as visibility shows them, in one page, to the first sweep (backoff
    or held); the second sweep (held again since the wake began) finds none."""

    def __init__(self, held: list[str], shutdown_after: int, env: ActivityEnvironment) -> None:
        self.held = list(held)
        self.signalled: list[str] = []
        self._shutdown_after = shutdown_after
        self._env = env

    def list_workflows(self, query: str, **_: Any) -> SimpleNamespace:
        attrs = TypedSearchAttributes(
            [SearchAttributePair(sa.STATUS, DeliveryState.CIRCUIT_OPEN.value)]
        )
        first_sweep = DeliveryState.RETRYING.value in query
        page = [SimpleNamespace(id=i, typed_search_attributes=attrs) for i in self.held]
        page = page if first_sweep else []

        async def fetch_next_page() -> None:
            pages.current_page = page

        pages = SimpleNamespace(
            current_page=None, next_page_token=None, fetch_next_page=fetch_next_page
        )
        return pages

    async def count_workflows(self, query: str) -> SimpleNamespace:
        return SimpleNamespace(count=len(self.held))

    def get_workflow_handle(self, workflow_id: str) -> SimpleNamespace:
        async def signal(name: str) -> None:
            assert name == "retry_now"
            self.signalled.append(workflow_id)
            if len(self.signalled) == self._shutdown_after:
                self._env.worker_shutdown()

        return SimpleNamespace(signal=signal)


def _activities(visibility: Visibility) -> CircuitActivities:
    return CircuitActivities(cast(Client, visibility), cast(EndpointRegistry, None))


async def test_a_wake_stopped_by_shutdown_resumes_without_signalling_anyone_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(circuit_view, "SELF_WAKE_SECONDS", 0.0)  # no pause between sweeps
    stopping = ActivityEnvironment()
    beats: list[Any] = []
    stopping.on_heartbeat = lambda *details: beats.append(details[0])
    # Signalled deliveries have not yet been through a workflow task: visibility still
    # shows them held, as it did in the campaign.
    visibility = Visibility(HELD, shutdown_after=2, env=stopping)
    with pytest.raises(ApplicationError, match="worker shutting down") as stopped:
        await stopping.run(_activities(visibility).wake_deliveries, "ep_1")
    assert stopped.value.type == "WorkerShutdown"
    # It stops at its next signal; the ones already on their way are in its cursor.
    stopped_after = visibility.signalled[:]
    assert 2 <= len(stopped_after) < len(HELD)
    assert sorted(beats[-1]["page_signalled"]) == sorted(stopped_after)
    assert beats[-1]["woken"] == len(stopped_after)

    resuming = ActivityEnvironment()
    resuming.info = dataclasses.replace(resuming.info, heartbeat_details=[beats[-1]])
    visibility._shutdown_after = 0
    woken = await resuming.run(_activities(visibility).wake_deliveries, "ep_1")
    assert sorted(visibility.signalled) == HELD  # each once
    assert woken == len(HELD)
