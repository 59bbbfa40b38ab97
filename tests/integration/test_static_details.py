"""A delivery names itself in the Temporal UI from the start: its static summary and details
(endpoint, event, the URL's host; never the body or the URL's path)."""

from __future__ import annotations

from temporalio.client import Client

from tests.conftest import EndpointPublisher
from tests.integration import fast, unique
from webhooks.config import Settings


async def test_static_summary_and_details(
    client: Client, settings: Settings, publisher: EndpointPublisher
) -> None:
    endpoint_id = unique("ep_static")
    delivery_id = await publisher.publish(
        endpoint_id=endpoint_id,
        url="http://hooks.example:8080/secret-path?token=abc",
        event_type="test.static",
        event_id="evt_static_1",
        data={"note": "payload-marker"},
        retry=fast(0),
    )
    handle = client.get_workflow_handle(delivery_id)
    try:
        described = await handle.describe()
        assert await described.static_summary() == f"test.static -> {endpoint_id}"
        details = await described.static_details()
        assert details == (
            f"**endpoint**: {endpoint_id}\n\n**event**: evt_static_1 (test.static)\n\n"
            "**host**: hooks.example"
        )
        for leak in ("payload-marker", "secret-path", "token"):
            assert leak not in details
    finally:
        await handle.terminate()
