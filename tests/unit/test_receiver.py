"""The test receiver itself: what the send tests above do not already exercise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from webhooks.dev.receiver import (
    MAX_REQUEST_BYTES,
    Behavior,
    Drop,
    Hang,
    ReceivedRequest,
    Receiver,
    Respond,
    Stream,
    scripted,
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def raw_exchange(rx: Receiver, data: bytes) -> bytes:
    """Write raw bytes, half-close, and read whatever comes back until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", rx.port)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_scripted_then_answers_every_later_request(http: httpx.AsyncClient) -> None:
    async with Receiver(scripted(Respond(500), then=Respond(410))) as rx:
        codes = [(await http.post(rx.url, content=b"{}")).status_code for _ in range(3)]
    assert codes == [500, 410, 410]


async def test_default_answers_200_and_records_requests(http: httpx.AsyncClient) -> None:
    async with Receiver() as rx:
        response = await http.post(
            rx.url + "/a/b?c=d", content=b'{"k":1}', headers={"X-Custom": "Yes"}
        )
    assert response.status_code == 200
    assert response.reason_phrase == "OK"
    [got] = rx.requests
    assert (got.method, got.path, got.body) == ("POST", "/a/b?c=d", b'{"k":1}')
    assert got.headers["x-custom"] == "Yes"
    assert got.received_at > 0


async def test_on_request_sees_each_request_and_its_behavior(http: httpx.AsyncClient) -> None:
    seen: list[tuple[ReceivedRequest, Behavior]] = []
    script = scripted(Respond(503), Respond(200))
    async with Receiver(script, on_request=lambda r, b: seen.append((r, b))) as rx:
        await http.post(rx.url + "/1", content=b"a")
        await http.post(rx.url + "/2", content=b"b")
    assert [(r.path, b) for r, b in seen] == [("/1", Respond(503)), ("/2", Respond(200))]
    assert [r for r, _ in seen] == rx.requests


async def test_respond_sends_its_status_headers_and_body(http: httpx.AsyncClient) -> None:
    async with Receiver(scripted(Respond(418, b"teapot", {"x-extra": "1"}))) as rx:
        response = await http.post(rx.url, content=b"")
    assert response.status_code == 418
    assert response.headers["x-extra"] == "1"
    assert response.content == b"teapot"


async def test_respond_can_wait_before_answering(http: httpx.AsyncClient) -> None:
    async with Receiver(scripted(Respond(204, delay=0.2))) as rx:
        started = asyncio.get_running_loop().time()
        response = await http.post(rx.url, content=b"")
        waited = asyncio.get_running_loop().time() - started
    assert response.status_code == 204
    assert waited >= 0.2


async def test_stream_sends_the_whole_body(http: httpx.AsyncClient) -> None:
    async with Receiver(scripted(Stream(total=100_000, chunk=30_000))) as rx:
        response = await http.post(rx.url, content=b"")
    assert response.status_code == 200
    assert response.content == b"x" * 100_000


async def test_stream_can_stop_short_of_what_it_announces_and_hang() -> None:
    stream = Stream(total=1 << 30, chunk=1000, stop_after=2500)
    received = bytearray()

    async def read_all(response: httpx.Response) -> None:
        async for chunk in response.aiter_raw():
            received.extend(chunk)

    async with (
        Receiver(scripted(stream)) as rx,
        httpx.AsyncClient(timeout=httpx.Timeout(5, read=0.5)) as http,
        http.stream("POST", rx.url, content=b"") as response,
    ):
        assert response.headers["content-length"] == str(1 << 30)
        with pytest.raises(httpx.ReadTimeout):
            await read_all(response)
    assert len(received) == 2500


async def test_requests_on_one_connection_share_the_client_port(
    http: httpx.AsyncClient,
) -> None:
    async with Receiver() as rx:
        await http.post(rx.url, content=b"1")
        await http.post(rx.url, content=b"2")
        async with httpx.AsyncClient() as other:
            await other.post(rx.url, content=b"3")
    one, two, three = (r.client_port for r in rx.requests)
    assert one == two != three
    assert one > 0


async def test_oversized_request_is_refused_unrecorded() -> None:
    async with Receiver() as rx:
        head = f"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {MAX_REQUEST_BYTES + 1}\r\n\r\n"
        answer = await raw_exchange(rx, head.encode())
    assert answer == b""
    assert rx.requests == []


async def test_truncated_request_is_ignored_and_the_receiver_keeps_serving(
    http: httpx.AsyncClient,
) -> None:
    async with Receiver() as rx:
        answer = await raw_exchange(
            rx, b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc"
        )
        assert answer == b""
        assert rx.requests == []
        response = await http.post(rx.url, content=b"ok")
    assert response.status_code == 200
    assert [r.body for r in rx.requests] == [b"ok"]


async def test_drop_closes_without_answering() -> None:
    async with Receiver(scripted(Drop())) as rx:
        answer = await raw_exchange(rx, b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
    assert answer == b""
    assert len(rx.requests) == 1


async def test_url_and_port() -> None:
    async with Receiver() as rx:
        assert rx.port > 0
        assert rx.url == f"http://127.0.0.1:{rx.port}"


async def test_hang_answers_nothing_then_closes() -> None:
    async with Receiver(scripted(Hang(0.2))) as rx:
        answer = await raw_exchange(rx, b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
    assert answer == b""
    assert len(rx.requests) == 1


async def test_leaving_the_block_ends_hung_and_endless_answers() -> None:
    behaviors: list[Behavior] = [
        Hang(3600),
        Stream(total=1 << 30, chunk=10, stop_after=10),
        Respond(delay=3600),
    ]
    arrived = asyncio.Semaphore(0)
    async with httpx.AsyncClient(timeout=60) as http:
        async with Receiver(scripted(*behaviors), on_request=lambda *_: arrived.release()) as rx:
            sends = [asyncio.create_task(http.post(rx.url, content=b"")) for _ in behaviors]
            for _ in behaviors:
                await arrived.acquire()
        results = await asyncio.gather(*sends, return_exceptions=True)
    assert all(isinstance(r, httpx.TransportError) for r in results), results


async def test_a_chunked_body_over_the_limit_is_refused_unrecorded() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_REQUEST_BYTES // 65536 + 2):
            yield b"x" * 65536

    async with Receiver() as rx, httpx.AsyncClient(timeout=10) as http:
        with pytest.raises(httpx.TransportError):
            await http.post(rx.url, content=chunks())
        assert (await http.post(rx.url, content=b"small")).status_code == 200
    assert [r.body for r in rx.requests] == [b"small"]


async def test_malformed_http_is_refused_by_the_parser() -> None:
    """What the old hand-written server accepted (two lengths, `+5`) the parser refuses."""
    async with Receiver() as rx:
        two = await raw_exchange(
            rx, b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"
        )
        plus = await raw_exchange(
            rx, b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: +5\r\n\r\nabcde"
        )
    assert two.startswith(b"HTTP/1.1 400")
    assert plus.startswith(b"HTTP/1.1 400")
    assert rx.requests == []
