"""The inputs, progress and batches of `BulkDeadLetterAction`: redeliver or discard every
open dead letter matching a filter (or a list of ids), durably and at a bounded rate."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from webhooks.core.filters import DeadLetterFilter
from webhooks.core.models import DeadLetterReason, DeadLetterState

MAX_IDS = 1000
"""Ids chosen one by one travel in the workflow input; beyond this, use a filter."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BulkAction(StrEnum):
    REDELIVER = "redeliver"
    DISCARD = "discard"


class BulkFilter(_Model):
    """Open dead letters matching these, dead-lettered before the job started."""

    endpoint_id: str | None = None
    event_type: str | None = None
    reason: DeadLetterReason | None = None
    since: datetime | None = None
    until: datetime | None = None

    def visibility(self, until: datetime) -> DeadLetterFilter:
        """The query, capped at `until` (the job's start), so entries dead-lettered later,
        such as a redelivery that failed again, are not acted on by this job."""
        return DeadLetterFilter(
            endpoint_id=self.endpoint_id,
            event_type=self.event_type,
            reason=self.reason,
            since=self.since,
            until=min(self.until, until) if self.until else until,
            state=DeadLetterState.OPEN,
        )


class BulkProgress(_Model):
    """The `progress` query's answer, and the job's result."""

    total: int | None = None
    """Matching entries when the job started (None until counted)."""
    signalled: int = 0
    already_closed: int = 0
    failed: int = 0
    failures: dict[str, str] = {}
    """The last few failures: dead letter id -> message."""
    done: bool = False
    cancelled: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cursor: datetime | None = None
    """Keyset position: entries dead-lettered at or before this are next (newest first)."""
    boundary: list[str] = []
    """Ids already handled that were dead-lettered exactly at `cursor`."""
    offset: int = 0
    """With explicit ids: how many are handled."""
    last_sent_at: datetime | None = None
    """When the last signal went out: the next waits for the rate from it."""

    @property
    def handled(self) -> int:
        return self.signalled + self.already_closed + self.failed


class BulkRequest(_Model):
    action: BulkAction
    filter: BulkFilter | None = None
    ids: list[str] | None = Field(default=None, max_length=MAX_IDS)
    per_second: float = Field(default=10, ge=0.1, le=200)
    requested_by: str = Field(default="unknown", max_length=200)
    note: str = Field(default="", max_length=2000)
    """The reason recorded on discarded entries."""
    resume: BulkProgress | None = None
    """Carried across continue-as-new."""


class BulkBatch(_Model):
    """One activity's worth: the next entries after `progress`'s position."""

    request: BulkRequest
    progress: BulkProgress
    size: int


class BatchOutcome(_Model):
    signalled: int = 0
    already_closed: int = 0
    failures: dict[str, str] = {}
    cursor: datetime | None = None
    boundary: list[str] = []
    offset: int = 0
    last_sent_at: datetime | None = None
    exhausted: bool = False
    """Nothing is left to act on."""
