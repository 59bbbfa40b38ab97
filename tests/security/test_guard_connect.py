"""The guard at connect time, over real sockets: refused destinations send no packet, the
address vetted is the address connected to, and TLS still speaks to the hostname."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from activities.endpoint_cache import EndpointCache
from activities.safe_transport import (
    BlockedDestinationError,
    DestinationPolicy,
    GuardedBackend,
    GuardedTransport,
    IPAddress,
    Resolver,
    system_resolver,
)
from activities.send import SendActivities, error_kind_of, new_http_client
from webhooks.core.models import ErrorKind, SendRequest, SendResult
from webhooks.dev.receiver import Receiver
from webhooks.registry.legacy import parse_entries
from webhooks.registry.service import EndpointRegistry

SECRET = "whsec_dGhlLWd1YXJkLXRlc3Qtc2lnbmluZy1rZXk="
BODY = '{"id":"evt_g","type":"guard.test","timestamp":"2026-11-28T12:00:00Z","data":{}}'


class SpyBackend(httpcore.AsyncNetworkBackend):
    """Records every connect; really connects (to loopback) only when told to."""

    def __init__(self, *, connect: bool = False) -> None:
        self.connects: list[tuple[str, int]] = []
        self._real = httpcore.AnyIOBackend() if connect else None

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        if self._real is None:
            raise httpcore.ConnectError(f"spy: no network for {host}")
        return await self._real.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def resolver_of(*answers: Sequence[str]) -> tuple[list[str], Resolver]:
    """A resolver answering each lookup with the next answer (DNS under test's control)."""
    calls: list[str] = []
    queue = [list(answer) for answer in answers]

    async def resolve(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ip_address(a) for a in queue.pop(0)]

    return calls, resolve


@pytest.fixture
async def store(registry: EndpointRegistry) -> EndpointCache:
    """Signs the old-style attempts below (url + secret_ref `default`, imported)."""
    await registry.import_legacy(parse_entries(json.dumps({"default": SECRET})), account_id="a")
    return EndpointCache(registry)


def sender(http: httpx.AsyncClient, store: EndpointCache) -> SendActivities:
    return SendActivities(http, store, timeout_seconds=2)


def attempt(url: str) -> SendRequest:
    return SendRequest(delivery_id="msg_guard", url=url, body=BODY, secret_ref="default")


# --- refused: the production client against a real receiver on loopback ----------------------


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/hook",
        "http://localhost:{port}/hook",  # a hostname that resolves to loopback
        "http://LocalHost:{port}/hook",  # case changes nothing
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://0.0.0.0:{port}/hook",  # reaches localhost on Linux
        "http://[::1]:{port}/hook",
        "http://2130706433:{port}/hook",  # 127.0.0.1 as one decimal number
        "http://0x7f.1:{port}/hook",  # and in the inet_aton shorthand
    ],
)
async def test_loopback_in_any_spelling_is_refused_and_receives_nothing(
    store: EndpointCache, template: str
) -> None:
    async with (
        Receiver() as rx,
        new_http_client(
            connect_timeout=1, max_connections=4, destinations=DestinationPolicy()
        ) as h,
    ):
        result = await sender(h, store).send_webhook(attempt(template.format(port=rx.port)))
        assert result.error_kind is ErrorKind.BLOCKED_DESTINATION, result
        assert result.status_code is None
        assert result.error is not None
        assert "blocked destination" in result.error
        assert rx.requests == []


async def test_the_same_receiver_is_reached_once_its_network_is_allowlisted(
    store: EndpointCache,
) -> None:
    policy = DestinationPolicy(allowed_networks=(IPv4Network("127.0.0.0/8"),))
    async with (
        Receiver() as rx,
        new_http_client(connect_timeout=1, max_connections=4, destinations=policy) as h,
    ):
        result = await sender(h, store).send_webhook(attempt(rx.url + "/hook"))
        assert result.status_code == 200
        assert result.error_kind is None
        assert len(rx.requests) == 1


# --- refused: destinations no test can listen on, so the proof is "no connect at all" --------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
        ("http://10.0.0.1/hook", "10.0.0.1 is private"),
        ("http://172.20.1.1/hook", "172.20.1.1 is private"),
        ("http://192.168.0.1/hook", "192.168.0.1 is private"),
        ("http://100.64.0.1/hook", "100.64.0.1 is cgnat"),
        ("http://224.0.0.251/hook", "224.0.0.251 is multicast"),
        ("http://240.0.0.1/hook", "240.0.0.1 is reserved"),
        ("http://[fd00::1]/hook", "fd00::1 is unique-local"),
        ("http://[fe80::1]/hook", "fe80::1 is link-local"),
        ("http://[ff02::1]/hook", "ff02::1 is multicast"),
        ("http://[::]/hook", ":: is unspecified"),
        ("http://[::ffff:a9fe:a9fe]/hook", "::ffff:a9fe:a9fe is ipv4-mapped link-local"),
        ("http://[64:ff9b::a00:1]/hook", "64:ff9b::a00:1 is nat64 private"),
        ("http://[2002:c0a8:1::1]/hook", "2002:c0a8:1::1 is 6to4 private"),
    ],
)
async def test_each_refused_class_is_blocked_before_any_connect(
    store: EndpointCache, url: str, shown: str
) -> None:
    spy = SpyBackend()
    policy = DestinationPolicy()
    transport = GuardedTransport(policy, backend=GuardedBackend(policy, inner=spy))
    async with httpx.AsyncClient(transport=transport) as http:
        result = await sender(http, store).send_webhook(attempt(url))
    assert result.error_kind is ErrorKind.BLOCKED_DESTINATION
    assert result.error == f"blocked destination: {shown}"
    assert spy.connects == []


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        (["169.254.169.254"], "169.254.169.254, which is link-local"),
        (["10.1.2.3"], "10.1.2.3, which is private"),
        (["100.100.100.200"], "100.100.100.200, which is cgnat"),
        (["fd00:ec2::254"], "fd00:ec2::254, which is unique-local"),
        # One public and one private record: refused, or a failed connect to the public
        # one would fall through to the private one.
        (["93.184.215.14", "127.0.0.1"], "127.0.0.1, which is loopback"),
    ],
)
async def test_a_hostname_is_judged_by_every_address_it_resolves_to(
    answer: list[str], refused: str
) -> None:
    spy = SpyBackend()
    _, resolve = resolver_of(answer)
    backend = GuardedBackend(DestinationPolicy(), inner=spy, resolver=resolve)
    with pytest.raises(BlockedDestinationError) as info:
        await backend.connect_tcp("hooks.customer.example", 443, timeout=1)
    assert str(info.value) == f"blocked destination: hooks.customer.example resolves to {refused}"
    assert spy.connects == []


async def test_dns_rebinding_cannot_swap_the_vetted_address() -> None:
    """The name is resolved once per connection and the connect goes to that very address:
    a second answer (the rebinding) is judged afresh, never used unvetted."""
    spy = SpyBackend()
    calls, resolve = resolver_of(["93.184.215.14"], ["127.0.0.1"])
    backend = GuardedBackend(DestinationPolicy(), inner=spy, resolver=resolve)
    with pytest.raises(httpcore.ConnectError, match="spy"):
        await backend.connect_tcp("rebind.example", 80, timeout=1)
    assert spy.connects == [("93.184.215.14", 80)]  # the literal, not the name
    with pytest.raises(BlockedDestinationError, match=r"resolves to 127\.0\.0\.1"):
        await backend.connect_tcp("rebind.example", 80, timeout=1)
    assert spy.connects == [("93.184.215.14", 80)]
    assert calls == ["rebind.example", "rebind.example"]


async def test_the_connection_goes_to_the_vetted_ip_but_speaks_the_hostname(
    store: EndpointCache,
) -> None:
    spy = SpyBackend(connect=True)
    _, resolve = resolver_of(["127.0.0.1"])
    policy = DestinationPolicy(allowed_networks=(IPv4Network("127.0.0.0/8"),))
    backend = GuardedBackend(policy, inner=spy, resolver=resolve)
    async with (
        Receiver() as rx,
        httpx.AsyncClient(transport=GuardedTransport(policy, backend=backend)) as http,
    ):
        result = await sender(http, store).send_webhook(attempt(f"http://hooks.test:{rx.port}/"))
        assert result.status_code == 200
        assert spy.connects == [("127.0.0.1", rx.port)]
        assert rx.requests[0].headers["host"] == f"hooks.test:{rx.port}"


async def test_a_failed_address_falls_through_to_the_next_vetted_one(
    store: EndpointCache,
) -> None:
    policy = DestinationPolicy(allow_private=True)
    async with Receiver() as rx:
        # Nothing listens on 127.0.0.2's port: refused, then 127.0.0.1 answers.
        _, resolve = resolver_of(["127.0.0.2", "127.0.0.1"])
        spy = SpyBackend(connect=True)
        backend = GuardedBackend(policy, inner=spy, resolver=resolve)
        async with httpx.AsyncClient(transport=GuardedTransport(policy, backend=backend)) as h:
            with socket.socket() as probe:
                # Make sure 127.0.0.2:port is closed (the receiver binds 127.0.0.1 only).
                assert probe.connect_ex(("127.0.0.2", rx.port)) != 0
            result = await sender(h, store).send_webhook(attempt(f"http://two.test:{rx.port}/"))
        assert result.status_code == 200
        assert spy.connects == [("127.0.0.2", rx.port), ("127.0.0.1", rx.port)]


async def test_when_every_address_fails_the_last_error_is_reported() -> None:
    spy = SpyBackend()
    _, resolve = resolver_of(["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    backend = GuardedBackend(DestinationPolicy(), inner=spy, resolver=resolve)
    with pytest.raises(httpcore.ConnectError, match="spy: no network for 2606"):
        await backend.connect_tcp("down.example", 80, timeout=1)
    assert [host for host, _ in spy.connects] == [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    ]


# --- resolution failures are ordinary, retryable errors --------------------------------------


async def test_an_unknown_name_is_a_dns_error(store: EndpointCache) -> None:
    async with new_http_client(
        connect_timeout=1, max_connections=4, destinations=DestinationPolicy()
    ) as http:
        result = await sender(http, store).send_webhook(attempt("http://no-such-host.invalid/"))
    assert result.error_kind is ErrorKind.DNS
    assert result.error is not None
    assert "cannot resolve no-such-host.invalid" in result.error


async def test_a_resolver_that_answers_nothing_or_too_late_fails_the_connect() -> None:
    _, empty = resolver_of([])
    backend = GuardedBackend(DestinationPolicy(), inner=SpyBackend(), resolver=empty)
    with pytest.raises(httpcore.ConnectError, match="resolves to no address"):
        await backend.connect_tcp("empty.example", 80, timeout=1)

    async def stuck(host: str, port: int) -> list[IPAddress]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    backend = GuardedBackend(DestinationPolicy(), inner=SpyBackend(), resolver=stuck)
    with pytest.raises(httpcore.ConnectTimeout) as info:
        await backend.connect_tcp("slow.example", 80, timeout=0.05)
    assert error_kind_of(httpx.ConnectTimeout(str(info.value))) is ErrorKind.TIMEOUT


async def test_the_system_resolver_returns_each_address_once() -> None:
    addresses = await system_resolver("localhost", 80)
    assert addresses
    assert len(addresses) == len(set(addresses))
    assert all(a.is_loopback for a in addresses)


async def test_unix_sockets_are_refused() -> None:
    backend = GuardedBackend(DestinationPolicy(allow_private=True), inner=SpyBackend())
    with pytest.raises(BlockedDestinationError, match="unix sockets"):
        await backend.connect_unix_socket("/var/run/docker.sock")
    await backend.sleep(0)


# --- https only -------------------------------------------------------------------------------


async def test_require_https_refuses_plain_http_at_send(store: EndpointCache) -> None:
    policy = DestinationPolicy(allow_private=True, require_https=True)
    async with (
        Receiver() as rx,
        new_http_client(connect_timeout=1, max_connections=4, destinations=policy) as http,
    ):
        result: SendResult = await sender(http, store).send_webhook(attempt(rx.url + "/hook"))
        assert result.error_kind is ErrorKind.BLOCKED_DESTINATION
        assert result.error == "blocked destination: https is required, not http://"
        assert rx.requests == []


# --- TLS: the hostname stays the TLS name -----------------------------------------------------


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path, list[str | None]]]:
    """An HTTPS endpoint on 127.0.0.1 whose certificate names only `localhost`."""
    cert, key = self_signed(tmp_path, "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []

    def remember(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = remember

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1], cert, names


async def test_tls_uses_the_hostname_for_sni_and_certificate_checks(
    store: EndpointCache, tls_server: tuple[int, Path, list[str | None]]
) -> None:
    port, cert, names = tls_server
    policy = DestinationPolicy(
        allowed_networks=(IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))
    )
    trust = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(transport=GuardedTransport(policy, ssl_context=trust)) as http:
        ok = await sender(http, store).send_webhook(attempt(f"https://localhost:{port}/hook"))
        # The same server by IP: the certificate does not name 127.0.0.1, so TLS refuses.
        by_ip = await sender(http, store).send_webhook(attempt(f"https://127.0.0.1:{port}/"))
    assert ok.status_code == 200, ok
    assert names[0] == "localhost"
    assert by_ip.error_kind is ErrorKind.TLS


def test_blocked_destination_is_its_own_error_kind() -> None:
    err = BlockedDestinationError("10.0.0.1 is private")
    assert isinstance(err, httpx.ConnectError)
    assert error_kind_of(err) is ErrorKind.BLOCKED_DESTINATION
