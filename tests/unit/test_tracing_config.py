"""Tracing follows the standard OTEL_* variables, and is off when they are unset."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from temporalio.contrib.opentelemetry import TracingInterceptor

from webhooks import tracing


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_TRACES_EXPORTER": " "}, False),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ],
)
def test_wanted(environ: dict[str, str], on: bool) -> None:
    assert tracing.wanted(environ) is on


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """No provider configured yet, and none installed globally by the test."""
    installed: list[object] = []
    monkeypatch.setattr(tracing, "_configured", None)
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    return installed


def test_off_installs_nothing(fresh: list[object]) -> None:
    tracing.flush_tracing()  # nothing to flush
    assert tracing.configure_tracing({}) is None
    assert tracing.client_interceptors({}) == []
    assert fresh == []


def test_on_builds_one_provider_with_the_named_exporters(fresh: list[object]) -> None:
    environ = {"OTEL_TRACES_EXPORTER": "console,otlp,none"}
    provider = tracing.configure_tracing(environ)
    assert isinstance(provider, TracerProvider)
    assert fresh == [provider]
    assert provider.resource.attributes["service.name"] == tracing.DEFAULT_SERVICE_NAME
    processors = provider._active_span_processor._span_processors
    # The SDK keeps its processors private and typed as the base class: read them anyway.
    exporters = [type(p.span_exporter) for p in processors]  # type: ignore[attr-defined]
    assert exporters == [ConsoleSpanExporter, OTLPSpanExporter]
    assert tracing.configure_tracing(environ) is provider  # once per process
    (interceptor,) = tracing.client_interceptors(environ)
    assert isinstance(interceptor, TracingInterceptor)
    tracing.flush_tracing()  # what the CLI does before it exits
    provider.shutdown()


def test_the_service_name_comes_from_the_environment(
    fresh: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "webhooks-eu")
    provider = tracing.configure_tracing(
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "webhooks-eu"}
    )
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "webhooks-eu"
    provider.shutdown()


def test_an_unknown_exporter_is_a_clear_error(fresh: list[object]) -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin' is not supported"):
        tracing.configure_tracing({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert fresh == []
