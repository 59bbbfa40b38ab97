"""The activity that publishes operational events to StreamPay's operations endpoint(s).

Workflows (`DeadLetter`, `EndpointCircuit`) name the event; this activity, in the worker,
fills in the subject endpoint's account from the registry, drops events about an operations
endpoint itself (an operations endpoint that fails must not report on its own reports), and
publishes to the operations account like any event: one `WebhookDelivery` per subscribed
endpoint, signed and retried. The event id comes from the workflow, so a retry of this
activity finds the deliveries it already started instead of starting new ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from temporalio import activity

from webhooks.core.events import validate_event_data
from webhooks.core.operational import EXPIRY_WARNING_SECONDS, OperationalConfig, OperationalEvent
from webhooks.registry.errors import EndpointNotFoundError
from webhooks.registry.service import EndpointRegistry

log = logging.getLogger(__name__)


class PublishEvent(Protocol):
    """`WebhookPublisher.publish_event`: fan an event out to an account's subscribed endpoints."""

    def __call__(
        self, *, account_id: str, event_type: str, data: Any, event_id: str
    ) -> Awaitable[list[str]]: ...


AccountOf = Callable[[str], Awaitable[str | None]]
"""The account owning an endpoint id, None when the registry does not know it."""


def accounts_in(registry: EndpointRegistry) -> AccountOf:
    """`AccountOf` read from the registry (one read per event: they are rare)."""

    async def account_of(endpoint_id: str) -> str | None:
        try:
            return (await registry.get(endpoint_id)).account_id
        except EndpointNotFoundError:
            return None  # deleted since (or a delivery from before the registry)

    return account_of


class OperationalEvents:
    """Holds what the activity needs; without an operations account it publishes nothing."""

    def __init__(
        self,
        *,
        operations_account: str | None,
        publish: PublishEvent | None,
        account_of: AccountOf | None,
        expiry_warning_seconds: float = EXPIRY_WARNING_SECONDS,
    ) -> None:
        self._target = (
            (operations_account, publish, account_of)
            if operations_account and publish and account_of
            else None
        )
        self._config = OperationalConfig(
            enabled=self._target is not None, expiry_warning_seconds=expiry_warning_seconds
        )

    @activity.defn(name="publish_operational_event")
    async def publish_operational_event(self, event: OperationalEvent) -> OperationalConfig:
        """Publish `event` (unless it is about an operations endpoint); answer with the
        worker's settings, which the emitting workflow records."""
        if self._target is None:
            return self._config
        operations, publish, account_of = self._target
        account = await account_of(event.endpoint_id)
        if account == operations:
            log.info(
                "operational event %s about operations endpoint not sent",
                event.event_type,
                extra={"endpoint_id": event.endpoint_id},
            )
            return self._config
        data = validate_event_data(event.event_type, {**event.data, "account_id": account})
        ids = await publish(
            account_id=operations,
            event_type=event.event_type,
            data=data,
            event_id=event.event_id,
        )
        log.info(
            "operational event %s published to %d operations endpoint(s)",
            event.event_type,
            len(ids),
            extra={"endpoint_id": event.endpoint_id},
        )
        return self._config
