"""JSON log lines: the known fields, nothing else a caller passes, never a secret."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio import activity, workflow

from webhooks.config import Settings
from webhooks.logs import JsonFormatter, configure_logging, redact

SECRET = "whsec_c3RyZWFtcGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk="


def line(msg: str, *args: object, exc: bool = False, **extra: Any) -> dict[str, Any]:
    record = logging.LogRecord("webhooks.test", logging.INFO, __file__, 1, msg, args, None)
    if exc:
        try:
            raise ValueError(f"bad secret {SECRET}")
        except ValueError:
            record.exc_info = sys.exc_info()
    record.__dict__.update(extra)
    text = JsonFormatter().format(record)
    assert "\n" not in text  # one object per line, tracebacks included
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_known_fields_are_kept_and_the_rest_dropped() -> None:
    got = line(
        "attempt %d done",
        3,
        delivery_id="msg_1",
        endpoint_id="ep_1",
        attempt=3,
        outcome="retryable",
        error_kind="http_status",
        status_code=500,
        duration_ms=23.4,
        body='{"amount": 42}',
        secret=SECRET,
        response_excerpt="oops",
    )
    assert got["message"] == "attempt 3 done"
    assert got["level"] == "info"
    assert got["logger"] == "webhooks.test"
    assert got["ts"].endswith("+00:00")
    assert {k: got[k] for k in ("delivery_id", "endpoint_id", "attempt", "outcome")} == {
        "delivery_id": "msg_1",
        "endpoint_id": "ep_1",
        "attempt": 3,
        "outcome": "retryable",
    }
    assert (got["error_kind"], got["status_code"], got["duration_ms"]) == ("http_status", 500, 23.4)
    for dropped in ("body", "secret", "response_excerpt"):
        assert dropped not in got


def test_temporal_context_becomes_fields() -> None:
    context = {
        "attempt": 1,
        "namespace": "default",
        "run_id": "r1",
        "task_queue": "webhooks",
        "workflow_id": "msg_9",
        "workflow_type": "WebhookDelivery",
    }
    got = line("hello", temporal_workflow=context)
    assert got["delivery_id"] == "msg_9"
    assert (got["workflow_id"], got["run_id"], got["task_queue"]) == ("msg_9", "r1", "webhooks")
    assert "attempt" not in got  # Temporal's task attempt is not the delivery's attempt
    other = line("x", temporal_workflow={**context, "workflow_type": "DeadLetter"})
    assert "delivery_id" not in other
    act = line("y", temporal_activity={"activity_type": "send_webhook", "workflow_id": "msg_2"})
    assert (act["activity_type"], act["workflow_id"]) == ("send_webhook", "msg_2")


def test_secrets_are_masked_in_messages_and_tracebacks() -> None:
    got = line("loaded %s", SECRET, exc=True)
    text = json.dumps(got)
    assert SECRET not in text
    assert got["message"] == "loaded whsec_***"
    assert got["exc_type"] == "ValueError"
    assert "bad secret whsec_***" in got["exc"]
    assert redact("a whsec_abc+/= b") == "a whsec_*** b"


def test_values_that_are_not_json_become_text() -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 12, 1, 14, 53, 48, tzinfo=UTC)
    got = line("x", next_attempt_at=when, state=object())
    assert got["next_attempt_at"] == "2026-12-01T14:53:48+00:00"
    assert got["state"].startswith("<object")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    workflow.logger.workflow_info_on_message = True
    activity.logger.activity_info_on_message = True


@pytest.mark.usefixtures("restore_logging")
def test_configure_json_then_text() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="DEBUG"), stream)
    configure_logging(Settings(log_format="json", log_level="DEBUG"), stream)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_webhooks", False)]
    assert len(ours) == 1  # idempotent
    assert workflow.logger.workflow_info_on_message is False
    assert activity.logger.activity_info_on_message is False
    logging.getLogger("httpx").info("HTTP Request: POST https://c.example/?token=t")  # dropped
    logging.getLogger("webhooks.x").debug("hi", extra={"delivery_id": "msg_1"})
    assert json.loads(stream.getvalue())["delivery_id"] == "msg_1"

    text = io.StringIO()
    configure_logging(Settings(), text)
    logging.getLogger("webhooks.x").info("plain")
    assert text.getvalue().rstrip().endswith("INFO webhooks.x: plain")
    assert workflow.logger.workflow_info_on_message is True


@pytest.mark.usefixtures("restore_logging")
def test_the_default_stream_is_stderr_at_the_time(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging(Settings(log_format="json"))
    for _ in range(2):  # a test runner swapping stderr between records
        swapped = io.StringIO()
        monkeypatch.setattr(sys, "stderr", swapped)
        logging.getLogger("webhooks.x").warning("to %s", "stderr")
        assert json.loads(swapped.getvalue())["message"] == "to stderr"


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_LOG_FORMAT", "JSON")
    monkeypatch.setenv("WEBHOOKS_LOG_LEVEL", "debug")
    settings = Settings()
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    monkeypatch.setenv("WEBHOOKS_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()
