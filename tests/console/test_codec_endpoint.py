"""The codec endpoint: Temporal's remote codec protocol, behind the console's sign-in."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from tests.console import sign_in
from tests.console.conftest import CODEC_KEY, UI_ORIGIN, bearer
from webhooks.codec import EncryptionCodec
from webhooks.core.roles import Role

PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"marker":"visible-only-decoded"}')
ADMIN = bearer(Role.ADMIN)


def as_json(*payloads: Payload) -> dict[str, object]:
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}


def from_json(document: dict[str, list[dict[str, object]]]) -> list[Payload]:
    return [json_format.ParseDict(p, Payload()) for p in document["payloads"]]


@pytest.fixture
def codec() -> EncryptionCodec:
    return EncryptionCodec.from_text(f"k1:{CODEC_KEY}")


async def test_decode_and_encode_for_an_admin_token(
    http: httpx.AsyncClient, codec: EncryptionCodec
) -> None:
    [sealed] = await codec.encode([PLAIN])
    decoded = await http.post("/codec/decode", json=as_json(sealed), headers=ADMIN)
    assert decoded.status_code == 200
    assert decoded.headers["content-type"] == "application/json"
    assert from_json(decoded.json()) == [PLAIN]
    encoded = await http.post("/codec/encode", json=as_json(PLAIN), headers=ADMIN)
    assert encoded.status_code == 200
    [again] = from_json(encoded.json())
    assert b"visible-only-decoded" not in again.data
    assert await codec.decode([again]) == [PLAIN]


async def test_the_ui_decodes_with_the_signed_in_session_cookie(
    http: httpx.AsyncClient, codec: EncryptionCodec
) -> None:
    await sign_in(http, "ada")
    [sealed] = await codec.encode([PLAIN])
    # The UI's fetch with credentials: the console's cookie, no CSRF token (no state changes).
    response = await http.post("/codec/decode", json=as_json(sealed), headers={"origin": UI_ORIGIN})
    assert response.status_code == 200
    assert from_json(response.json()) == [PLAIN]
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer wrong-token-wrong-token"}, 401),
        ({"authorization": f"Basic {CODEC_KEY}"}, 401),
        (bearer(Role.VIEWER), 403),
        (bearer(Role.OPERATOR), 403),
    ],
)
async def test_without_the_payload_role_nothing_is_decoded(
    http: httpx.AsyncClient, codec: EncryptionCodec, headers: dict[str, str], status: int
) -> None:
    [sealed] = await codec.encode([PLAIN])
    response = await http.post("/codec/decode", json=as_json(sealed), headers=headers)
    assert response.status_code == status
    assert b"visible-only-decoded" not in response.content


async def test_no_token_in_the_path_is_accepted(http: httpx.AsyncClient) -> None:
    token = ADMIN["authorization"].removeprefix("Bearer ")
    response = await http.post(f"/codec/{token}/decode", json={"payloads": []})
    assert response.status_code in (404, 405)


async def test_encode_is_for_admins_only(http: httpx.AsyncClient) -> None:
    response = await http.post("/codec/encode", json=as_json(PLAIN), headers=bearer(Role.OPERATOR))
    assert response.status_code == 403
    assert response.json() == {"error": "encode needs the admin role"}


async def test_cors_lets_the_ui_origin_in_and_no_other(http: httpx.AsyncClient) -> None:
    preflight = await http.options(
        "/codec/decode",
        headers={
            "origin": UI_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-namespace,authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == (
        "content-type,x-namespace,authorization"
    )
    post = await http.post(
        "/codec/decode", json={"payloads": []}, headers=ADMIN | {"origin": UI_ORIGIN}
    )
    assert post.status_code == 200
    assert post.headers["access-control-allow-origin"] == UI_ORIGIN
    stranger = {"origin": "https://evil.example"}
    refused = await http.post("/codec/decode", json={"payloads": []}, headers=ADMIN | stranger)
    assert "access-control-allow-origin" not in refused.headers
    strange_preflight = await http.options("/codec/decode", headers=stranger)
    assert "access-control-allow-origin" not in strange_preflight.headers


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("GET", "/codec/decode", None, 405, "use POST"),
        ("POST", "/codec/metrics", b"{}", 404, "not found"),
        ("OPTIONS", "/codec/metrics", None, 404, "not found"),
        ("POST", "/codec/decode", b"{not json", 400, "not JSON"),
        ("POST", "/codec/decode", b"\xff\xfe", 400, "not JSON"),
        ("POST", "/codec/decode", b"[]", 400, "must be"),
        ("POST", "/codec/decode", b'{"payloads": {}}', 400, "must be"),
        ("POST", "/codec/decode", b'{"payloads": [{"nope": 1}]}', 400, "not a payload"),
        ("POST", "/codec/decode", b'{"payloads": [7]}', 400, "not a payload"),
    ],
)
async def test_bad_requests_get_clear_errors(
    http: httpx.AsyncClient, method: str, path: str, body: bytes | None, status: int, error: str
) -> None:
    response = await http.request(method, path, content=body, headers=ADMIN)
    assert response.status_code == status
    assert error in response.json()["error"]


async def test_a_body_over_the_cap_is_413(http: httpx.AsyncClient) -> None:
    big = b'{"payloads": [], "pad": "' + b"a" * (8 * 1024 * 1024) + b'"}'
    response = await http.post("/codec/decode", content=big, headers=ADMIN)
    assert response.status_code == 413


async def raw(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(30):
        answer = await reader.read(200)
    writer.close()
    return answer


@pytest.mark.parametrize(
    "length_headers",
    [
        b"content-length: 2\r\ncontent-length: 15\r\n",  # the old server took the last
        b"content-length: +2\r\n",
        b"content-length: 1_0\r\n",
        b"content-length: ten\r\n",
    ],
)
async def test_the_asgi_server_refuses_ambiguous_lengths(
    console_url: str, length_headers: bytes
) -> None:
    answer = await raw(
        console_url,
        b"POST /codec/decode HTTP/1.1\r\nhost: x\r\n" + length_headers + b'\r\n{"payloads":[]}',
    )
    assert answer.startswith(b"HTTP/1.1 400")


async def test_a_payload_under_an_unknown_key_is_a_clear_422(http: httpx.AsyncClient) -> None:
    other = EncryptionCodec.from_text(f"k9:{base64.b64encode(bytes(32)).decode()}")
    [sealed] = await other.encode([PLAIN])
    response = await http.post("/codec/decode", json=as_json(sealed), headers=ADMIN)
    assert response.status_code == 422
    assert response.json() == {"error": "payload encrypted with key 'k9', which is not loaded"}
