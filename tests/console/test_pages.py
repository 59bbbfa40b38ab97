"""The console's pages, as a browser gets them (server-rendered HTML over real HTTP)."""

from __future__ import annotations

import re

import httpx
from temporalio.client import Client

from tests.conftest import EndpointPublisher
from tests.console import dead_letters, sign_in, unique
from tests.integration import eventually
from webhooks.dev.receiver import Receiver, Respond

EVIL = b"<script>alert('pwned')</script><img src=x onerror=alert(1)>"


async def test_pages_show_dead_letters_escaped_and_act_on_them(
    http: httpx.AsyncClient, client: Client, backend_publisher: EndpointPublisher
) -> None:
    endpoint = unique("ep_pages")
    switch = {"status": 500}
    async with Receiver(lambda _: Respond(switch["status"], EVIL)) as rx:
        ids = await dead_letters(
            client, backend_publisher, rx.url, endpoint, 4, data={"secret_marker": "<b>x</b>"}
        )
        csrf = await sign_in(http, "otto")

        overview = await http.get("/")
        assert overview.status_code == 200
        assert re.search(
            r'href="/dead-letters\?reason=exhausted">exhausted</a></td><td>\d+', overview.text
        )

        listing = await http.get("/dead-letters", params={"endpoint": endpoint})
        assert listing.status_code == 200
        assert "4 open dead letter(s) match." in listing.text
        for dead_letter_id in ids:
            assert f'value="{dead_letter_id}"' in listing.text

        page = await http.get(f"/dead-letters/{ids[0]}")
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page.text
        assert "secret_marker" not in page.text  # an operator sees no payload
        assert ">Redeliver</button>" in page.text

        switch["status"] = 200
        done = await http.post(f"/dead-letters/{ids[0]}/redeliver", data={"csrf_token": csrf})
        assert done.status_code == 303
        discarded = await http.post(
            f"/dead-letters/{ids[1]}/discard", data={"csrf_token": csrf, "note": "duplicate"}
        )
        assert discarded.status_code == 303
        twice = await http.post(f"/dead-letters/{ids[1]}/discard", data={"csrf_token": csrf})
        assert twice.status_code == 409
        assert "already discarded" in twice.text

        job = await http.post(
            "/dead-letters/bulk",
            data={
                "csrf_token": csrf,
                "action": "redeliver",
                "scope": "all",
                "endpoint": endpoint,
                "rate": "20",
            },
        )
        assert job.status_code == 303
        job_path = job.headers["location"]
        assert job_path.startswith("/jobs/bulk-redeliver-")

        async def finished() -> str:
            return (await http.get(job_path + "/progress")).text

        fragment = await eventually(
            finished, lambda text: '<p class="job-state">finished</p>' in text
        )
        assert "data-poll" not in fragment
        jobs = await http.get("/jobs")
        assert job_path in jobs.text

        async def delivered() -> int:
            return len([r for r in rx.requests if r.headers.get("webhook-id")]) - 4

        await eventually(delivered, lambda n: n >= 3)

    delivery = await http.get(f"/deliveries/{ids[0].removesuffix('-dlq-0')}")
    assert delivery.status_code == 200
    assert "&lt;script&gt;" in delivery.text
    searched = await http.get("/deliveries", params={"endpoint": endpoint, "state": "delivered"})
    assert ids[0].removesuffix("-dlq-0") in searched.text


async def test_an_admin_sees_payloads_escaped(
    http: httpx.AsyncClient, client: Client, backend_publisher: EndpointPublisher
) -> None:
    async with Receiver(lambda _: Respond(500)) as rx:
        [dead_letter_id] = await dead_letters(
            client, backend_publisher, rx.url, unique("ep_adm"), 1, data={"m": "<b>bold</b>"}
        )
    await sign_in(http, "ada")
    page = await http.get(f"/dead-letters/{dead_letter_id}")
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text
    delivery = await http.get(f"/deliveries/{dead_letter_id.removesuffix('-dlq-0')}")
    assert "&lt;b&gt;bold&lt;/b&gt;" in delivery.text


async def test_missing_things_and_bad_filters_are_clear_pages(http: httpx.AsyncClient) -> None:
    csrf = await sign_in(http, "vera")
    missing = await http.get("/deliveries/msg_missing")
    assert missing.status_code == 404
    assert "no delivery with id" in missing.text
    assert (await http.get("/jobs/nope")).status_code == 404
    bad = await http.get("/deliveries", params={"since": "last tuesday"})
    assert bad.status_code == 422
    assert (await http.get("/deliveries", params={"cursor": "zz"})).status_code == 400
    forbidden = await http.post(
        "/dead-letters/bulk", data={"csrf_token": csrf, "action": "discard"}
    )
    assert forbidden.status_code == 403
