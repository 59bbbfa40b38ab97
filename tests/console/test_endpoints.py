"""Endpoints and the audit log through the API and the pages (the registry underneath)."""

from __future__ import annotations

import httpx

from tests.console import csrf_of, sign_in, unique
from tests.console.conftest import bearer
from webhooks.core.roles import Role

ADMIN, OPERATOR, VIEWER = bearer(Role.ADMIN), bearer(Role.OPERATOR), bearer(Role.VIEWER)


async def test_the_endpoint_api_manages_an_endpoint_with_versions_and_audit(
    http: httpx.AsyncClient,
) -> None:
    account = unique("acct")
    new = {"account_id": account, "url": "http://127.0.0.1:9/hook", "event_types": ["a.b"]}
    assert (await http.post("/api/v1/endpoints", json=new, headers=OPERATOR)).status_code == 403
    created = await http.post("/api/v1/endpoints", json=new, headers=ADMIN)
    assert created.status_code == 201, created.text
    endpoint, secret = created.json()["endpoint"], created.json()["secret"]
    assert secret.startswith("whsec_")
    endpoint_id = endpoint["id"]
    shown = await http.get(f"/api/v1/endpoints/{endpoint_id}", headers=VIEWER)
    assert shown.status_code == 200
    assert secret not in shown.text  # shown once, at creation
    listed = await http.get("/api/v1/endpoints", params={"account_id": account}, headers=VIEWER)
    assert [e["id"] for e in listed.json()["items"]] == [endpoint_id]

    moved = await http.patch(
        f"/api/v1/endpoints/{endpoint_id}",
        json={"url": "http://127.0.0.1:10/hook", "version": endpoint["version"]},
        headers=ADMIN,
    )
    assert moved.status_code == 200
    assert moved.json()["url"] == "http://127.0.0.1:10/hook"
    stale = await http.patch(
        f"/api/v1/endpoints/{endpoint_id}",
        json={"description": "x", "version": endpoint["version"]},
        headers=ADMIN,
    )
    assert stale.status_code == 409
    assert "changed concurrently" in stale.json()["detail"]
    bad = await http.patch(
        f"/api/v1/endpoints/{endpoint_id}", json={"url": "ftp://x"}, headers=ADMIN
    )
    assert bad.status_code == 422

    off = await http.post(
        f"/api/v1/endpoints/{endpoint_id}/disable", json={"reason": "broken"}, headers=OPERATOR
    )
    assert off.json()["state"] == "disabled"
    on = await http.post(f"/api/v1/endpoints/{endpoint_id}/enable", json={}, headers=OPERATOR)
    assert on.json()["state"] == "enabled"
    rotated = await http.post(
        f"/api/v1/endpoints/{endpoint_id}/rotate-secret",
        json={"overlap_seconds": 60},
        headers=ADMIN,
    )
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (secret, "")
    assert len(rotated.json()["endpoint"]["secrets"]) == 2

    audit = await http.get("/api/v1/audit", params={"target": endpoint_id}, headers=VIEWER)
    actions = [(row["actor"], row["action"]) for row in audit.json()["items"]]
    assert actions == [
        ("admin-token", "rotate_secret"),
        ("operator-token", "enable"),
        ("operator-token", "disable"),
        ("admin-token", "update"),
        ("admin-token", "create"),
    ]
    assert secret not in audit.text
    assert rotated.json()["secret"] not in audit.text

    deleted = await http.delete(f"/api/v1/endpoints/{endpoint_id}", headers=ADMIN)
    assert deleted.status_code == 204
    gone = await http.get(f"/api/v1/endpoints/{endpoint_id}", headers=VIEWER)
    assert gone.status_code == 404


async def test_the_endpoint_pages_edit_disable_rotate_and_show_the_audit_log(
    http: httpx.AsyncClient,
) -> None:
    account = unique("acct")
    created = await http.post(
        "/api/v1/endpoints",
        json={"account_id": account, "url": "http://127.0.0.1:9/old"},
        headers=ADMIN,
    )
    endpoint_id = created.json()["endpoint"]["id"]
    csrf = await sign_in(http, "ada")
    listing = await http.get("/endpoints", params={"account": account})
    assert endpoint_id in listing.text
    page = await http.get(f"/endpoints/{endpoint_id}")
    assert 'name="url" value="http://127.0.0.1:9/old"' in page.text
    saved = await http.post(
        f"/endpoints/{endpoint_id}/update",
        data={
            "csrf_token": csrf,
            "version": "1",
            "url": "http://127.0.0.1:9/new",
            "types": "stream.settled, payment.tick",
        },
    )
    assert saved.status_code == 303
    page = await http.get(f"/endpoints/{endpoint_id}")
    assert "payment.tick, stream.settled" in page.text
    stale = await http.post(
        f"/endpoints/{endpoint_id}/update",
        data={"csrf_token": csrf, "version": "1", "url": "http://127.0.0.1:9/x"},
    )
    assert stale.status_code == 409
    disabled = await http.post(
        f"/endpoints/{endpoint_id}/disable", data={"csrf_token": csrf, "reason": "<i>oops</i>"}
    )
    assert disabled.status_code == 303
    page = await http.get(f"/endpoints/{endpoint_id}")
    assert "&lt;i&gt;oops&lt;/i&gt;" in page.text
    enabled = await http.post(
        f"/endpoints/{endpoint_id}/enable", data={"csrf_token": csrf, "reason": "fixed"}
    )
    assert enabled.status_code == 303
    rotated = await http.post(f"/endpoints/{endpoint_id}/rotate-secret", data={"csrf_token": csrf})
    assert rotated.status_code == 200
    assert "whsec_" in rotated.text
    secret = rotated.text.split('class="payload secret">')[1].split("<")[0]
    assert secret not in (await http.get(f"/endpoints/{endpoint_id}")).text

    audit = await http.get("/audit", params={"target": endpoint_id, "actor": "ada"})
    for action in ("update", "disable", "enable", "enable_reason", "rotate_secret"):
        assert f"<td>{action}</td>" in audit.text
    assert secret not in audit.text
    assert "<td>create</td>" not in audit.text  # that one was the admin token's


async def test_a_viewer_sees_endpoints_without_forms(http: httpx.AsyncClient) -> None:
    created = await http.post(
        "/api/v1/endpoints",
        json={"account_id": unique("acct"), "url": "http://127.0.0.1:9/v"},
        headers=ADMIN,
    )
    endpoint_id = created.json()["endpoint"]["id"]
    csrf = await sign_in(http, "vera")
    page = await http.get(f"/endpoints/{endpoint_id}")
    assert page.status_code == 200
    assert '<form method="post" action="/endpoints/' not in page.text
    assert csrf == csrf_of(page.text)
    refused = await http.post(f"/endpoints/{endpoint_id}/rotate-secret", data={"csrf_token": csrf})
    assert refused.status_code == 403
