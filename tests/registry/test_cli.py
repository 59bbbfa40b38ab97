"""`webhooks endpoint ...` and `webhooks db upgrade`, run as an operator would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.conftest import KEY_TEXT, OLD_SECRET, SECRET
from webhooks.cli import app
from webhooks.core.signing import secret_key


class EndpointCli:
    def __init__(self, tmp_path: Path) -> None:
        self.env = {
            "WEBHOOKS_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
            "WEBHOOKS_SECRET_KEYS": KEY_TEXT,
            "WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS": "false",
            "COLUMNS": "200",
        }
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args), env=self.env)

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def fails(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 2, result.output
        return " ".join(result.stderr.split())


@pytest.fixture
def cli(tmp_path: Path) -> EndpointCli:
    cli = EndpointCli(tmp_path)
    assert cli.json("db", "upgrade") == {"from": None, "to": "0002"}
    return cli


URL = "https://93.184.215.14/hooks"


def test_db_upgrade_is_required_then_idempotent(tmp_path: Path) -> None:
    cli = EndpointCli(tmp_path)
    assert "run `webhooks db upgrade`" in cli.fails("endpoint", "list")
    first = cli("db", "upgrade")
    assert first.exit_code == 0
    assert "upgraded from empty to 0002" in first.stdout
    assert "already at revision 0002" in cli("db", "upgrade").stdout


def test_create_show_list_update_disable_enable_delete(cli: EndpointCli) -> None:
    plain = cli("endpoint", "create", "--account-id", "acct_1", "--url", URL)
    assert plain.exit_code == 0, plain.output
    endpoint_id, secret = plain.stdout.split()[:2]
    assert endpoint_id.startswith("ep_")
    assert len(secret_key(secret)) == 24
    created = cli.json(
        "endpoint", "create", "--account-id", "acct_1", "--url", URL, "--event-type",
        "stream.settled", "--event-type", "payment.tick", "--description", "main",
        "--header", "X-Route: blue", "--timeout", "5", "--schedule", "0,5s,5m",
    )  # fmt: skip
    second = created["endpoint"]
    assert created["secret"].startswith("whsec_")
    assert second["event_types"] == ["payment.tick", "stream.settled"]
    assert second["settings"]["headers"] == {"X-Route": "blue"}
    assert second["settings"]["retry"]["schedule_seconds"] == [0, 5, 300]

    shown = cli.json("endpoint", "show", second["id"])
    assert shown["version"] == 1
    assert created["secret"] not in json.dumps(shown)
    table = cli("endpoint", "show", second["id"])
    assert "payment.tick, stream.settled" in table.stdout
    assert created["secret"] not in table.stdout

    listed = cli.json("endpoint", "list", "--account-id", "acct_1")
    assert {e["id"] for e in listed["endpoints"]} == {endpoint_id, second["id"]}
    assert "2 endpoint(s)" in cli("endpoint", "list").stdout
    assert cli.json("endpoint", "list", "--state", "disabled") == {"endpoints": []}

    updated = cli.json(
        "endpoint", "update", second["id"], "--url", "https://93.184.215.15/new",
        "--all-event-types", "--max-attempts", "3",
    )  # fmt: skip
    assert updated["url"] == "https://93.184.215.15/new"
    assert updated["event_types"] is None
    assert updated["version"] == 2
    assert updated["settings"]["headers"] == {"X-Route": "blue"}  # kept
    assert updated["settings"]["retry"]["max_attempts"] == 3

    disabled = cli.json("endpoint", "disable", second["id"], "--reason", "asked", "--by", "ann")
    assert (disabled["state"], disabled["disabled_reason"], disabled["disabled_by"]) == (
        "disabled",
        "asked",
        "ann",
    )
    assert "disabled (asked; by ann" in cli("endpoint", "show", second["id"]).stdout
    assert cli.json("endpoint", "enable", second["id"])["state"] == "enabled"
    assert cli.json("endpoint", "delete", second["id"]) == {"deleted": second["id"]}
    assert "no endpoint with id" in cli.fails("endpoint", "show", second["id"])
    assert f"deleted {endpoint_id}" in cli("endpoint", "delete", endpoint_id).stdout


def test_rotate_secret_prints_the_new_secret_once(cli: EndpointCli) -> None:
    created = cli.json("endpoint", "create", "--account-id", "a", "--url", URL)
    rotated = cli.json("endpoint", "rotate-secret", created["endpoint"]["id"], "--overlap", "1h")
    assert rotated["secret"] != created["secret"]
    secrets = rotated["endpoint"]["secrets"]
    assert len(secrets) == 2
    assert sum(s["expires_at"] is not None for s in secrets) == 1
    table = cli("endpoint", "show", created["endpoint"]["id"]).stdout
    assert "signs until" in table
    assert rotated["secret"] not in table
    plain = cli("endpoint", "rotate-secret", created["endpoint"]["id"], "--overlap", "0")
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.split()[:1] == [created["endpoint"]["id"]]
    assert "shown only now" in plain.stdout


def test_bad_input_is_a_clear_error_and_changes_nothing(cli: EndpointCli) -> None:
    endpoint = cli.json("endpoint", "create", "--account-id", "a", "--url", URL)["endpoint"]
    eid = endpoint["id"]
    create = ("endpoint", "create", "--account-id", "a", "--url")
    assert "scheme must be http or https" in cli.fails(*create, "ftp://x.example/")
    assert "a private address" in cli.fails(*create, "http://10.0.0.7/")
    assert "loopback" in cli.fails(*create, "http://[::1]:9/")
    assert "cannot be overridden" in cli.fails(*create, URL, "--header", "webhook-signature: x")
    assert "use `Name: value`" in cli.fails(*create, URL, "--header", "nocolon")
    assert "at version 1, not 7" in cli.fails(
        "endpoint", "update", eid, "--description", "x", "--version", "7"
    )
    assert "nothing to change" in cli.fails("endpoint", "update", eid)
    assert "not both" in cli.fails(
        "endpoint", "update", eid, "--event-type", "a", "--all-event-types"
    )
    assert "private address" in cli.fails("endpoint", "update", eid, "--url", "http://10.0.0.1/")
    assert "no endpoint with id 'ep_missing'" in cli.fails("endpoint", "enable", "ep_missing")
    assert "at version 1, not 3" in cli.fails("endpoint", "disable", eid, "--version", "3")
    assert len(cli.json("endpoint", "list")["endpoints"]) == 1
    assert cli.json("endpoint", "show", eid) == endpoint


def test_missing_key_ring_is_a_clear_error(cli: EndpointCli) -> None:
    del cli.env["WEBHOOKS_SECRET_KEYS"]
    assert "WEBHOOKS_SECRET_KEYS is not set" in cli.fails(
        "endpoint", "create", "--account-id", "a", "--url", URL
    )


def test_import_old_secret_refs(cli: EndpointCli, tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"default": SECRET, "rotating": [SECRET, OLD_SECRET]}))
    first = cli.json("endpoint", "import", "--secrets-file", str(path), "--account-id", "acct")
    assert [(i["secret_ref"], i["created"]) for i in first["imported"]] == [
        ("default", True),
        ("rotating", True),
    ]
    again = cli("endpoint", "import", "--secrets-file", str(path), "--account-id", "acct")
    assert "default -> ep_" in again.stdout
    assert "(already imported)" in again.stdout
    endpoint = cli.json("endpoint", "show", first["imported"][1]["endpoint_id"])
    assert endpoint["legacy_ref"] == "rotating"
    assert endpoint["state"] == "disabled"
    assert len(endpoint["secrets"]) == 2
    path.write_text("{not json")
    assert "not valid JSON" in cli.fails(
        "endpoint", "import", "--secrets-file", str(path), "--account-id", "acct"
    )
    assert "cannot read" in cli.fails(
        "endpoint", "import", "--secrets-file", str(tmp_path / "nope"), "--account-id", "acct"
    )
