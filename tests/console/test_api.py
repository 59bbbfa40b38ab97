"""The management API: deliveries, dead letters and bulk jobs over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client

from tests.conftest import EndpointPublisher
from tests.console import dead_letters, unique
from tests.console.conftest import bearer
from tests.integration import eventually
from webhooks.core.roles import Role
from webhooks.dev.receiver import Receiver, Respond

ADMIN, OPERATOR, VIEWER = bearer(Role.ADMIN), bearer(Role.OPERATOR), bearer(Role.VIEWER)


@pytest.fixture
async def failing() -> AsyncIterator[Receiver]:
    async with Receiver(lambda _: Respond(500, b"<script>alert(1)</script> nope")) as rx:
        yield rx


async def test_dead_letters_list_filter_paginate_get_and_redeliver(
    http: httpx.AsyncClient, client: Client, backend_publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_api")
    switch = {"status": 500}
    async with Receiver(lambda _: Respond(switch["status"], b"down")) as rx:
        ids = await dead_letters(client, backend_publisher, rx.url, endpoint, 3)
        first = await http.get(
            "/api/v1/dead-letters", params={"endpoint_id": endpoint, "limit": 2}, headers=VIEWER
        )
        assert first.status_code == 200
        page = first.json()
        assert len(page["items"]) == 2
        assert page["next_cursor"]
        rest = await http.get(
            "/api/v1/dead-letters",
            params={"endpoint_id": endpoint, "limit": 2, "cursor": page["next_cursor"]},
            headers=VIEWER,
        )
        listed = [i["dead_letter_id"] for i in page["items"] + rest.json()["items"]]
        assert sorted(listed) == sorted(ids)
        assert {i["reason"] for i in page["items"]} == {"exhausted"}

        viewer_view = await http.get(f"/api/v1/dead-letters/{ids[0]}", headers=VIEWER)
        assert viewer_view.status_code == 200, viewer_view.text
        assert viewer_view.json()["body"] is None  # no payloads for viewers
        assert viewer_view.json()["attempts"][0]["response_excerpt"] == "down"
        admin_view = await http.get(f"/api/v1/dead-letters/{ids[0]}", headers=ADMIN)
        assert '"type":"console.test"' in admin_view.json()["body"]

        assert (
            await http.post(f"/api/v1/dead-letters/{ids[0]}/redeliver", headers=VIEWER)
        ).status_code == 403
        switch["status"] = 200
        accepted = await http.post(f"/api/v1/dead-letters/{ids[0]}/redeliver", headers=OPERATOR)
        assert accepted.status_code == 202
        assert accepted.json() == {"id": ids[0], "action": "redeliver"}
        delivery_id = ids[0].removesuffix("-dlq-0")

        async def delivered() -> str:
            got = await http.get(f"/api/v1/deliveries/{delivery_id}", headers=VIEWER)
            return str(got.json()["status"]["state"])

        await eventually(delivered, lambda state: state == "delivered")
        again = await http.post(f"/api/v1/dead-letters/{ids[0]}/redeliver", headers=OPERATOR)
        assert again.status_code == 409
        discarded = await http.post(
            f"/api/v1/dead-letters/{ids[1]}/discard", json={"reason": "dup"}, headers=OPERATOR
        )
        assert discarded.status_code == 202
        job = await http.post(
            "/api/v1/dead-letters/bulk",
            json={"action": "discard", "ids": [ids[2]], "note": "bulk"},
            headers=OPERATOR,
        )
        assert job.status_code == 202
        job_id = job.json()["job_id"]

        async def done() -> bool:
            got = await http.get(f"/api/v1/jobs/{job_id}", headers=VIEWER)
            return bool(got.json()["progress"]["done"])

        await eventually(done, bool)
        closed = await http.post(f"/api/v1/jobs/{job_id}/cancel", headers=OPERATOR)
        assert closed.status_code == 409


async def test_deliveries_list_get_and_retry(
    http: httpx.AsyncClient, client: Client, backend_publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_api_d")
    async with Receiver(lambda _: Respond(503, b"later")) as rx:
        delivery_id = await backend_publisher.publish(
            endpoint_id=endpoint,
            url=rx.url,
            event_type="console.retry",
            data={"n": 1},
            event_id=unique("evt"),
        )

        async def listed() -> list[dict[str, object]]:
            got = await http.get(
                "/api/v1/deliveries",
                params={"endpoint_id": endpoint, "state": "retrying"},
                headers=VIEWER,
            )
            return list(got.json()["items"])

        [row] = await eventually(listed, lambda rows: len(rows) == 1)
        assert row["delivery_id"] == delivery_id
        detail = (await http.get(f"/api/v1/deliveries/{delivery_id}", headers=VIEWER)).json()
        assert detail["running"] is True
        assert detail["request"]["url"] is None  # the endpoint's URL lives in the registry
        assert detail["request"]["body"] is None
        retried = await http.post(f"/api/v1/deliveries/{delivery_id}/retry", headers=OPERATOR)
        assert retried.status_code == 202

        async def attempts() -> int:
            return len(rx.requests)

        assert await eventually(attempts, lambda n: n >= 2) >= 2
        await client.get_workflow_handle(delivery_id).terminate("test over")
        finished = await http.post(f"/api/v1/deliveries/{delivery_id}/retry", headers=OPERATOR)
        assert finished.status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/api/v1/deliveries?state=bogus", {}, 422),
        ("GET", "/api/v1/deliveries?limit=0", {}, 422),
        ("GET", "/api/v1/deliveries?since=yesterday", {}, 422),
        ("GET", "/api/v1/deliveries?cursor=%%%", {}, 400),
        ("GET", "/api/v1/deliveries?cursor=bm90LWEtdG9rZW4=", {}, 400),
        ("GET", "/api/v1/deliveries/msg_nope", {}, 404),
        ("GET", "/api/v1/dead-letters/nope-dlq-0", {}, 404),
        ("GET", "/api/v1/jobs/nope", {}, 404),
        ("POST", "/api/v1/dead-letters/nope/discard", {"json": {"reason": 5}}, 422),
        ("POST", "/api/v1/dead-letters/bulk", {"json": {"action": "redeliver"}}, 400),
        ("POST", "/api/v1/dead-letters/bulk", {"json": {"action": "nuke", "ids": ["a"]}}, 422),
        ("POST", "/api/v1/dead-letters/bulk", {"content": b"{oops"}, 422),
    ],
)
async def test_bad_input_gets_a_clear_json_error(
    http: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, object], status: int
) -> None:
    # Each case passes one of httpx's body keywords (json= or content=) by name.
    response = await http.request(method, path, headers=ADMIN, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert "detail" in response.json()


async def test_the_openapi_document_describes_the_api(http: httpx.AsyncClient) -> None:
    document = (await http.get("/api/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/dead-letters/{dead_letter_id}/redeliver" in document["paths"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert not any(
        path.startswith(("/codec", "/login", "/dead-letters")) for path in document["paths"]
    )


async def test_a_delivery_without_a_running_worker_is_a_503_not_a_conflict(
    http: httpx.AsyncClient, client: Client, backend_publisher: EndpointPublisher
) -> None:
    # Its task queue has no worker: it never ran, and no query can be answered yet.
    orphan = backend_publisher.on(client, unique("no-worker"))
    delivery_id = await orphan.publish(
        endpoint_id=unique("ep_api_orphan"),
        url="http://127.0.0.1:9/",
        event_type="console.orphan",
        data={"n": 1},
        event_id=unique("evt"),
    )
    response = await http.get(f"/api/v1/deliveries/{delivery_id}", headers=VIEWER)
    assert response.status_code == 503, response.text
    assert "try again" in response.json()["detail"]
    # Gone from the namespace, so later console tests never list it.
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=delivery_id),
        )
    )
