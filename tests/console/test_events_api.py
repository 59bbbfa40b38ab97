"""`POST /api/v1/events` over real HTTP: a real console, worker, dev server and registry
publish to a real receiver; the same event id twice is one delivery, and says so; the same
event id with other content is a 409."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from tests.conftest import SECRET
from tests.console import BOUND_SECONDS, unique
from tests.console.conftest import bearer
from webhooks.core.models import DeliveryState
from webhooks.core.roles import Role
from webhooks.dev.receiver import ReceivedRequest, Receiver
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry
from workflows.delivery import WebhookDelivery

OPERATOR, VIEWER = bearer(Role.OPERATOR), bearer(Role.VIEWER)


async def endpoint(
    registry: EndpointRegistry, url: str, account: str, types: list[str] | None = None
) -> str:
    created = await registry.create(
        NewEndpoint(id=unique("ep_events"), account_id=account, url=url, event_types=types),
        secret=SecretStr(SECRET),
    )
    return created.endpoint.id


async def finished(client: Client, delivery_id: str) -> DeliveryState:
    handle = client.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
    async with asyncio.timeout(BOUND_SECONDS):
        return (await handle.result()).state


async def test_an_event_published_over_http_arrives_once_however_often_it_is_sent(
    http: httpx.AsyncClient, client: Client, backend_registry: EndpointRegistry
) -> None:
    async with Receiver() as rx:
        target = await endpoint(backend_registry, rx.url, unique("acct"))
        event = {
            "endpoint_id": target,
            "event_type": "console.events",
            "data": {"amount": "12.50", "note": "<b>hi</b>"},
            "event_id": unique("evt"),
        }
        first = await http.post("/api/v1/events", json=event, headers=OPERATOR)
        assert first.status_code == 202, first.text
        [delivery] = first.json()["deliveries"]
        assert (delivery["endpoint_id"], delivery["created"], delivery["outcome"]) == (
            target,
            True,
            "started",
        )
        assert await finished(client, delivery["delivery_id"]) is DeliveryState.DELIVERED

        again = await http.post("/api/v1/events", json=event, headers=OPERATOR)
        assert again.status_code == 200, again.text
        [same] = again.json()["deliveries"]
        assert same["delivery_id"] == delivery["delivery_id"]
        assert (same["created"], same["outcome"], same["state"]) == (
            False,
            "already_exists",
            "delivered",
        )
        # The same event id with other content is not the same event: refused, not ignored.
        changed = await http.post(
            "/api/v1/events", json=event | {"data": {"amount": "99.00"}}, headers=OPERATOR
        )
        assert changed.status_code == 409, changed.text
        assert "different content" in changed.json()["detail"]
        await asyncio.sleep(1)  # a second delivery, if one had started, would be here by now
    [got] = rx.requests
    assert got.headers["webhook-id"] == delivery["delivery_id"]
    body = json.loads(got.body)
    assert (body["id"], body["type"], body["data"]) == (
        event["event_id"],
        "console.events",
        event["data"],
    )


async def test_an_accounts_event_goes_to_each_subscribed_endpoint(
    http: httpx.AsyncClient, client: Client, backend_registry: EndpointRegistry
) -> None:
    account = unique("acct")
    arrived: list[ReceivedRequest] = []
    async with Receiver(on_request=lambda r, _: arrived.append(r)) as rx:
        wants = {await endpoint(backend_registry, rx.url, account, ["fan.out"]) for _ in range(2)}
        await endpoint(backend_registry, rx.url, account, ["other.thing"])
        event = {
            "account_id": account,
            "event_type": "fan.out",
            "data": {"n": 1},
            "event_id": unique("evt"),
        }
        answer = await http.post("/api/v1/events", json=event, headers=OPERATOR)
        assert answer.status_code == 202, answer.text
        deliveries = answer.json()["deliveries"]
        assert {d["endpoint_id"] for d in deliveries} == wants
        for d in deliveries:
            assert await finished(client, d["delivery_id"]) is DeliveryState.DELIVERED
        nobody = await http.post(
            "/api/v1/events", json=event | {"event_type": "nobody.wants"}, headers=OPERATOR
        )
    assert nobody.status_code == 200
    assert nobody.json() == {"deliveries": []}
    assert {r.headers["webhook-id"] for r in arrived} == {d["delivery_id"] for d in deliveries}


@pytest.fixture(scope="module")
async def known(backend_registry: EndpointRegistry) -> dict[str, str]:
    """Endpoints nothing is ever sent to: one enabled, one that takes only `known.thing`, one
    disabled."""
    account, url = unique("acct"), "http://127.0.0.1:9/never"
    enabled = await endpoint(backend_registry, url, account)
    picky = await endpoint(backend_registry, url, account, ["known.thing"])
    disabled = await endpoint(backend_registry, url, account)
    await backend_registry.disable(disabled, reason="test")
    return {"enabled": enabled, "picky": picky, "disabled": disabled}


def event(**fields: object) -> dict[str, object]:
    return {"event_type": "known.thing", "data": {}, "event_id": unique("evt")} | fields


@pytest.mark.parametrize(
    ("target", "body", "status", "says"),
    [
        ("nothing", {}, 422, "endpoint_id"),
        ("enabled", {"data": [1]}, 422, "data"),
        ("enabled", {"event_id": "has space"}, 422, "event_id"),
        ("enabled", {"event_type": "stream.settled", "data": {"x": 1}}, 422, "stream.settled"),
        ("enabled", {"extra": 1}, 422, "extra"),
        ("unknown", {}, 404, "no endpoint"),
        ("disabled", {"event_type": "any"}, 409, "disabled"),
        ("other-account", {}, 409, "does not belong"),
        ("picky", {"event_type": "unknown.type"}, 400, "does not subscribe"),
    ],
)
async def test_bad_input_gets_a_clear_json_error_and_starts_nothing(
    http: httpx.AsyncClient,
    known: dict[str, str],
    target: str,
    body: dict[str, object],
    status: int,
    says: str,
) -> None:
    targets = {
        "nothing": {},
        "unknown": {"endpoint_id": unique("ep_missing")},
        "other-account": {"endpoint_id": known["enabled"], "account_id": unique("acct")},
        **{name: {"endpoint_id": known[name]} for name in ("enabled", "picky", "disabled")},
    }
    answer = await http.post(
        "/api/v1/events", json=event(**targets[target], **body), headers=OPERATOR
    )
    assert answer.status_code == status, answer.text
    assert says in json.dumps(answer.json()["detail"])


async def test_publishing_needs_an_operator(http: httpx.AsyncClient, known: dict[str, str]) -> None:
    body = event(endpoint_id=known["enabled"])
    assert (await http.post("/api/v1/events", json=body)).status_code == 401
    assert (await http.post("/api/v1/events", json=body, headers=VIEWER)).status_code == 403


async def test_the_openapi_document_describes_publishing(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/api/v1/openapi.json")).json()
    operation = schema["paths"]["/api/v1/events"]["post"]
    assert {"200", "202", "404", "409", "422"} <= set(operation["responses"])
    published = schema["components"]["schemas"]["Published"]["properties"]
    assert {"delivery_id", "endpoint_id", "outcome", "state", "created"} <= set(published)
