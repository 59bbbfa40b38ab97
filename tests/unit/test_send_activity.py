"""The send activity against a real receiver over real sockets: one signed POST per call,
and every outcome returned as a SendResult, never raised."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.testing import ActivityEnvironment

from activities.send import (
    MAX_RESPONSE_BYTES,
    USER_AGENT,
    SendActivities,
    error_kind_of,
    new_http_client,
    parse_retry_after,
)
from webhooks.core.models import ErrorKind, SendRequest, SendResult
from webhooks.dev.receiver import Drop, Hang, Receiver, Respond, Stream, scripted
from webhooks.secrets import FileSecretStore

SECRET = "whsec_" + base64.b64encode(b"send-activity-test-key-01").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"send-activity-old-key-987").decode()
BODY = '{"id":"evt_1","type":"stream.settled","timestamp":"2026-11-28T12:00:00Z","data":{}}'


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client(connect_timeout=1, max_connections=10) as client:
        yield client


@pytest.fixture
def store(tmp_path: Path) -> FileSecretStore:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"default": SECRET, "rotating": [SECRET, OLD_SECRET]}))
    return FileSecretStore(path)


@pytest.fixture
def acts(http: httpx.AsyncClient, store: FileSecretStore) -> SendActivities:
    return SendActivities(http, store, timeout_seconds=2)


def send_request(url: str, secret_ref: str = "default") -> SendRequest:
    return SendRequest(delivery_id="msg_test", url=url, body=BODY, secret_ref=secret_ref)


async def send_to(acts: SendActivities, rx: Receiver, secret_ref: str = "default") -> SendResult:
    return await acts.send_webhook(send_request(rx.url + "/hook", secret_ref))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- success --------------------------------------------------------------------------------


async def test_200_sends_signed_standard_webhooks_request(acts: SendActivities) -> None:
    async with Receiver(scripted(Respond(200, b"thanks", delay=0.25))) as rx:
        before = datetime.now(UTC)
        result = await send_to(acts, rx)
    assert result.status_code == 200
    assert result.error_kind is None
    assert result.error is None
    assert result.response_excerpt == "thanks"
    assert result.retry_after_seconds is None
    assert result.duration_ms >= 250  # the receiver took a quarter second to answer
    assert result.started_at >= before - timedelta(seconds=1)

    [got] = rx.requests
    assert got.method == "POST"
    assert got.path == "/hook"
    assert got.body == BODY.encode()
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("StreamPay-Webhooks/")
    assert got.headers["webhook-id"] == "msg_test"
    assert got.headers["webhook-timestamp"].isdigit()
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 300
    assert got.headers["webhook-signature"].startswith("v1,")
    payload = Webhook(SECRET).verify(got.body, got.headers)
    assert payload["id"] == "evt_1"


async def test_rotating_secret_signs_with_every_key(acts: SendActivities) -> None:
    async with Receiver() as rx:
        result = await send_to(acts, rx, secret_ref="rotating")
    assert result.status_code == 200
    [got] = rx.requests
    entries = got.headers["webhook-signature"].split(" ")
    assert len(entries) == 2
    for secret, entry in zip([SECRET, OLD_SECRET], entries, strict=True):
        Webhook(secret).verify(got.body, got.headers | {"webhook-signature": entry})


async def test_runs_as_an_activity(acts: SendActivities) -> None:
    async with Receiver(scripted(Respond(204))) as rx:
        result = await ActivityEnvironment().run(acts.send_webhook, send_request(rx.url + "/hook"))
    assert result.status_code == 204
    assert result.error_kind is None
    assert result.response_excerpt is None
    Webhook(SECRET).verify(rx.requests[0].body, rx.requests[0].headers)


async def test_each_attempt_is_signed_afresh_over_the_same_bytes(acts: SendActivities) -> None:
    async with Receiver() as rx:
        for _ in (1, 2):
            await send_to(acts, rx)
    first, second = rx.requests
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    for got in (first, second):
        Webhook(SECRET).verify(got.body, got.headers)


# --- HTTP failures --------------------------------------------------------------------------


async def test_500_is_an_http_status_error(acts: SendActivities) -> None:
    # Retry-After only means something on 429/503; here it is ignored.
    behavior = Respond(500, b"boom", {"retry-after": "30"})
    async with Receiver(scripted(behavior)) as rx:
        result = await send_to(acts, rx)
    assert result.status_code == 500
    assert result.error_kind is ErrorKind.HTTP_STATUS
    assert result.error == "HTTP 500"
    assert result.response_excerpt == "boom"
    assert result.retry_after_seconds is None


async def test_410_is_reported_as_an_http_status(acts: SendActivities) -> None:
    async with Receiver(scripted(Respond(410))) as rx:
        result = await send_to(acts, rx)
    assert result.status_code == 410
    assert result.error_kind is ErrorKind.HTTP_STATUS


async def test_302_is_a_redirect_that_is_not_followed(acts: SendActivities) -> None:
    async with Receiver() as rx:
        # Point back at the receiver itself: following it would show up as a second request.
        location = f"http://localhost:{rx.port}/elsewhere?token=s3cret"
        rx.responder = scripted(Respond(302, headers={"location": location}))
        result = await send_to(acts, rx)
    assert len(rx.requests) == 1
    assert result.status_code == 302
    assert result.error_kind is ErrorKind.REDIRECT
    # Only the host: the path and query of a Location may carry tokens.
    assert result.error == "redirect to localhost"
    assert "s3cret" not in (result.error or "")


async def test_redirect_without_location(acts: SendActivities) -> None:
    async with Receiver(scripted(Respond(307))) as rx:
        result = await send_to(acts, rx)
    assert result.status_code == 307
    assert result.error_kind is ErrorKind.REDIRECT
    assert len(rx.requests) == 1


async def test_503_retry_after_seconds(acts: SendActivities) -> None:
    async with Receiver(scripted(Respond(503, headers={"retry-after": "120"}))) as rx:
        result = await send_to(acts, rx)
    assert result.status_code == 503
    assert result.error_kind is ErrorKind.HTTP_STATUS
    assert result.retry_after_seconds == 120


async def test_429_retry_after_http_date(acts: SendActivities) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=600)
    header = format_datetime(when, usegmt=True)
    async with Receiver(scripted(Respond(429, headers={"retry-after": header}))) as rx:
        result = await send_to(acts, rx)
    assert result.status_code == 429
    assert result.error_kind is ErrorKind.HTTP_STATUS
    assert result.retry_after_seconds is not None
    assert 0 < result.retry_after_seconds <= 600


@pytest.mark.parametrize("headers", [{}, {"retry-after": "whenever"}])
async def test_429_without_usable_retry_after(
    acts: SendActivities, headers: dict[str, str]
) -> None:
    async with Receiver(scripted(Respond(429, headers=headers))) as rx:
        result = await send_to(acts, rx)
    assert result.status_code == 429
    assert result.retry_after_seconds is None


# --- transport failures ---------------------------------------------------------------------


async def test_hang_longer_than_the_timeout_is_a_timeout(
    http: httpx.AsyncClient, store: FileSecretStore
) -> None:
    acts = SendActivities(http, store, timeout_seconds=0.3)
    async with Receiver(scripted(Hang(30))) as rx:
        result = await send_to(acts, rx)
    assert result.status_code is None
    assert result.error_kind is ErrorKind.TIMEOUT
    assert result.error
    assert len(rx.requests) == 1


async def test_dropped_connection_is_a_protocol_error(acts: SendActivities) -> None:
    async with Receiver(scripted(Drop())) as rx:
        result = await send_to(acts, rx)
    assert result.status_code is None
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.error


async def test_closed_port_is_a_connect_error(acts: SendActivities) -> None:
    result = await acts.send_webhook(send_request(f"http://127.0.0.1:{closed_port()}/hook"))
    assert result.status_code is None
    assert result.error_kind is ErrorKind.CONNECT
    assert result.error


async def test_unresolvable_host_is_a_dns_error(acts: SendActivities) -> None:
    # .invalid is reserved (RFC 6761): it never resolves.
    result = await acts.send_webhook(send_request("http://nonexistent.invalid/"))
    assert result.status_code is None
    assert result.error_kind is ErrorKind.DNS
    assert result.error


async def test_unknown_secret_ref_sends_nothing(acts: SendActivities) -> None:
    async with Receiver() as rx:
        result = await send_to(acts, rx, secret_ref="nope")
    assert rx.requests == []
    assert result.status_code is None
    assert result.error_kind is ErrorKind.SECRET_UNAVAILABLE
    assert result.error == "unknown secret_ref 'nope'"


async def test_no_secret_store_sends_nothing(http: httpx.AsyncClient) -> None:
    acts = SendActivities(http, None)
    async with Receiver() as rx:
        result = await send_to(acts, rx)
    assert rx.requests == []
    assert result.error_kind is ErrorKind.SECRET_UNAVAILABLE
    assert result.error == "unknown secret_ref 'default'"


# --- response bodies ------------------------------------------------------------------------


async def test_endless_body_is_cut_off(http: httpx.AsyncClient, store: FileSecretStore) -> None:
    acts = SendActivities(http, store, timeout_seconds=5, excerpt_bytes=100)
    # Announces 1 GiB, sends the cap plus one chunk, then hangs: a read that stops at the
    # cap returns a 200; one that reads further waits until the attempt times out.
    chunk = MAX_RESPONSE_BYTES // 4
    endless = Stream(total=1 << 30, chunk=chunk, stop_after=MAX_RESPONSE_BYTES + chunk)
    async with Receiver(scripted(endless)) as rx:
        result = await send_to(acts, rx)
    assert result.error_kind is None
    assert result.status_code == 200
    assert result.response_excerpt == "x" * 100
    # A compressed body could expand past the cap: never ask for one.
    assert rx.requests[0].headers["accept-encoding"] == "identity"


async def test_excerpt_is_capped_at_excerpt_bytes(
    http: httpx.AsyncClient, store: FileSecretStore
) -> None:
    acts = SendActivities(http, store, excerpt_bytes=16)
    async with Receiver(scripted(Respond(500, b"0123456789" * 10))) as rx:
        result = await send_to(acts, rx)
    assert result.response_excerpt == "0123456789012345"


async def test_excerpt_bytes_zero_records_no_excerpt(
    http: httpx.AsyncClient, store: FileSecretStore
) -> None:
    acts = SendActivities(http, store, excerpt_bytes=0)
    async with Receiver(scripted(Respond(500, b"details"))) as rx:
        result = await send_to(acts, rx)
    assert result.status_code == 500
    assert result.response_excerpt is None


async def test_non_utf8_excerpt_is_decoded_with_replacement(acts: SendActivities) -> None:
    async with Receiver(scripted(Respond(400, b"bad \xff\xfe byte"))) as rx:
        result = await send_to(acts, rx)
    assert result.response_excerpt == "bad \ufffd\ufffd byte"


async def test_a_response_read_to_its_end_leaves_the_connection_reusable(
    acts: SendActivities,
) -> None:
    async with Receiver(scripted(Respond(200, b"a"), Respond(200, b"b"))) as rx:
        first = await send_to(acts, rx)
        second = await send_to(acts, rx)
    assert (first.response_excerpt, second.response_excerpt) == ("a", "b")
    one, two = rx.requests
    assert one.client_port == two.client_port, "the second attempt opened a new connection"


# --- parse_retry_after ----------------------------------------------------------------------

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 120 ", 120.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("²", None),  # str.isdigit() says yes; float() says no
        ("Sat, 28 Nov 2026 12:05:00 GMT", 300.0),
        ("Sat, 28 Nov 2026 12:05:00 -0000", 300.0),  # parsed naive: read as UTC
        ("Sat, 28 Nov 2026 13:05:00 +0100", 300.0),
        ("Sat, 28 Nov 2026 11:00:00 GMT", 0.0),  # already past: retry now, never negative
        ("Sat, 32 Nov 2026 12:05:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


# --- error_kind_of --------------------------------------------------------------------------


def caused(err: BaseException, cause: BaseException) -> BaseException:
    err.__cause__ = cause
    return err


def test_error_kind_tls() -> None:
    err = caused(httpx.ConnectError("handshake failed"), ssl.SSLError(1, "bad record mac"))
    assert error_kind_of(err) is ErrorKind.TLS


def test_error_kind_tls_certificate() -> None:
    inner = caused(RuntimeError("wrapped"), ssl.SSLCertVerificationError("self-signed"))
    assert error_kind_of(caused(httpx.ConnectError("x"), inner)) is ErrorKind.TLS


def test_error_kind_dns_through_the_context_chain() -> None:
    err = httpx.ConnectError("lookup failed")
    err.__context__ = socket.gaierror(-2, "Name or service not known")
    assert error_kind_of(err) is ErrorKind.DNS


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (TimeoutError(), ErrorKind.TIMEOUT),
        (httpx.ReadTimeout("slow"), ErrorKind.TIMEOUT),
        (httpx.ConnectTimeout("slow"), ErrorKind.TIMEOUT),
        (httpx.ConnectError("refused"), ErrorKind.CONNECT),
        (httpx.RemoteProtocolError("disconnected"), ErrorKind.PROTOCOL),
        (httpx.ReadError("reset"), ErrorKind.PROTOCOL),
    ],
)
def test_error_kind_of(err: BaseException, kind: ErrorKind) -> None:
    assert error_kind_of(err) is kind


async def test_unparseable_retry_after_never_raises(acts: SendActivities) -> None:
    # "\xb2" is a legal header byte (latin-1 superscript two) that str.isdigit() accepts.
    async with Receiver(scripted(Respond(503, headers={"retry-after": "\xb2"}))) as rx:
        result = await send_to(acts, rx)
    assert result.status_code == 503
    assert result.retry_after_seconds is None
