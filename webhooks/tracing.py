"""OpenTelemetry tracing: one trace from `publish` through the workflow to every HTTP attempt.

Off unless the standard OpenTelemetry variables ask for it:

    OTEL_TRACES_EXPORTER=otlp|console|none      (default otlp once an endpoint is set)
    OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318   (OTLP over HTTP/protobuf)
    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*, OTEL_SDK_DISABLED ...

When on, `connect()` puts Temporal's `TracingInterceptor` on the client (and so on every
worker using it), the publisher opens a `webhooks.publish` span around each start, and the
worker one `webhooks.attempt` span per HTTP attempt. Everything finds its tracer on the
client's interceptor, so a client built with a `TracingInterceptor` of its own (an
application's tracer provider, a test's in-memory exporter) is traced the same way. When off,
none of it is installed and the success path pays nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

DEFAULT_SERVICE_NAME = "streampay-webhooks"
INSTRUMENTATION = "webhooks"

_configured: TracerProvider | None = None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return _names(exporters) != ["none"] and bool(_names(exporters))
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _names(value: str) -> list[str]:
    return [n.strip().lower() for n in value.split(",") if n.strip()]


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":
        # Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT, ... itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (otlp, console or none)")


def configure_tracing(environ: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """The process's tracer provider as the OTEL_* variables configure it, made once and
    also installed as OpenTelemetry's global one; None when tracing is off."""
    global _configured
    if _configured is not None or not wanted(environ):
        return _configured
    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: DEFAULT_SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in _names(environ.get("OTEL_TRACES_EXPORTER", "otlp")):
        if name != "none":
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


def flush_tracing(timeout_seconds: float = 5) -> None:
    """Export the spans still buffered; for processes that end without finalization (the
    CLI's `exit_now`), where the provider's own exit hook never runs."""
    if _configured is not None:
        _configured.force_flush(int(timeout_seconds * 1000))


def client_interceptors(environ: Mapping[str, str] = os.environ) -> list[TracingInterceptor]:
    """What `connect()` adds to a client: Temporal's tracing interceptor, when tracing is on."""
    provider = configure_tracing(environ)
    if provider is None:
        return []
    return [TracingInterceptor(provider.get_tracer(INSTRUMENTATION))]


def tracer_of(client: Client) -> trace.Tracer | None:
    """The tracer of the client's `TracingInterceptor`, None when the client is not traced."""
    for interceptor in client.config()["interceptors"]:
        if isinstance(interceptor, TracingInterceptor):
            return interceptor.tracer
    return None
