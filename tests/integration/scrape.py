"""A worker whose client serves Prometheus metrics, and reading them back like Prometheus."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from temporalio.client import Client

from tests.integration import BOUND_SECONDS
from webhooks.config import Settings
from webhooks.publisher import connect


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


async def metered(client: Client, settings: Settings) -> tuple[Client, Settings]:
    """A client of the same server whose runtime serves /metrics on a free port."""
    target = client.service_client.config.target_host
    address = f"127.0.0.1:{free_port()}"
    settings = settings.model_copy(
        update={"temporal_address": target, "metrics_bind_address": address}
    )
    return await connect(settings), settings


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> list[Sample]:
    """Prometheus' text format, names exactly as exposed (Temporal's counters have no
    `_total` suffix unless named so, and client libraries would add one)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, number = match.groups()
        samples.append(Sample(name, dict(_LABEL.findall(labels or "")), float(number)))
    return samples


async def scrape(settings: Settings) -> list[Sample]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{settings.metrics_bind_address}/metrics")
    response.raise_for_status()
    return parse(response.text)


async def scrape_until(
    settings: Settings, until: Callable[[list[Sample]], bool], within: float = BOUND_SECONDS
) -> list[Sample]:
    """Scrape until `until` holds (the runtime exports on its own schedule)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        samples = await scrape(settings)
        if until(samples):
            return samples
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"metrics never matched; last scrape: {samples!r}")
        await asyncio.sleep(0.2)


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def named(samples: list[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.name == name]
