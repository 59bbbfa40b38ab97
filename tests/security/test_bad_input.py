"""Bad input at the edges, through the Python API and the CLI: a clear message, a non-zero
exit, and nothing started on the server (nor changed in the registry)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner, Result

from tests.conftest import ACCOUNT, SECRET, EndpointPublisher
from tests.integration import registry_env
from tests.security import BOUND_SECONDS, listed, unique
from webhooks.cli import app
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.ids import delivery_id
from webhooks.core.models import DeliveryState
from webhooks.dev.receiver import Receiver
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry
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
URL = "https://hooks.example/hook"

# (name, a URL an endpoint is created or updated with, what the error says)
BAD_URLS: list[tuple[str, str, str]] = [
    ("malformed-url", "http://[::1", "not a valid URL"),
    ("no-host", "http:///hook", "URL has no host"),
    ("spaces", "http://a b.example/", "must not contain whitespace"),
    ("file-scheme", "file:///etc/passwd", "scheme must be http or https, not 'file'"),
    ("ftp-scheme", "ftp://files.example/hook", "not 'ftp'"),
    ("gopher-scheme", "gopher://127.0.0.1:6379/_FLUSHALL", "not 'gopher'"),
    ("javascript", "javascript:alert(1)", "not 'javascript'"),
    ("no-scheme", "hooks.example/path", "not 'missing'"),
    ("credentials", "https://user:pw@hooks.example/", "must not carry credentials"),
]

# (name, publish arguments that differ from a valid event, what the error says)
BAD_EVENTS: list[tuple[str, dict[str, Any], str]] = [
    ("oversized", {"data": BIG}, "at most 262144 characters"),
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
        "url": URL,
        "event_type": "bad.input",
        "data": {"ok": True},
        "event_id": unique("evt"),
    } | changes


@pytest.mark.parametrize(
    ("url", "message"), [(u, m) for _, u, m in BAD_URLS], ids=[n for n, *_ in BAD_URLS]
)
async def test_an_endpoint_with_a_bad_url_is_refused_and_nothing_is_stored(
    registry: EndpointRegistry, url: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        await registry.create(NewEndpoint(account_id=ACCOUNT, url=url))
    assert await registry.list_endpoints() == []


@pytest.mark.parametrize(
    ("changes", "message"), [(c, m) for _, c, m in BAD_EVENTS], ids=[n for n, *_ in BAD_EVENTS]
)
async def test_publish_refuses_bad_input_and_starts_nothing(
    client: Client, publisher: EndpointPublisher, changes: dict[str, Any], message: str
) -> None:
    fields = event(**changes)
    with pytest.raises(ValueError, match=re.escape(message)):
        await publisher.publish(**fields)
    await assert_nothing_started(client, fields["endpoint_id"], fields["event_id"])


async def test_publish_refuses_data_that_is_not_json(
    client: Client, publisher: EndpointPublisher
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


async def test_publish_refuses_endpoints_that_may_not_receive_and_starts_nothing(
    client: Client, publisher: EndpointPublisher, registry: EndpointRegistry
) -> None:
    """Unknown, disabled, another account's, or not subscribed to the event type."""
    real = publisher.publisher
    off = (await registry.create(NewEndpoint(account_id=ACCOUNT, url=URL))).endpoint.id
    await registry.disable(off, reason="customer paused it")
    theirs = (await registry.create(NewEndpoint(account_id="acct_other", url=URL))).endpoint.id
    picky = (
        await registry.create(NewEndpoint(account_id=ACCOUNT, url=URL, event_types=["a.b"]))
    ).endpoint.id
    cases: list[tuple[dict[str, Any], str]] = [
        ({"endpoint_id": "ep_nobody"}, "no endpoint with id 'ep_nobody'"),
        ({"endpoint_id": off}, "is disabled (customer paused it)"),
        ({"endpoint_id": theirs, "account_id": ACCOUNT}, "does not belong to account"),
        ({"endpoint_id": picky}, "does not subscribe to 'bad.input'"),
    ]
    for where, message in cases:
        event_id = unique("evt")
        with pytest.raises(ValueError, match=re.escape(message)):
            await real.publish(event_type="bad.input", data={}, event_id=event_id, **where)
        await assert_nothing_started(client, where["endpoint_id"], event_id)


# --- the CLI ----------------------------------------------------------------------------------


class Cli:
    """`webhooks ...` in-process, in a thread (it runs its own event loop), as an operator."""

    def __init__(self, client: Client, settings: Settings, **extra: str) -> None:
        self.env = {
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": client.namespace,
            "WEBHOOKS_TASK_QUEUE": settings.task_queue,
            **registry_env(settings),
            "COLUMNS": "300",
            **extra,
        }

    async def __call__(self, *args: str) -> Result:
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=self.env)

    async def fails(self, *args: str) -> str:
        result = await self(*args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error:")
        assert SECRET not in result.output
        return " ".join(result.output.split())  # rich may wrap long lines


def cli_args(fields: dict[str, Any]) -> list[str]:
    args = ["publish"]
    for name in ("endpoint_id", "event_type", "event_id"):
        if name in fields:
            args += [f"--{name.replace('_', '-')}", str(fields[name])]
    data = fields["data"]
    return [*args, "--data", data if isinstance(data, str) else json.dumps(data)]


@pytest.mark.parametrize(
    ("url", "message"), [(u, m) for _, u, m in BAD_URLS], ids=[n for n, *_ in BAD_URLS]
)
async def test_the_cli_refuses_bad_urls_exits_non_zero_and_stores_nothing(
    client: Client, settings: Settings, registry: EndpointRegistry, url: str, message: str
) -> None:
    output = await Cli(client, settings).fails(
        "endpoint", "create", "--account-id", ACCOUNT, "--url", url
    )
    assert message in output
    assert await registry.list_endpoints() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        *[(c, m) for _, c, m in BAD_EVENTS],
        ({"data": "{not json"}, "--data is not JSON: Expecting property name"),
        ({"data": "[1, 2]"}, "data must be a JSON object"),
        ({"data": "NaN"}, "data must be a JSON object"),
        ({"endpoint_id": "ep_nobody"}, "no endpoint with id 'ep_nobody'"),
    ],
    ids=[
        *(n for n, *_ in BAD_EVENTS),
        "non-json-data",
        "json-array-data",
        "json-nan-data",
        "unknown",
    ],
)
async def test_the_cli_refuses_bad_input_exits_non_zero_and_starts_nothing(
    client: Client,
    settings: Settings,
    publisher: EndpointPublisher,
    changes: dict[str, Any],
    message: str,
) -> None:
    fields = event(**changes)
    if fields["endpoint_id"] != "ep_nobody":
        await publisher.endpoint(fields["endpoint_id"], fields["url"])
    assert message in await Cli(client, settings).fails(*cli_args(fields))
    await assert_nothing_started(client, fields["endpoint_id"], fields["event_id"])


async def test_the_cli_refuses_disabled_and_other_account_endpoints(
    client: Client, settings: Settings, registry: EndpointRegistry
) -> None:
    cli = Cli(client, settings)
    off = (await registry.create(NewEndpoint(account_id=ACCOUNT, url=URL))).endpoint.id
    await registry.disable(off)
    theirs = (await registry.create(NewEndpoint(account_id="acct_other", url=URL))).endpoint.id
    for args, message in [
        (["--endpoint-id", off], f"endpoint '{off}' is disabled"),
        (["--endpoint-id", theirs, "--account-id", ACCOUNT], "does not belong to account"),
        ([], "give --endpoint-id (with --account-id: it must be theirs) or --account-id"),
    ]:
        event_id = unique("evt")
        output = await cli.fails(
            "publish", *args, "--event-type", "t.x", "--data", "{}", "--event-id", event_id
        )
        assert message in output
        for endpoint_id in (off, theirs):
            await assert_nothing_started(client, endpoint_id, event_id)


async def test_the_cli_refuses_plain_http_when_https_is_required(
    client: Client, settings: Settings, registry: EndpointRegistry
) -> None:
    cli = Cli(client, settings, WEBHOOKS_REQUIRE_HTTPS="true")
    output = await cli.fails(
        "endpoint", "create", "--account-id", ACCOUNT, "--url", "http://hooks.example/hook"
    )
    assert "https is required" in output
    assert await registry.list_endpoints() == []


async def test_control_valid_input_through_the_cli_is_delivered(
    client: Client, settings: Settings, worker: None, publisher: EndpointPublisher
) -> None:
    """The same checks see a started delivery when there is one."""
    async with Receiver() as rx:
        fields = event(url=rx.url + "/hook", event_type="stream.settled", data=SETTLED)
        await publisher.endpoint(fields["endpoint_id"], fields["url"])
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
