"""Bad input at the edges, through the Python API and the CLI: a clear message, a non-zero
exit, and nothing started on the server."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner, Result

from tests.conftest import SECRET
from tests.security import BOUND_SECONDS, listed, unique
from webhooks.cli import app
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.ids import delivery_id
from webhooks.core.models import DeliveryState
from webhooks.dev.receiver import Receiver
from webhooks.publisher import WebhookPublisher
from workflows.delivery import WebhookDelivery

SETTLED = {
    "stream_id": "st_1",
    "settlement_id": "set_1",
    "amount": "1.00",
    "currency": "EUR",
    "status": "settled",
    "settled_at": "2026-11-28T12:00:00Z",
}
BIG = {"blob": "x" * (300 * 1024)}

# (name, publish arguments that differ from a valid event, what the error says)
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("malformed-url", {"url": "http://[::1"}, "not a valid URL"),
    ("no-host", {"url": "http:///hook"}, "URL has no host"),
    ("spaces", {"url": "http://a b.example/"}, "must not contain whitespace"),
    ("file-scheme", {"url": "file:///etc/passwd"}, "scheme must be http or https, not 'file'"),
    ("ftp-scheme", {"url": "ftp://files.example/hook"}, "not 'ftp'"),
    ("gopher-scheme", {"url": "gopher://127.0.0.1:6379/_FLUSHALL"}, "not 'gopher'"),
    ("javascript", {"url": "javascript:alert(1)"}, "not 'javascript'"),
    ("no-scheme", {"url": "hooks.example/path"}, "not 'missing'"),
    ("credentials", {"url": "https://user:pw@hooks.example/"}, "must not carry credentials"),
    ("oversized", {"data": BIG}, "at most 262144 characters"),
    ("unknown-secret-ref", {"secret_ref": "nope"}, "unknown secret_ref 'nope'"),
    (
        "typed-extra-field",
        {"event_type": "stream.settled", "data": SETTLED | {"email": "ada@example.com"}},
        "email: Extra inputs are not permitted",
    ),
    (
        "typed-float-amount",
        {"event_type": "stream.settled", "data": SETTLED | {"amount": 1.5}},
        "amount: Input should be a valid string",
    ),
    ("bad-event-type", {"event_type": "has space"}, "visible ASCII characters without spaces"),
]


async def assert_nothing_started(client: Client, endpoint_id: str, event_id: str) -> None:
    with pytest.raises(RPCError) as info:
        await client.get_workflow_handle(delivery_id(endpoint_id, event_id)).describe()
    assert info.value.status is RPCStatusCode.NOT_FOUND
    query = f"{sa.ENDPOINT_ID.name} = '{endpoint_id}'"
    assert [wf async for wf in client.list_workflows(query)] == []


def event(**changes: Any) -> dict[str, Any]:
    return {
        "endpoint_id": unique("ep_bad"),
        "url": "https://hooks.example/hook",
        "event_type": "bad.input",
        "data": {"ok": True},
        "event_id": unique("evt"),
    } | changes


@pytest.mark.parametrize(
    ("changes", "message"), [(c, m) for _, c, m in BAD], ids=[n for n, *_ in BAD]
)
async def test_publish_refuses_bad_input_and_starts_nothing(
    client: Client, publisher: WebhookPublisher, changes: dict[str, Any], message: str
) -> None:
    fields = event(**changes)
    with pytest.raises(ValueError, match=re.escape(message)):
        await publisher.publish(**fields)
    await assert_nothing_started(client, fields["endpoint_id"], fields["event_id"])


async def test_publish_refuses_data_that_is_not_json(
    client: Client, publisher: WebhookPublisher
) -> None:
    for data, message in [
        ({"when": object()}, "data is not JSON-serializable"),
        ({"x": float("nan")}, "data is not JSON-serializable"),
        (["not", "an", "object"], "data must be a JSON object"),
    ]:
        fields = event(data=data)
        with pytest.raises(ValueError, match=message):
            await publisher.publish(**fields)
        await assert_nothing_started(client, fields["endpoint_id"], fields["event_id"])


async def test_require_https_refuses_plain_http_at_publish(
    client: Client, settings: Settings
) -> None:
    publisher = WebhookPublisher(client, task_queue=settings.task_queue, require_https=True)
    fields = event(url="http://hooks.example/hook")
    with pytest.raises(ValueError, match="url must use https"):
        await publisher.publish(**fields)
    await assert_nothing_started(client, fields["endpoint_id"], fields["event_id"])


# --- the CLI ----------------------------------------------------------------------------------


class Cli:
    """`webhooks ...` in-process, in a thread (it runs its own event loop), as an operator."""

    def __init__(self, client: Client, settings: Settings, **extra: str) -> None:
        self.env = {
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": client.namespace,
            "WEBHOOKS_TASK_QUEUE": settings.task_queue,
            "WEBHOOKS_SECRETS_FILE": str(settings.secrets_file),
            "COLUMNS": "300",
            **extra,
        }

    async def __call__(self, *args: str) -> Result:
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=self.env)


def cli_args(fields: dict[str, Any]) -> list[str]:
    args = ["publish"]
    for name in ("endpoint_id", "url", "event_type", "event_id", "secret_ref"):
        if name in fields:
            args += [f"--{name.replace('_', '-')}", str(fields[name])]
    data = fields["data"]
    return [*args, "--data", data if isinstance(data, str) else json.dumps(data)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        *[(c, m) for _, c, m in BAD],
        ({"data": "{not json"}, "--data is not JSON: Expecting property name"),
        ({"data": "[1, 2]"}, "data must be a JSON object"),
        ({"data": "NaN"}, "data must be a JSON object"),
    ],
    ids=[*(n for n, *_ in BAD), "non-json-data", "json-array-data", "json-nan-data"],
)
async def test_the_cli_refuses_bad_input_exits_non_zero_and_starts_nothing(
    client: Client, settings: Settings, changes: dict[str, Any], message: str
) -> None:
    fields = event(**changes)
    result = await Cli(client, settings)(*cli_args(fields))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:")
    assert message in " ".join(result.output.split())  # rich may wrap long lines
    assert SECRET not in result.output
    await assert_nothing_started(client, fields["endpoint_id"], fields["event_id"])


async def test_the_cli_refuses_plain_http_when_https_is_required(
    client: Client, settings: Settings
) -> None:
    fields = event(url="http://hooks.example/hook")
    result = await Cli(client, settings, WEBHOOKS_REQUIRE_HTTPS="true")(*cli_args(fields))
    assert result.exit_code == 2
    assert "url must use https" in result.output
    await assert_nothing_started(client, fields["endpoint_id"], fields["event_id"])


async def test_control_valid_input_through_the_cli_is_delivered(
    client: Client, settings: Settings, worker: None
) -> None:
    """The same checks see a started delivery when there is one."""
    async with Receiver() as rx:
        fields = event(url=rx.url + "/hook", event_type="stream.settled", data=SETTLED)
        result = await Cli(client, settings)(*cli_args(fields))
        assert result.exit_code == 0, result.output
        expected = delivery_id(fields["endpoint_id"], fields["event_id"])
        assert result.output.strip() == expected
        handle = client.get_workflow_handle_for(WebhookDelivery.run, expected)
        async with asyncio.timeout(BOUND_SECONDS):
            assert (await handle.result()).state is DeliveryState.DELIVERED
        assert json.loads(rx.requests[0].body)["data"] == SETTLED
    [found] = await listed(client, f"{sa.ENDPOINT_ID.name} = '{fields['endpoint_id']}'")
    assert found.id == expected
