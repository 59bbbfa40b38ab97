"""The codec server speaks Temporal's remote codec protocol to token holders only."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from typer.testing import CliRunner

from tests.security import BOUND_SECONDS
from webhooks.cli import app
from webhooks.codec import EncryptionCodec
from webhooks.config import Settings
from webhooks.server.codec_server import CodecServer, serve_codec

KEY = base64.b64encode(bytes(range(32))).decode()
TOKEN = "codec-test-token-0123456789"
UI = "http://localhost:8233"
PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"marker":"visible-only-decoded"}')


def as_json(*payloads: Payload) -> dict[str, object]:
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}


def from_json(document: dict[str, list[dict[str, object]]]) -> list[Payload]:
    return [json_format.ParseDict(p, Payload()) for p in document["payloads"]]


@pytest.fixture
def codec() -> EncryptionCodec:
    return EncryptionCodec.from_text(f"k1:{KEY}")


@pytest.fixture
async def server(codec: EncryptionCodec) -> AsyncIterator[CodecServer]:
    async with CodecServer(codec, TOKEN, port=0, read_timeout=0.5) as running:
        yield running


@pytest.fixture
async def http(server: CodecServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as client:
        yield client


BEARER = {"authorization": f"Bearer {TOKEN}"}


async def test_decode_and_encode_for_a_bearer(
    http: httpx.AsyncClient, codec: EncryptionCodec
) -> None:
    [sealed] = await codec.encode([PLAIN])
    decoded = await http.post("/decode", json=as_json(sealed), headers=BEARER)
    assert decoded.status_code == 200
    assert decoded.headers["content-type"] == "application/json"
    assert from_json(decoded.json()) == [PLAIN]
    encoded = await http.post("/encode", json=as_json(PLAIN), headers=BEARER)
    assert encoded.status_code == 200
    [again] = from_json(encoded.json())
    assert b"visible-only-decoded" not in again.data
    assert await codec.decode([again]) == [PLAIN]


async def test_the_token_may_be_the_first_path_segment_for_a_ui_without_login(
    http: httpx.AsyncClient, codec: EncryptionCodec
) -> None:
    [sealed] = await codec.encode([PLAIN])
    response = await http.post(f"/{TOKEN}/decode", json=as_json(sealed))
    assert response.status_code == 200
    assert from_json(response.json()) == [PLAIN]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/decode", {}),
        ("/decode", {"authorization": "Bearer wrong-token-wrong-token"}),
        ("/decode", {"authorization": f"Basic {TOKEN}"}),
        ("/not-the-token/decode", {}),
        (f"/{TOKEN}x/decode", {}),
    ],
)
async def test_without_the_token_nothing_is_decoded(
    http: httpx.AsyncClient, codec: EncryptionCodec, path: str, headers: dict[str, str]
) -> None:
    [sealed] = await codec.encode([PLAIN])
    response = await http.post(path, json=as_json(sealed), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert b"visible-only-decoded" not in response.content


async def test_cors_lets_the_ui_origin_in_and_no_other(http: httpx.AsyncClient) -> None:
    preflight = await http.options(
        "/decode",
        headers={
            "origin": UI,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-namespace,authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == UI
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == (
        "content-type,x-namespace,authorization"
    )
    post = await http.post("/decode", json={"payloads": []}, headers=BEARER | {"origin": UI})
    assert post.status_code == 200
    assert post.headers["access-control-allow-origin"] == UI
    stranger = await http.post(
        "/decode", json={"payloads": []}, headers=BEARER | {"origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in stranger.headers


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("GET", "/decode", None, 405, "use POST"),
        ("POST", "/metrics", b"{}", 404, "not found"),
        ("POST", "/decode", b"{not json", 400, "not JSON"),
        ("POST", "/decode", b"\xff\xfe", 400, "not JSON"),
        ("POST", "/decode", b"[]", 400, "must be"),
        ("POST", "/decode", b'{"payloads": {}}', 400, "must be"),
        ("POST", "/decode", b'{"payloads": [{"nope": 1}]}', 400, "not a payload"),
    ],
)
async def test_bad_requests_get_clear_errors(
    http: httpx.AsyncClient, method: str, path: str, body: bytes | None, status: int, error: str
) -> None:
    response = await http.request(method, path, content=body, headers=BEARER)
    assert response.status_code == status
    assert error in response.json()["error"]


async def test_a_payload_under_an_unknown_key_is_a_clear_422(http: httpx.AsyncClient) -> None:
    other = EncryptionCodec.from_text(f"k9:{base64.b64encode(bytes(32)).decode()}")
    [sealed] = await other.encode([PLAIN])
    response = await http.post("/decode", json=as_json(sealed), headers=BEARER)
    assert response.status_code == 422
    assert response.json() == {"error": "payload encrypted with key 'k9', which is not loaded"}


async def raw(server: CodecServer, data: bytes, *, eof: bool = False) -> bytes:
    """Send raw bytes (then hang up our side if `eof`), read until the server closes."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    if eof:
        writer.write_eof()
    async with asyncio.timeout(BOUND_SECONDS):
        answer = await reader.read()
    writer.close()
    return answer


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"POST /decode HTTP/1.1\r\ncontent-length: 999999999\r\n\r\n", b"413"),
        (b"POST /decode HTTP/1.1\r\ncontent-length: -1\r\n\r\n", b"413"),
        (b"POST /decode HTTP/1.1\r\ncontent-length: ten\r\n\r\n", b"400"),
        (b"POST /decode HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", b"400"),
        (b"POST /decode HTTP/1.1\r\nx-pad: " + b"a" * 20000 + b"\r\n\r\n", b"400"),
    ],
)
async def test_malformed_http_is_answered_and_closed(
    server: CodecServer, request_bytes: bytes, status: bytes
) -> None:
    answer = await raw(server, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert b"connection: close" in answer


async def test_connection_close_and_silent_or_vanishing_clients(server: CodecServer) -> None:
    answer = await raw(
        server,
        b"POST /decode HTTP/1.1\r\nauthorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"content-length: 15\r\nconnection: close\r\n\r\n" + b'{"payloads":[]}',
    )
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b'{"payloads": []}')
    # A client that says nothing is dropped after the read timeout; one that vanishes
    # mid-body is simply forgotten. Neither takes the server down.
    assert await raw(server, b"") == b""
    assert await raw(server, b"POST /decode HTT", eof=True) == b""
    vanishing = b"POST /decode HTTP/1.1\r\ncontent-length: 10\r\n\r\n{"
    assert await raw(server, vanishing, eof=True) == b""
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
        assert (await http.post("/decode", json={"payloads": []}, headers=BEARER)).is_success


async def test_keep_alive_serves_many_requests_on_one_connection(
    http: httpx.AsyncClient,
) -> None:
    ports = set()
    for _ in range(3):
        response = await http.post(
            "/decode", json={"payloads": []}, headers=BEARER, extensions={"trace": None}
        )
        assert response.status_code == 200
        assert response.headers["connection"] == "keep-alive"
        stream = response.extensions["network_stream"]
        ports.add(stream.get_extra_info("client_addr")[1])
    assert len(ports) == 1


def test_a_short_token_is_refused(codec: EncryptionCodec) -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        CodecServer(codec, "short")


async def test_serve_codec_runs_until_stopped() -> None:
    settings = Settings(codec_keys=f"k1:{KEY}", codec_server_token=TOKEN)
    stop = asyncio.Event()
    said: list[str] = []
    ready = asyncio.Event()

    def announce(message: str) -> None:
        said.append(message)
        ready.set()

    task = asyncio.create_task(serve_codec(settings, stop, port=0, announce=announce))
    async with asyncio.timeout(BOUND_SECONDS):
        await ready.wait()
    url = said[0].split()[3]
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(url + "/decode", json={"payloads": []}, headers=BEARER)
    assert response.json() == {"payloads": []}
    assert f"--ui-codec-endpoint {url}/<token>" in said[0]
    stop.set()
    await task


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no codec keys: set WEBHOOKS_CODEC_KEYS"),
        ({"WEBHOOKS_CODEC_KEYS": f"k1:{KEY}"}, "set WEBHOOKS_CODEC_SERVER_TOKEN"),
        ({"WEBHOOKS_CODEC_KEYS": "k1:no*pe"}, "key 'k1' is not valid base64"),
    ],
)
def test_the_cli_refuses_to_start_without_keys_and_token(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("WEBHOOKS_CODEC_KEYS", "WEBHOOKS_CODEC_KEYS_FILE", "WEBHOOKS_CODEC_SERVER_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(app, ["codec-server", "--port", "0"], env=env)
    assert result.exit_code == 2
    assert message in result.output
    assert KEY not in result.output


async def test_the_cli_command_serves_until_terminated(tmp_path: Path) -> None:
    keys = tmp_path / "codec-keys"
    keys.write_text(f"k1:{KEY}\n")
    env = os.environ | {
        "WEBHOOKS_CODEC_KEYS_FILE": str(keys),
        "WEBHOOKS_CODEC_SERVER_TOKEN": TOKEN,
        "COLUMNS": "300",
    }
    env.pop("WEBHOOKS_CODEC_KEYS", None)
    command = [sys.executable, "-c", "from webhooks.cli import main; main()"]
    process = await asyncio.create_subprocess_exec(
        *command,
        "codec-server",
        "--port",
        "0",
        "--origin",
        "https://temporal.internal.example",
        env=env,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(BOUND_SECONDS):
            first = (await process.stdout.readline()).decode()
        url = first.split()[3]
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.post(
                url + "/decode",
                json={"payloads": []},
                headers=BEARER | {"origin": "https://temporal.internal.example"},
            )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == (
            "https://temporal.internal.example"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(BOUND_SECONDS):
            code = await process.wait()
    assert code == 0
