"""`BulkDeadLetterAction`: redeliver or discard every open dead letter matching a filter.

A job an operator starts from the console or `webhooks dlq redeliver --all`: it survives
console and worker restarts (it is a workflow), keeps the endpoint at its rate (its activity
paces the signals from the previous one), answers `progress`, and stops early on `cancel`.
It walks the matching entries newest first by a keyset position, and only those dead-lettered
before it started: it never visits an entry twice, and a redelivery that fails again (a new
dead letter) is not redelivered by the same job. Each dead letter takes only its first action.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.bulk import BulkActivities
    from webhooks.core.bulk import BatchOutcome, BulkBatch, BulkProgress, BulkRequest
    from webhooks.core.names import BULK_WORKFLOW
    from workflows.inputs import missing_input

BATCH_SECONDS = 30
"""One activity signals about this many seconds' worth of entries."""
MAX_BATCH = 500
BATCHES_PER_RUN = 200
"""Continue as new after this many batches, well inside the history limits."""
KEEP_FAILURES = 20
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@workflow.defn(name=BULK_WORKFLOW, failure_exception_types=[ValidationError])
class BulkDeadLetterAction:
    @workflow.init
    def __init__(self, request: BulkRequest | None = None) -> None:
        if request is None:
            raise missing_input(BULK_WORKFLOW)
        self._request = request
        self._progress = request.resume or BulkProgress()
        self._cancel = False

    @workflow.run
    async def run(self, request: BulkRequest | None = None) -> BulkProgress:
        request = self._request
        if self._progress.started_at is None:
            self._progress = self._progress.model_copy(update={"started_at": workflow.now()})
        size = max(1, min(MAX_BATCH, int(request.per_second * BATCH_SECONDS)))
        if self._progress.total is None:
            total = await workflow.execute_activity_method(
                BulkActivities.count_dead_letters,
                BulkBatch(request=request, progress=self._progress, size=size),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RETRY,
            )
            self._progress = self._progress.model_copy(update={"total": total})
        for _ in range(BATCHES_PER_RUN):
            if self._cancel:
                return self._finish(cancelled=True)
            outcome = await workflow.execute_activity_method(
                BulkActivities.signal_dead_letters,
                BulkBatch(request=request, progress=self._progress, size=size),
                start_to_close_timeout=timedelta(seconds=size / request.per_second + 120),
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=RETRY,
            )
            self._advance(outcome)
            if outcome.exhausted:
                return self._finish(cancelled=False)
        return workflow.continue_as_new(request.model_copy(update={"resume": self._progress}))

    @workflow.query(name="progress")
    def progress(self) -> BulkProgress:
        return self._progress

    @workflow.signal(name="cancel")
    def cancel(self) -> None:
        """Stop after the batch in flight."""
        self._cancel = True

    def _advance(self, outcome: BatchOutcome) -> None:
        p = self._progress
        failures = {**p.failures, **outcome.failures}
        self._progress = p.model_copy(
            update={
                "signalled": p.signalled + outcome.signalled,
                "already_closed": p.already_closed + outcome.already_closed,
                "failed": p.failed + len(outcome.failures),
                "failures": dict(list(failures.items())[-KEEP_FAILURES:]),
                "cursor": outcome.cursor,
                "boundary": outcome.boundary,
                "offset": outcome.offset,
                "last_sent_at": outcome.last_sent_at or p.last_sent_at,
            }
        )

    def _finish(self, *, cancelled: bool) -> BulkProgress:
        self._progress = self._progress.model_copy(
            update={"done": True, "cancelled": cancelled, "finished_at": workflow.now()}
        )
        return self._progress
