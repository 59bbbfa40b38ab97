"""Logging for the worker and the CLI: readable lines for people, JSON lines for machines.

    WEBHOOKS_LOG_FORMAT=json    one JSON object per line (for Loki, Elasticsearch, ...)
    WEBHOOKS_LOG_LEVEL=DEBUG    default INFO

A JSON line carries the message and only the structured fields named in `FIELDS` (delivery
id, endpoint id, attempt, outcome, error kind, duration, ...), taken from the record's
`extra` and from the workflow and activity context Temporal's loggers attach. Anything else
a caller passes in `extra` is dropped, so a payload, a secret or a response excerpt cannot
reach the log by way of a field; `whsec_` secrets are masked even in messages and tracebacks.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from temporalio import activity, workflow

from webhooks.config import Settings

FIELDS = (
    "delivery_id",
    "endpoint_id",
    "event_type",
    "attempt",
    "outcome",
    "status_code",
    "error_kind",
    "duration_ms",
    "next_attempt_at",
    "state",
    "reason",
    "dead_letter_id",
    "phase",
    "task_queue",
)
"""Structured fields a JSON line may carry; none of them can hold customer data."""

TEMPORAL_CONTEXT = {
    "temporal_workflow": ("workflow_id", "run_id", "workflow_type", "namespace", "task_queue"),
    "temporal_activity": (
        "activity_type",
        "activity_id",
        "workflow_id",
        "workflow_run_id",
        "namespace",
        "task_queue",
    ),
}
"""The keys of Temporal's logging context worth keeping (its `attempt` is Temporal's task
attempt, not the delivery's, so it is left out)."""

NOISY = ("httpx", "httpcore", "hpack", "alembic")
"""Libraries kept to warnings: httpx and friends log every request with its full URL at
INFO, and Alembic narrates each migration check on every command's output."""

_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")


def redact(text: str) -> str:
    """Mask Standard Webhooks secrets wherever they appear."""
    return _SECRET.sub("whsec_***", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the known fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, names in TEMPORAL_CONTEXT.items():
            context = getattr(record, key, None)
            if isinstance(context, dict):
                entry |= {n: context[n] for n in names if context.get(n) is not None}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = _plain(value)
        if entry.get("workflow_type") == "WebhookDelivery" and "delivery_id" not in entry:
            entry["delivery_id"] = entry["workflow_id"]  # a delivery's workflow id is its id
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class _Stderr(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _quiet(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not record.name.startswith(NOISY)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Install one handler on the root logger for the chosen format (idempotent); it writes
    to `stream`, by default standard error."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_webhooks", False)]:
        root.removeHandler(old)
    handler: logging.StreamHandler[TextIO] = (
        logging.StreamHandler(stream) if stream is not None else _Stderr()
    )
    # A mark on the handler itself, so another call (or a test) finds and replaces ours.
    handler._webhooks = True  # type: ignore[attr-defined]
    as_json = settings.log_format == "json"
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    # A filter on our handler, not the libraries' levels: other handlers still see them.
    handler.addFilter(_quiet)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # In JSON the context is in fields; appended to the message too it would say it twice.
    workflow.logger.workflow_info_on_message = not as_json
    activity.logger.activity_info_on_message = not as_json
    return handler
