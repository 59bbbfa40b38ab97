"""Who may do what: sign-in, sessions, tokens, roles, CSRF, the proxy mode, and headers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client

from tests.console import csrf_of, sign_in
from tests.console.conftest import bearer
from webhooks.config import Settings
from webhooks.core.roles import Role
from webhooks.server.app import create_app, serve_console
from webhooks.server.settings import ConsoleSettings


async def test_pages_send_strangers_to_sign_in_and_the_api_answers_401(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/dead-letters?endpoint=ep_1")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fdead-letters%3Fendpoint%3Dep_1"
    api = await http.get("/api/v1/dead-letters")
    assert api.status_code == 401
    assert api.headers["www-authenticate"] == "Bearer"
    assert api.json() == {"detail": "sign in or send Authorization: Bearer <token>"}
    wrong = await http.get("/api/v1/dead-letters", headers={"authorization": "Bearer wht_nope"})
    assert wrong.status_code == 401


async def test_sign_in_sets_a_strict_http_only_session_and_a_new_csrf_token(
    http: httpx.AsyncClient,
) -> None:
    form = await http.get("/login")
    before = csrf_of(form.text)
    bad = await http.post(
        "/login", data={"username": "ada", "password": "wrong", "csrf_token": before}
    )
    assert bad.status_code == 401
    assert "Wrong user name or password" in bad.text
    good = await http.post(
        "/login",
        data={
            "username": "ada",
            "password": "ada-admin-password",
            "csrf_token": before,
            "next": "//evil.example/x",
        },
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/"  # never off-site
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "secure" not in cookie  # plain http here; https gets Secure
    assert "ada-admin-password" not in good.text + good.headers["set-cookie"]
    after = csrf_of((await http.get("/")).text)
    assert after != before


async def test_sign_in_needs_the_forms_csrf_token(http: httpx.AsyncClient) -> None:
    await http.get("/login")
    response = await http.post("/login", data={"username": "ada", "password": "ada-admin-password"})
    assert response.status_code == 403


async def test_secure_cookie_behind_an_https_proxy(http: httpx.AsyncClient) -> None:
    # The test client is 127.0.0.1, a trusted proxy by default.
    form = await http.get("/login", headers={"x-forwarded-proto": "https"})
    assert "secure" in form.headers["set-cookie"].lower()


async def test_a_post_without_the_csrf_token_is_refused(http: httpx.AsyncClient) -> None:
    await sign_in(http, "otto")
    response = await http.post("/deliveries/msg_x/retry")
    assert response.status_code == 403
    assert "CSRF" in response.text
    forged = await http.post("/deliveries/msg_x/retry", data={"csrf_token": "forged"})
    assert forged.status_code == 403


async def test_a_viewer_cannot_act_even_with_a_valid_csrf_token(
    http: httpx.AsyncClient,
) -> None:
    csrf = await sign_in(http, "vera")
    response = await http.post("/dead-letters/any-dlq-0/redeliver", data={"csrf_token": csrf})
    assert response.status_code == 403
    assert "needs the operator role" in response.text


@pytest.mark.parametrize(
    ("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 404), (Role.ADMIN, 404)]
)
async def test_tokens_carry_roles(http: httpx.AsyncClient, role: Role, status: int) -> None:
    response = await http.post("/api/v1/deliveries/msg_missing/retry", headers=bearer(role))
    assert response.status_code == status


async def test_an_api_call_with_a_session_needs_the_csrf_header(
    http: httpx.AsyncClient,
) -> None:
    csrf = await sign_in(http, "otto")
    assert (await http.get("/api/v1/deliveries")).status_code == 200
    refused = await http.post("/api/v1/deliveries/msg_missing/retry")
    assert refused.status_code == 403
    allowed = await http.post(
        "/api/v1/deliveries/msg_missing/retry", headers={"x-csrf-token": csrf}
    )
    assert allowed.status_code == 404


async def test_signing_out_ends_the_session(http: httpx.AsyncClient) -> None:
    csrf = await sign_in(http, "vera")
    out = await http.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert (await http.get("/")).status_code == 303


async def test_every_response_has_a_strict_content_security_policy(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script>" not in response.text  # only <script src=...>


@pytest.fixture
async def proxied(client: Client, backend: Settings) -> AsyncIterator[str]:
    """A console behind a trusted authenticating proxy (which this test plays)."""
    settings = ConsoleSettings(
        proxy_user_header="X-Forwarded-User",
        proxy_roles={"pat@streampay.example": Role.OPERATOR},
        proxy_default_role=Role.VIEWER,
    )
    stop, ready, said = asyncio.Event(), asyncio.Event(), list[str]()

    def announce(message: str) -> None:
        said.append(message)
        ready.set()

    task = asyncio.create_task(
        serve_console(backend, settings, stop, port=0, announce=announce, client=client)
    )
    async with asyncio.timeout(30):
        await ready.wait()
    yield said[0].split()[-1]
    stop.set()
    await task


async def test_proxy_mode_takes_the_identity_from_the_trusted_header(proxied: str) -> None:
    async with httpx.AsyncClient(base_url=proxied, trust_env=False) as http:
        assert (await http.get("/")).status_code == 303  # no header: sign in
        pat = {"x-forwarded-user": "pat@streampay.example"}
        page = await http.get("/", headers=pat)
        assert page.status_code == 200
        assert "pat@streampay.example (operator)" in page.text
        csrf = csrf_of(page.text)
        refused = await http.post("/deliveries/msg_x/retry", headers=pat)
        assert refused.status_code == 403  # a proxy identity still needs the CSRF token
        allowed = await http.post("/deliveries/msg_x/retry", headers=pat, data={"csrf_token": csrf})
        assert allowed.status_code == 404
        other = await http.get("/", headers={"x-forwarded-user": "someone@else.example"})
        assert "someone@else.example (viewer)" in other.text


async def test_an_untrusted_peer_cannot_assert_an_identity(
    client: Client, backend: Settings
) -> None:
    settings = ConsoleSettings(
        proxy_user_header="X-Forwarded-User",
        proxy_default_role=Role.ADMIN,
        trusted_proxies="10.9.9.9/32",
    )
    app = create_app(backend, settings, client=client)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
        response = await http.get("/", headers={"x-forwarded-user": "mallory"})
    assert response.status_code == 303


async def test_tokens_and_passwords_are_never_logged_or_returned(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = bearer(Role.ADMIN)["authorization"].removeprefix("Bearer ")
    with caplog.at_level(logging.DEBUG):
        responses = [
            await http.get("/api/v1/deliveries", headers=bearer(Role.ADMIN)),
            await http.get("/api/v1/deliveries", headers={"authorization": f"Bearer {token}x"}),
            await http.post("/login", data={"username": "ada", "password": "ada-admin-password"}),
        ]
        csrf = await sign_in(http, "ada")
        responses.append(await http.get("/", headers={"x-csrf-token": csrf}))
    for response in responses:
        text = response.text + str(response.headers)
        assert token not in text
        assert "ada-admin-password" not in text
        assert "argon2" not in text
    assert token not in caplog.text
    assert "ada-admin-password" not in caplog.text
