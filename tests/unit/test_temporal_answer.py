"""How the console and API answer an error from Temporal: a query nobody can answer now is
a 503 to retry, never a 409 conflict."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from webhooks.server.app import temporal_answer


@pytest.mark.parametrize(
    ("status", "message", "http", "says"),
    [
        (
            RPCStatusCode.FAILED_PRECONDITION,
            "no poller seen for task queue recently, worker may be down",
            503,
            "no worker is polling",
        ),
        (RPCStatusCode.RESOURCE_EXHAUSTED, "consistent query buffer is full", 503, "try again"),
        (RPCStatusCode.FAILED_PRECONDITION, "workflow is closed", 409, "workflow is closed"),
        (RPCStatusCode.NOT_FOUND, "workflow not found", 404, "not found"),
        (RPCStatusCode.INVALID_ARGUMENT, "bad query", 400, "bad query"),
        (RPCStatusCode.ALREADY_EXISTS, "started", 409, "started"),
        (RPCStatusCode.UNAVAILABLE, "connection refused", 503, "connection refused"),
    ],
)
def test_each_temporal_error_gets_its_status(
    status: RPCStatusCode, message: str, http: int, says: str
) -> None:
    answered, text = temporal_answer(RPCError(message, status, b""))
    assert answered == http
    assert says in text
