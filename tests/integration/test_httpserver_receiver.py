"""A delivery to a third-party HTTP server (pytest-httpserver, werkzeug): what a customer's
framework sees is a plain JSON POST with the Standard Webhooks headers."""

from __future__ import annotations

import json

from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from temporalio.client import Client

from tests.conftest import SECRET, EndpointPublisher
from webhooks.core.models import DeliveryResult, DeliveryState


async def test_delivery_to_a_werkzeug_server(
    client: Client, worker: None, publisher: EndpointPublisher, httpserver: HTTPServer
) -> None:
    httpserver.expect_oneshot_request(
        "/hooks/streampay", method="POST", headers={"content-type": "application/json"}
    ).respond_with_data("ok", status=204)
    delivery_id = await publisher.publish(
        endpoint_id="ep_werkzeug",
        url=httpserver.url_for("/hooks/streampay"),
        event_type="test.werkzeug",
        data={"amount": "3.20"},
        event_id="evt_werkzeug",
    )
    handle = client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
    result = await handle.result()
    assert result.state is DeliveryState.DELIVERED
    assert result.last_status_code == 204
    httpserver.check_assertions()
    [(request, _)] = httpserver.log
    assert request.headers["webhook-id"] == delivery_id
    assert request.headers["user-agent"].startswith("StreamPay-Webhooks/")
    payload = Webhook(SECRET).verify(request.get_data(), dict(request.headers))
    assert payload == json.loads(request.get_data())
    assert payload["data"] == {"amount": "3.20"}
