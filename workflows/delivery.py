"""`WebhookDelivery`: one event to one endpoint, at least once, or into the dead-letter queue.

    attempt -> delivered?              -> done
            -> permanent failure?      -> dead letter
            -> budget or age exhausted -> dead letter
            -> wait (durable timer, cut short by `retry_now`) -> attempt again

The send runs as a local activity: one history marker per attempt instead of three events
and an extra workflow task, which is what makes the success path cheaper than a plain
activity. Every decision comes from `webhooks.core.policy`, fed with `workflow.now()` and
`workflow.random()`, so replays decide the same way.

The input arrives raw and is decoded here, so that an input the worker cannot use (from a
non-Python publisher, or a publisher newer or older than this worker) ends in the
dead-letter queue as `invalid_input`, holding the raw input, instead of failing: fields
this worker does not know are ignored and logged; a delivery id not derived from endpoint
and event id, or options beyond the bounds (`webhooks.core.policy.input_problems`), are
refused the same way.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from typing import Any, NoReturn

from pydantic import ValidationError
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import (
    RawValue,
    RetryPolicy,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.send import SendActivities
    from webhooks.core import search_attributes as sa
    from webhooks.core.circuit import HOLD_JITTER_SECONDS
    from webhooks.core.ids import dead_letter_id
    from webhooks.core.models import (
        MAX_RAW_INPUT_BYTES,
        Attempt,
        DeadLetterEntry,
        DeadLetterReason,
        DeliveryRequest,
        DeliveryResult,
        DeliveryState,
        DeliveryStatus,
        ErrorKind,
        Gate,
        Outcome,
        SendRequest,
        SendResult,
        resolve_defaults,
        salvaged_request,
        unknown_fields,
    )
    from webhooks.core.names import DELIVERY_WORKFLOW
    from webhooks.core.policy import (
        MAX_HTTP_TIMEOUT_SECONDS,
        SEND_MARGIN_SECONDS,
        Decision,
        decide,
        input_problems,
        kept_attempt,
    )
    from webhooks.core.summaries import attempt_summary, held_summary, retry_summary
    from workflows.dead_letter import DeadLetter
    from workflows.inputs import INVALID_INPUT_ERROR, NO_INPUT
    from workflows.telemetry import DeliveryTelemetry

HOLD_UNTIL_MAX_AGE_PATCH = "circuit-hold-until-max-age"
"""`workflow.patched` name: before it, a hold reaching past the maximum age dead-lettered
at once (holds were short then; now the circuit wakes held deliveries itself)."""
SEND_TIMEOUT = timedelta(seconds=MAX_HTTP_TIMEOUT_SECONDS + SEND_MARGIN_SECONDS)
"""Backstop only: the activity enforces the worker's own total HTTP timeout, which may be
configured up to `MAX_HTTP_TIMEOUT_SECONDS`; this leaves room for the registry lookup."""
INVALID_INPUT_PATCH = "invalid-input-dead-letters"
"""Before it, a malformed input failed the workflow and nothing else was checked."""


# Replays of runs from before INVALID_INPUT_PATCH still fail with the validation error.
@workflow.defn(name=DELIVERY_WORKFLOW, failure_exception_types=[ValidationError])
class WebhookDelivery:
    @workflow.init
    def __init__(self, request: RawValue = NO_INPUT) -> None:
        self._raw = request.payload
        self._invalid: Exception | None = None
        info = workflow.info()
        try:
            if request is NO_INPUT:
                raise TypeError("started without an input")
            decoded = workflow.payload_converter().from_payload(self._raw, DeliveryRequest)
            if not isinstance(decoded, DeliveryRequest):  # a JSON null, say
                raise TypeError(f"expected a JSON object, got {type(decoded).__name__}")
        except Exception as err:  # anything undecodable: malformed JSON, fields, encoding
            self._invalid = err
            decoded = salvaged_request(_json(self._raw), info.workflow_id, info.start_time)
        self._request: DeliveryRequest = decoded
        self._attempts: list[Attempt] = []
        self._state = DeliveryState.PENDING
        self._retry_now = False
        self._next_attempt_at: datetime | None = None
        self._dead_letter_reason: DeadLetterReason | None = None
        self._last: SendResult | None = None
        self._telemetry = DeliveryTelemetry(self._request)

    @workflow.run
    async def run(self, request: RawValue = NO_INPUT) -> DeliveryResult:
        if self._invalid is not None:
            if not workflow.patched(INVALID_INPUT_PATCH):
                raise self._invalid
            refused = await self._dead_letter(
                DeadLetterReason.INVALID_INPUT,
                detail=f"the input is not a delivery request: {str(self._invalid)[:2000]}",
                raw_input=_raw_text(self._raw),
            )
            _refuse(refused)
        problems = input_problems(self._request, workflow.info().workflow_id)
        if problems and workflow.patched(INVALID_INPUT_PATCH):
            refused = await self._dead_letter(
                DeadLetterReason.INVALID_INPUT, detail="; ".join(problems)[:2000]
            )
            _refuse(refused)
        ignored = unknown_fields(_json(self._raw))
        if ignored:
            workflow.logger.warning(
                "ignoring input fields this worker does not know: %s", ", ".join(ignored)
            )
        # Defaults changed since the input's publisher wrote it apply only to new runs.
        self._request = resolve_defaults(self._request, workflow.patched)
        return await self._deliver(self._request)

    async def _deliver(self, request: DeliveryRequest) -> DeliveryResult:
        started_at = workflow.now()
        try:
            while True:
                result = await self._send()
                if result.gate is not None:
                    # The endpoint's circuit held it back: no request, not an attempt.
                    held = self._hold(result.gate, started_at, request)
                    if held is not None:
                        return await self._dead_letter(held)
                    await self._wait_for_next_attempt()
                    continue
                decision = decide(
                    result,
                    attempts_made=len(self._attempts) + 1,
                    options=request.options,
                    started_at=started_at,
                    now=workflow.now(),
                    rng=workflow.random(),
                )
                self._record(result, decision)
                if decision.outcome is Outcome.DELIVERED:
                    return self._finish(DeliveryState.DELIVERED)
                if decision.dead_letter_reason is not None:
                    return await self._dead_letter(decision.dead_letter_reason)
                await self._wait_for_next_attempt()
        except Exception as err:
            # A bug must not leave the delivery stuck retrying a workflow task: park it.
            workflow.logger.exception("delivery failed unexpectedly; dead-lettering")
            return await self._dead_letter(DeadLetterReason.INTERNAL_ERROR, detail=repr(err))

    @workflow.signal(name="retry_now")
    def retry_now(self) -> None:
        """Cut the current backoff wait short."""
        self._retry_now = True

    @workflow.query(name="attempts")
    def attempts(self) -> list[Attempt]:
        return [*self._request.prior_attempts, *self._attempts]

    @workflow.query(name="status")
    def status(self) -> DeliveryStatus:
        last = self._attempts[-1] if self._attempts else None
        return DeliveryStatus(
            delivery_id=self._request.delivery_id,
            endpoint_id=self._request.endpoint_id,
            event_type=self._request.event_type,
            state=self._state,
            attempts=len(self._attempts),
            next_attempt_at=self._next_attempt_at,
            last_status_code=last.status_code if last else None,
            dead_letter_reason=self._dead_letter_reason,
        )

    async def _send(self) -> SendResult:
        self._state = DeliveryState.SENDING
        request = self._request
        try:
            return await workflow.execute_local_activity_method(
                SendActivities.send_webhook,
                SendRequest(
                    delivery_id=request.delivery_id,
                    endpoint_id=request.endpoint_id,
                    url=request.url,
                    body=request.body,
                    secret_ref=request.secret_ref,
                ),
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
                summary=attempt_summary(len(self._attempts) + 1),
            )
        except ActivityError as err:
            # The activity reports every receiver behaviour as a result; this is our bug or
            # a backstop timeout. Record it as a failed attempt so the loop goes on.
            return self._internal(err.cause or err)
        except (ApplicationError, TemporalTimeoutError) as err:
            # A local activity's failure arrives unwrapped (not as an ActivityError). Older
            # code dead-lettered it as internal_error: replays of it must do the same.
            if not workflow.patched("local-activity-error-is-an-attempt"):
                raise
            return self._internal(err)

    def _internal(self, cause: BaseException) -> SendResult:
        return SendResult(
            started_at=workflow.now(),
            duration_ms=0,
            error_kind=ErrorKind.INTERNAL,
            error=str(cause)[:200],
        )

    def _record(self, result: SendResult, decision: Decision) -> None:
        attempt = kept_attempt(
            Attempt(
                number=len(self._attempts) + 1,
                started_at=result.started_at,
                duration_ms=result.duration_ms,
                outcome=decision.outcome,
                status_code=result.status_code,
                error_kind=result.error_kind,
                error=result.error,
                response_excerpt=result.response_excerpt,
                next_attempt_at=decision.next_attempt_at,
                generation=self._request.generation,
            )
        )
        self._attempts.append(attempt)
        self._last = result
        self._next_attempt_at = decision.next_attempt_at
        self._telemetry.attempt(attempt.number, result, decision)
        if decision.next_attempt_at is not None:
            self._state = DeliveryState.RETRYING
            self._upsert(DeliveryState.RETRYING)
            self._show()

    def _hold(
        self, gate: Gate, started_at: datetime, request: DeliveryRequest
    ) -> DeadLetterReason | None:
        """Wait for the circuit (with jitter, so waiters do not stampede), or give up."""
        if gate.disabled:
            return DeadLetterReason.ENDPOINT_DISABLED
        spread = timedelta(seconds=workflow.random().uniform(0, HOLD_JITTER_SECONDS))
        retry_at = max(gate.retry_at or workflow.now(), workflow.now()) + spread
        deadline = started_at + timedelta(seconds=request.options.retry.max_age_seconds)
        if workflow.patched(HOLD_UNTIL_MAX_AGE_PATCH):
            # Held until the circuit wakes it (the hold is only a safety net), at most
            # until its maximum age: then it dead-letters if the circuit still holds it.
            if workflow.now() >= deadline:
                return DeadLetterReason.MAX_AGE
            retry_at = min(retry_at, deadline)
        elif retry_at > deadline:
            return DeadLetterReason.MAX_AGE
        self._next_attempt_at = retry_at
        self._state = DeliveryState.CIRCUIT_OPEN
        self._upsert(DeliveryState.CIRCUIT_OPEN)
        self._telemetry.held()
        self._show()
        return None

    async def _wait_for_next_attempt(self) -> None:
        """Sleep on a durable timer until the next attempt; `retry_now` cuts it short."""
        assert self._next_attempt_at is not None
        self._retry_now = False
        at, now = self._next_attempt_at, workflow.now()
        delay = at - now
        if delay > timedelta(0):
            number = len(self._attempts) + 1
            summary = (
                retry_summary(number, at, now, self._last)
                if self._state is DeliveryState.RETRYING and self._last is not None
                else held_summary(number, at, now)
            )
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._retry_now, timeout=delay, timeout_summary=summary
                )

    def _upsert(self, state: DeliveryState) -> None:
        """Publish progress as search attributes (one history event per change of state)."""
        last = self._attempts[-1] if self._attempts else None
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.STATUS.value_set(state.value),
            sa.ATTEMPTS.value_set(len(self._attempts)),
        ]
        if last is not None and last.status_code is not None:
            updates.append(sa.LAST_STATUS_CODE.value_set(last.status_code))
        if workflow.info().typed_search_attributes.get(sa.ENDPOINT_ID) is None:
            # Started by a non-Python publisher that did not set them.
            updates += [
                pair.key.value_set(pair.value)
                for pair in sa.identity(self._request, account=self._account_attribute())
            ]
        next_at = self._next_attempt_at
        updates.append(
            sa.NEXT_ATTEMPT_AT.value_set(next_at) if next_at else sa.NEXT_ATTEMPT_AT.value_unset()
        )
        workflow.upsert_search_attributes(updates)

    def _account_attribute(self) -> bool:
        """Whether to set `WebhookAccountId` (histories from before the registry did not)."""
        return self._request.account_id is not None and workflow.patched(sa.ACCOUNT_PATCH)

    def _show(self) -> None:
        """The delivery's current details in the Temporal UI."""
        reason = self._dead_letter_reason.value if self._dead_letter_reason else None
        self._telemetry.details(
            self._state,
            attempts=len(self._attempts),
            last=self._last,
            next_attempt_at=self._next_attempt_at,
            reason=reason,
        )

    def _finish(self, state: DeliveryState, dead_letter_id: str | None = None) -> DeliveryResult:
        self._state = state
        self._next_attempt_at = None
        self._upsert(state)
        reason = self._dead_letter_reason.value if self._dead_letter_reason else None
        self._telemetry.finished(
            state, attempts=len(self._attempts), last=self._last, reason=reason
        )
        self._show()
        last = self._attempts[-1] if self._attempts else None
        return DeliveryResult(
            delivery_id=self._request.delivery_id,
            state=state,
            attempts=len(self._attempts),
            last_status_code=last.status_code if last else None,
            dead_letter_id=dead_letter_id,
            dead_letter_reason=self._dead_letter_reason,
        )

    async def _dead_letter(
        self, reason: DeadLetterReason, detail: str | None = None, raw_input: str | None = None
    ) -> DeliveryResult:
        """Hand the delivery to a `DeadLetter` child that outlives this workflow."""
        self._dead_letter_reason = reason
        request = self._request
        child_id = dead_letter_id(request.delivery_id, request.generation)
        try:
            await self._start_dead_letter(child_id, reason, detail, raw_input)
        except WorkflowAlreadyStartedError:
            # An earlier run's dead letter is still open under that id (a republish after
            # the namespace retention forgot the delivery): park this one beside it.
            child_id = f"{child_id}-{workflow.info().run_id}"
            await self._start_dead_letter(child_id, reason, detail, raw_input)
        return self._finish(DeliveryState.DEAD_LETTERED, child_id)

    async def _start_dead_letter(
        self, child_id: str, reason: DeadLetterReason, detail: str | None, raw_input: str | None
    ) -> None:
        request = self._request
        await workflow.start_child_workflow(
            DeadLetter.run,
            DeadLetterEntry(
                dead_letter_id=child_id,
                # Earlier runs' attempts are in `attempts`: not carried twice.
                request=request.model_copy(update={"prior_attempts": []}),
                attempts=[kept_attempt(a) for a in self.attempts()],
                reason=reason,
                dead_lettered_at=workflow.now(),
                detail=detail,
                retention_seconds=request.options.dead_letter_retention_seconds,
                raw_input=raw_input,
            ),
            id=child_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            search_attributes=TypedSearchAttributes(
                [
                    *sa.identity(request, account=self._account_attribute()),
                    SearchAttributePair(sa.STATUS, DeliveryState.DEAD_LETTERED.value),
                    SearchAttributePair(sa.ATTEMPTS, len(self._attempts)),
                    SearchAttributePair(sa.DEAD_LETTER_REASON, reason.value),
                ]
            ),
        )


def _refuse(result: DeliveryResult) -> NoReturn:
    """End a run whose input is parked as `invalid_input` as *failed*, not completed: the
    publisher's id reuse policy (`ALLOW_DUPLICATE_FAILED_ONLY`) then lets a corrected
    publish of the same event start a delivery under the same id."""
    raise ApplicationError(
        f"invalid input, dead-lettered as {result.dead_letter_id}",
        result,
        type=INVALID_INPUT_ERROR,
        non_retryable=True,
    )


def _json(payload: Payload) -> object:
    """The payload as JSON, or None: only to name what it holds, never to trust it."""
    try:
        return json.loads(payload.data)
    except ValueError:
        return None


def _raw_text(payload: Payload) -> str:
    """The input as its dead letter keeps it: the text, cut at `MAX_RAW_INPUT_BYTES`."""
    return payload.data[:MAX_RAW_INPUT_BYTES].decode(errors="replace")
