"""The console, the management API and the codec endpoint, over real HTTP against the real
dev server (and, in test_browser.py, real Chromium)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.client import Client

from webhooks.config import Settings
from webhooks.core.roles import Role
from webhooks.server.app import serve_console
from webhooks.server.settings import ConsoleSettings

PASSWORDS = {
    "ada": ("ada-admin-password", Role.ADMIN),
    "otto": ("otto-operator-password", Role.OPERATOR),
    "vera": ("vera-viewer-password", Role.VIEWER),
}
"""name -> (password, role): the console's test users."""


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, name: str) -> str:
    """Sign `name` in on this client (its cookie jar keeps the session); returns the CSRF
    token of the new session."""
    form = await http.get("/login")
    password = PASSWORDS[name][0]
    response = await http.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": csrf_of(form.text)},
    )
    assert response.status_code == 303, response.text
    return csrf_of((await http.get("/")).text)


@asynccontextmanager
async def running_console(
    backend: Settings, console: ConsoleSettings, client: Client
) -> AsyncIterator[str]:
    """A console on a free port of 127.0.0.1 for the block; yields its base URL."""
    stop, ready, said = asyncio.Event(), asyncio.Event(), list[str]()

    def announce(message: str) -> None:
        said.append(message)
        ready.set()

    task = asyncio.create_task(
        serve_console(backend, console, stop, port=0, announce=announce, client=client)
    )
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        yield said[0].split()[-1]
    finally:
        stop.set()
        await task
