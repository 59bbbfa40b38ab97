"""docker-compose.yml, checked structurally (no Docker engine here): the Temporal UI decodes
through the console's codec endpoint as shipped, and the console reaches what it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from webhooks.server import codec_routes
from webhooks.server.settings import ConsoleSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found: dict[str, Any] = compose["services"]
    return found


def published(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port."""
    pairs = (str(p).split(":") for p in service.get("ports", []))
    return {int(inside): int(outside) for outside, inside in pairs}


def test_the_ui_calls_the_consoles_codec_endpoint_on_its_published_port(
    services: dict[str, Any],
) -> None:
    ui, console = services["ui"]["environment"], services["console"]
    endpoint = urlsplit(ui["TEMPORAL_CODEC_ENDPOINT"])
    command = console["command"]
    port = int(command[command.index("--port") + 1])
    assert endpoint.port == published(console)[port]
    assert endpoint.path == codec_routes.router.prefix
    # The UI sends the console's session cookie, so CORS must allow credentials.
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"


def test_the_console_allows_exactly_the_uis_origin(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ui, console = services["ui"], services["console"]
    host = urlsplit(ui["environment"]["TEMPORAL_CODEC_ENDPOINT"]).hostname
    origin = f"http://{host}:{published(ui)[8080]}"
    env = console["environment"]
    monkeypatch.setenv("WEBHOOKS_CONSOLE__CODEC_ORIGINS", env["WEBHOOKS_CONSOLE__CODEC_ORIGINS"])
    assert ConsoleSettings().codec_origins == (origin,)


def test_the_console_shares_the_workers_registry_keys_and_temporal(
    services: dict[str, Any],
) -> None:
    console, worker = services["console"], services["worker"]
    for name in ("TEMPORAL_ADDRESS", "WEBHOOKS_DATABASE_URL"):
        assert console["environment"][name] == worker["environment"][name]
    assert console["env_file"] == worker["env_file"]  # codec keys: /codec decodes history
    # Started after the schema and the search attributes exist, like the workers.
    assert console["depends_on"] == worker["depends_on"]
    assert "console" in services["ui"]["depends_on"]
