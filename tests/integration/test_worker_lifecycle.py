"""A worker's life in a deployment: rolling restarts and workers starting together.

- SIGTERM during a burst of slow sends: the worker stops polling, lets every in-flight send
  finish, exits 0; nothing is sent twice and nothing is recorded as failed.
- Two workers starting together on a fresh namespace both start (they race to register the
  search attributes).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import BIN
from tests.integration import BOUND_SECONDS, eventually, fast, settled, unique
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.ids import delivery_id
from webhooks.core.models import Attempt, DeliveryResult, DeliveryState, Outcome
from webhooks.dev.receiver import Behavior, ReceivedRequest, Receiver, Respond, Stream
from webhooks.publisher import WebhookPublisher
from worker import graceful_shutdown_timeout, running_worker
from workflows.delivery import WebhookDelivery

REPO = Path(__file__).resolve().parents[2]
SLOW_SEND = Stream(total=24, chunk=1, interval=0.125)
"""A 200 whose body takes about 3 s to arrive: the send is in flight for that long."""


async def start_cli_worker(client: Client, settings: Settings) -> asyncio.subprocess.Process:
    """`webhooks worker` in its own process, exactly as deployed, once it polls."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from webhooks.cli import main; main()",
        "worker",
        cwd=REPO,
        env=cli_env(client, settings) | {"COLUMNS": "300"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    async with asyncio.timeout(60):
        line = await process.stdout.readline()
    assert line.startswith(b"worker polling"), f"worker did not start: {line!r}"
    return process


def cli_env(client: Client, settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        "WEBHOOKS_TASK_QUEUE": settings.task_queue,
        "WEBHOOKS_SECRETS_FILE": str(settings.secrets_file),
        "WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS": "true",
        "WEBHOOKS_HTTP_TIMEOUT_SECONDS": str(settings.http_timeout_seconds),
        "WEBHOOKS_CIRCUIT_ENABLED": "false",
    }


async def test_sigterm_lets_in_flight_sends_finish(
    client: Client, settings: Settings, publisher: WebhookPublisher
) -> None:
    settings = settings.model_copy(update={"http_timeout_seconds": 30})
    endpoint, events = unique("ep_term"), [unique("evt") for _ in range(8)]
    ids = [delivery_id(endpoint, e) for e in events]

    def respond(request: ReceivedRequest) -> Behavior:
        return SLOW_SEND if request.path == "/slow" else Respond(200)

    async with Receiver(respond) as rx:
        process = await start_cli_worker(client, settings)
        try:
            for event in events:
                await publisher.publish(
                    endpoint_id=endpoint,
                    url=rx.url + "/slow",
                    event_type="stream.settled",
                    event_id=event,
                    data=settled(),
                    retry=fast(0, 1, 1),
                )

            # Every send is mid-response when the deploy's SIGTERM arrives.
            async def arrived() -> int:
                return len(rx.requests)

            await eventually(arrived, lambda n: n == len(ids), within=60)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(BOUND_SECONDS + settings.http_timeout_seconds):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert code == 0
        # Whatever the stopped worker left unfinished, a new worker completes.
        async with running_worker(client, settings):
            results = [
                await client.get_workflow_handle(i, result_type=DeliveryResult).result()
                for i in ids
            ]
            tables: list[list[Attempt]] = [
                await client.get_workflow_handle(i).query(WebhookDelivery.attempts) for i in ids
            ]
        per_id = Counter(r.headers["webhook-id"] for r in rx.requests)
    assert [r.state for r in results] == [DeliveryState.DELIVERED] * len(ids)
    assert per_id == dict.fromkeys(ids, 1)  # 0 re-sends
    for table in tables:  # 0 internal failures: one clean, delivered attempt each
        assert [(a.outcome, a.error_kind) for a in table] == [(Outcome.DELIVERED, None)]


async def test_a_second_sigterm_exits_at_once(
    client: Client, settings: Settings, publisher: WebhookPublisher
) -> None:
    settings = settings.model_copy(update={"http_timeout_seconds": 30})
    endpoint = unique("ep_term2")
    async with Receiver(lambda _: Stream(total=600, chunk=1, interval=0.1)) as rx:
        process = await start_cli_worker(client, settings)
        try:
            delivery = await publisher.publish(
                endpoint_id=endpoint,
                url=rx.url,
                event_type="stream.settled",
                data=settled(),
                retry=fast(0, 1),
            )

            async def arrived() -> int:
                return len(rx.requests)

            await eventually(arrived, lambda n: n == 1, within=60)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert process.returncode is None  # still finishing the 60 s send
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(BOUND_SECONDS):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await client.get_workflow_handle(delivery).terminate("test done")
    assert code == 128 + signal.SIGTERM


def test_shutdown_waits_one_whole_attempt(settings: Settings) -> None:
    timeout = graceful_shutdown_timeout(settings.model_copy(update={"http_timeout_seconds": 42}))
    assert timeout.total_seconds() > 42


async def test_two_worker_processes_start_together_and_both_serve(settings: Settings) -> None:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=pydantic_data_converter,
    ) as bare:
        client = bare.client
        # Started together: both race to register the search attributes.
        workers = await asyncio.gather(*(start_cli_worker(client, settings) for _ in range(2)))
        try:

            async def registered() -> set[str]:
                listed = await client.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace=client.namespace)
                )
                return set(listed.custom_attributes)

            await eventually(registered, lambda names: {k.name for k in sa.ALL} <= names)
            async with Receiver() as rx:
                publisher = WebhookPublisher(client, task_queue=settings.task_queue)
                ids = [
                    await publisher.publish(
                        endpoint_id=unique("ep_pair"), url=rx.url, event_type="t.x", data={}
                    )
                    for _ in range(6)
                ]
                for i in ids:
                    handle = client.get_workflow_handle(i, result_type=DeliveryResult)
                    async with asyncio.timeout(60):
                        assert (await handle.result()).state is DeliveryState.DELIVERED
            # Neither refused to start: both still run, and stop cleanly.
            assert [w.returncode for w in workers] == [None, None]
            for w in workers:
                w.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                codes = [await w.wait() for w in workers]
        finally:
            for w in workers:
                if w.returncode is None:
                    w.kill()
                    await w.wait()
    assert codes == [0, 0]
