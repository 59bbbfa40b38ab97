"""One span per HTTP attempt, inside Temporal's `RunActivity:send_webhook` span.

Installed by the worker only when its client is traced (`webhooks.tracing`). The span says
what happened (status code, error kind, held by the circuit) and never what was sent: no
body, no headers, no URL path or query (customers put tokens there), only the host. With
`WEBHOOKS_SEND_TRACEPARENT=true` the request also carries a W3C `traceparent` header, so a
customer who traces can join the attempt to their own handling of it.
"""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from webhooks.core.models import SendRequest, SendResult

SEND_ACTIVITY = "send_webhook"
SPAN_NAME = "webhooks.attempt"


class AttemptSpans(Interceptor):
    """Worker interceptor: wraps each `send_webhook` execution in a client span."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _AttemptSpan(next, self._tracer)


class _AttemptSpan(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, tracer: trace.Tracer) -> None:
        super().__init__(next)
        self._tracer = tracer

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if activity.info().activity_type != SEND_ACTIVITY:
            return await super().execute_activity(input)
        request = input.args[0] if input.args else None
        attributes = (
            {
                "webhooks.delivery_id": request.delivery_id,
                "webhooks.endpoint_id": request.endpoint_id,
            }
            if isinstance(request, SendRequest)
            else {}
        )
        with self._tracer.start_as_current_span(
            SPAN_NAME, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            result = await super().execute_activity(input)
            if isinstance(result, SendResult):
                describe(span, result)
            return result


def describe(span: trace.Span, result: SendResult) -> None:
    """Put an attempt's outcome on its span (OpenTelemetry's HTTP attribute names)."""
    if result.gate is not None:
        span.set_attribute("webhooks.held_by_circuit", True)
        return
    span.set_attribute("webhooks.duration_ms", result.duration_ms)
    if result.status_code is not None:
        span.set_attribute("http.response.status_code", result.status_code)
    if result.error_kind is not None:
        span.set_attribute("error.type", result.error_kind.value)
        span.set_status(Status(StatusCode.ERROR, result.error_kind.value))


def instrument(http: httpx.AsyncClient, *, send_traceparent: bool) -> None:
    """Name the request's destination on the current (attempt) span, and optionally send
    the trace context to the customer."""

    async def on_request(request: httpx.Request) -> None:
        span = trace.get_current_span()
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("server.address", request.url.host)
        if request.url.port is not None:
            span.set_attribute("server.port", request.url.port)
        if send_traceparent:
            inject(request.headers)

    hooks = http.event_hooks
    hooks["request"] = [*hooks.get("request", []), on_request]
    http.event_hooks = hooks
