"""`webhooks dev --encrypt`: a generated local key encrypts the history, and the Web UI is
wired to the console's codec endpoint, which decodes it for the signed-in admin."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from rich.console import Console
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.security import BOUND_SECONDS
from webhooks.config import Settings
from webhooks.core.models import DeliveryStatus
from webhooks.dev.demo import run_dev
from webhooks.dev.devserver import ensure_dev_codec, ensure_dev_console
from webhooks.publisher import connect
from workflows.delivery import WebhookDelivery


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
async def restore_signals() -> AsyncIterator[None]:
    """`webhooks dev` installs SIGINT/SIGTERM handlers on the loop: give them back."""
    yield
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)


def test_the_local_key_and_console_password_are_made_once_and_kept(tmp_path: Path) -> None:
    keys = ensure_dev_codec(tmp_path)
    assert keys.read_text().startswith("local:")
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    assert ensure_dev_codec(tmp_path) == keys
    password, session_key = ensure_dev_console(tmp_path)
    assert len(password) >= 16
    assert len(session_key) >= 32
    for name in ("console-password", "console-session-key"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == "0o600"
    assert ensure_dev_console(tmp_path) == (password, session_key)


async def test_dev_encrypt_runs_the_demo_with_an_encrypted_history(
    tmp_path: Path, restore_signals: None
) -> None:
    port, ui_port, console_port = free_ports(3)
    output = io.StringIO()
    console = Console(file=output, width=300)
    dev = asyncio.create_task(
        run_dev(
            state_dir=tmp_path,
            port=port,
            ui_port=ui_port,
            demo=True,
            console=console,
            encrypt=True,
            console_port=console_port,
        )
    )
    try:
        async with asyncio.timeout(BOUND_SECONDS * 2):
            while "published" not in output.getvalue():
                assert not dev.done(), output.getvalue()
                await asyncio.sleep(0.1)
        await check(output.getvalue(), tmp_path, port, ui_port, console_port)
    finally:
        if "published" in output.getvalue():
            os.kill(os.getpid(), signal.SIGTERM)  # its handler is installed by now
        else:
            dev.cancel()
        async with asyncio.timeout(BOUND_SECONDS):
            await asyncio.gather(dev, return_exceptions=True)
    assert output.getvalue().rstrip().endswith("stopped")


async def check(text: str, state_dir: Path, port: int, ui_port: int, console_port: int) -> None:
    delivery_id = text.split("as delivery ")[1].split()[0]
    keys = state_dir / "codec-keys"
    password = (state_dir / "console-password").read_text().strip()
    console = f"http://127.0.0.1:{console_port}"
    assert f"console on {console}" in text
    assert f"export WEBHOOKS_CODEC_KEYS_FILE={keys}" in text
    # A shell with the key file reads the delivery...
    keyed = await connect(Settings(temporal_address=f"127.0.0.1:{port}", codec_keys_file=keys))
    handle = keyed.get_workflow_handle_for(WebhookDelivery.run, delivery_id)
    status: DeliveryStatus = await handle.query(WebhookDelivery.status)
    assert status.endpoint_id == "ep_demo"
    # ...one without it sees ciphertext only.
    keyless = await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
    history = await keyless.get_workflow_handle(delivery_id).fetch_history()
    [sealed] = history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert b"str_demo" not in sealed.SerializeToString()
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        # The UI was started pointing at the console's codec endpoint...
        settings_url = f"http://127.0.0.1:{ui_port}/api/v1/settings"
        async with asyncio.timeout(BOUND_SECONDS):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    ui = await http.get(settings_url)
                    if ui.status_code == 200:
                        break
                await asyncio.sleep(0.2)
        assert ui.json()["Codec"]["Endpoint"] == f"{console}/codec"
        # ...which decodes for nobody signed out, and for the signed-in admin from the UI.
        body = {"payloads": [json_format.MessageToDict(sealed)]}
        origin = {"origin": f"http://localhost:{ui_port}"}
        refused = await http.post(f"{console}/codec/decode", json=body, headers=origin)
        assert refused.status_code == 401
        await sign_in(http, console, password)
        decoded = await http.post(f"{console}/codec/decode", json=body, headers=origin)
        assert decoded.status_code == 200
        assert decoded.headers["access-control-allow-origin"] == origin["origin"]
        [plain] = decoded.json()["payloads"]
        assert b"str_demo" in json_format.ParseDict(plain, Payload()).data


async def sign_in(http: httpx.AsyncClient, console: str, password: str) -> None:
    form = await http.get(f"{console}/login")
    csrf = form.text.split('name="csrf_token" value="')[1].split('"')[0]
    signed = await http.post(
        f"{console}/login", data={"username": "admin", "password": password, "csrf_token": csrf}
    )
    assert signed.status_code == 303
