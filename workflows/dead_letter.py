"""`DeadLetter`: a delivery that could not be delivered, parked where operators can see it.

It waits (durably, for the retention period) for one operator action: `redeliver` starts a
fresh `WebhookDelivery` run under the same delivery id (same `webhook-id`, same body bytes,
a fresh attempt budget), `discard` closes it. The first action wins; later ones are
ignored, so two operators racing cannot deliver twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from webhooks.core import metrics, operational
    from webhooks.core import search_attributes as sa
    from webhooks.core.events import EventData
    from webhooks.core.models import (
        DeadLetterEntry,
        DeadLetterReason,
        DeadLetterState,
        DeadLetterView,
        DeliveryOptions,
        DeliveryRequest,
        DeliveryState,
        DiscardRequest,
        RedeliverRequest,
    )
    from webhooks.core.names import DEAD_LETTER_WORKFLOW, DELIVERY_WORKFLOW
    from webhooks.core.operational import OperationalConfig, OperationalType
    from webhooks.core.policy import carried_attempts
    from workflows.inputs import missing_input
    from workflows.operational import emit
    from workflows.telemetry import counter

START_RETRY_INTERVAL = timedelta(seconds=1)
START_RETRY_MAX_INTERVAL = timedelta(minutes=5)
"""Backoff while the delivery id is still taken, so a long wait adds few history events."""
REDELIVERY_PATCH = "redelivery-keeps-options-caps-attempts"
"""Before it, a new schedule dropped the other options (the dead letters' retention) and
a redelivery carried every earlier attempt, growing with each generation."""


# A malformed input (say, from a non-Python publisher) fails the workflow with the
# validation error instead of failing its workflow task forever.
@workflow.defn(name=DEAD_LETTER_WORKFLOW, failure_exception_types=[ValidationError])
class DeadLetter:
    @workflow.init
    def __init__(self, entry: DeadLetterEntry | None = None) -> None:
        if entry is None:
            raise missing_input(DEAD_LETTER_WORKFLOW)
        self._view = DeadLetterView(entry=entry, state=DeadLetterState.OPEN)
        self._redeliver: RedeliverRequest | None = None
        self._discard: DiscardRequest | None = None

    @workflow.run
    async def run(self, entry: DeadLetterEntry | None = None) -> DeadLetterView:
        entry = self._view.entry
        # Counters (not emitted on replay): open dead letters = opened - closed, per reason.
        counter(metrics.DEAD_LETTERS_OPENED).add(1, {"reason": entry.reason.value})
        if not await self._wait_for_action(entry):
            return self._close(DeadLetterState.EXPIRED, "system", "retention period elapsed")
        if self._redeliver is not None:
            return await self._start_redelivery(self._redeliver)
        assert self._discard is not None
        return self._close(
            DeadLetterState.DISCARDED, self._discard.requested_by, self._discard.reason
        )

    async def _wait_for_action(self, entry: DeadLetterEntry) -> bool:
        """Wait for `redeliver` or `discard` until the retention ends; False if it did.

        StreamPay's operations endpoints hear of the dead letter, and again a warning
        period before it expires (`webhooks.core.operational`)."""
        expires_at = workflow.now() + timedelta(seconds=entry.retention_seconds)
        if workflow.patched(operational.PATCH):
            config = await self._tell(operational.DELIVERY_DEAD_LETTERED, entry, expires_at)
            warn_at = expires_at - timedelta(seconds=config.expiry_warning_seconds)
            if config.enabled and warn_at > workflow.now():
                if await self._acted_before(warn_at):
                    return True
                await self._tell(operational.DEAD_LETTER_EXPIRING, entry, expires_at)
        return await self._acted_before(expires_at)

    async def _acted_before(self, deadline: datetime) -> bool:
        try:
            await workflow.wait_condition(
                lambda: self._acted, timeout=max(deadline - workflow.now(), timedelta(0))
            )
        except TimeoutError:
            return False
        return True

    async def _tell(
        self, event_type: OperationalType, entry: DeadLetterEntry, expires_at: datetime
    ) -> OperationalConfig:
        request = entry.request
        data: EventData
        if event_type == operational.DELIVERY_DEAD_LETTERED:
            data = operational.DeliveryDeadLettered(
                endpoint_id=request.endpoint_id,
                delivery_id=request.delivery_id,
                dead_letter_id=entry.dead_letter_id,
                event_id=request.event_id,
                event_type=request.event_type,
                reason=entry.reason,
                attempts=len(entry.attempts),
                dead_lettered_at=entry.dead_lettered_at,
                expires_at=expires_at,
            )
        else:
            data = operational.DeadLetterExpiring(
                endpoint_id=request.endpoint_id,
                delivery_id=request.delivery_id,
                dead_letter_id=entry.dead_letter_id,
                event_type=request.event_type,
                reason=entry.reason,
                expires_at=expires_at,
            )
        event_id = f"{entry.dead_letter_id}.{event_type}"
        return await emit(operational.event(event_type, event_id, data))

    @property
    def _acted(self) -> bool:
        return self._redeliver is not None or self._discard is not None

    @workflow.signal(name="redeliver")
    def redeliver(self, request: RedeliverRequest | None = None) -> None:
        if self._acted:
            workflow.logger.info("dead letter already acted on; ignoring redeliver")
            return
        if self._view.entry.reason is DeadLetterReason.INVALID_INPUT:
            # Its request is only what could be read of the input: nothing to deliver.
            workflow.logger.warning("an invalid input cannot be redelivered; ignoring")
            return
        self._redeliver = request or RedeliverRequest()

    @workflow.signal(name="discard")
    def discard(self, request: DiscardRequest | None = None) -> None:
        if self._acted:
            workflow.logger.info("dead letter already acted on; ignoring discard")
            return
        self._discard = request or DiscardRequest()

    @workflow.query(name="entry")
    def entry(self) -> DeadLetterView:
        return self._view

    async def _start_redelivery(self, ask: RedeliverRequest) -> DeadLetterView:
        request = self._redelivery(ask)
        old = self._view.entry.request
        wait = START_RETRY_INTERVAL
        while True:
            try:
                handle = await workflow.start_child_workflow(
                    DELIVERY_WORKFLOW,
                    request,
                    id=old.delivery_id,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    search_attributes=TypedSearchAttributes(
                        [
                            *sa.identity(
                                old,
                                account=old.account_id is not None
                                and workflow.patched(sa.ACCOUNT_PATCH),
                            ),
                            SearchAttributePair(sa.STATUS, DeliveryState.PENDING.value),
                        ]
                    ),
                )
                break
            except WorkflowAlreadyStartedError:
                # A run of this delivery id is still open: normally the one that dead-lettered
                # us (about to close), but it could be one that runs for days.
                await workflow.sleep(wait)
                wait = min(wait * 2, START_RETRY_MAX_INTERVAL)
        view = self._close(DeadLetterState.REDELIVERED, ask.requested_by, None)
        self._view = view.model_copy(
            update={"redelivery_id": handle.id, "redelivery_run_id": handle.first_execution_run_id}
        )
        return self._view

    def _redelivery(self, ask: RedeliverRequest) -> DeliveryRequest:
        """The next run's input: the same request, a fresh budget, the earlier attempts."""
        entry = self._view.entry
        old = entry.request
        if not workflow.patched(REDELIVERY_PATCH):
            options = (
                old.options
                if ask.retry is None
                else DeliveryOptions(
                    retry=ask.retry, dead_letter_on_4xx=old.options.dead_letter_on_4xx
                )
            )
            return old.model_copy(
                update={
                    "generation": old.generation + 1,
                    "prior_attempts": entry.attempts,
                    "options": options,
                }
            )
        if ask.retry is not None:
            options = old.options.model_copy(update={"retry": ask.retry})
        else:
            options = old.options
        prior, earlier = carried_attempts(entry.attempts, old.earlier_attempts)
        return old.model_copy(
            update={
                "generation": old.generation + 1,
                "prior_attempts": prior,
                "earlier_attempts": earlier,
                "options": options,
            }
        )

    def _close(self, state: DeadLetterState, by: str, note: str | None) -> DeadLetterView:
        self._view = self._view.model_copy(
            update={"state": state, "acted_by": by, "acted_at": workflow.now(), "note": note}
        )
        workflow.upsert_search_attributes([sa.STATUS.value_set(state.value)])
        counter(metrics.DEAD_LETTERS_CLOSED).add(
            1, {"reason": self._view.entry.reason.value, "state": state.value}
        )
        return self._view
