"""The published JSON schema is the model's: regenerate it with `webhooks schema`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from webhooks.cli import app
from webhooks.core.models import DeliveryRequest

SCHEMA = Path(__file__).parents[2] / "docs" / "schema" / "delivery-request.json"


def test_committed_schema_matches_the_model() -> None:
    assert json.loads(SCHEMA.read_text()) == DeliveryRequest.model_json_schema(), (
        "run: webhooks schema > docs/schema/delivery-request.json"
    )


def test_schema_command_prints_it() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == DeliveryRequest.model_json_schema()
