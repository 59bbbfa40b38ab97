"""`BulkDeadLetterAction`: a durable, rate-limited bulk redeliver/discard over a filter or
a list of ids, with progress, that resumes after a worker restart and never acts twice."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from temporalio.client import Client

from tests.conftest import EndpointPublisher
from tests.console import dead_letters, most_in_one_second, signalled_at, unique
from tests.integration import BOUND_SECONDS, Cli, eventually
from webhooks.config import Settings
from webhooks.core.bulk import BulkAction, BulkFilter, BulkProgress, BulkRequest
from webhooks.core.filters import DeadLetterFilter
from webhooks.core.models import DeadLetterState, DeadLetterView
from webhooks.dev.receiver import ReceivedRequest, Receiver, Respond
from webhooks.ops import bulk
from webhooks.ops.errors import ConflictError, NotFoundError
from worker import running_worker
from workflows.dead_letter import DeadLetter


class Switch:
    """Fails until flipped; records the requests it accepted."""

    def __init__(self) -> None:
        self.status = 500
        self.ok: list[ReceivedRequest] = []

    def __call__(self, request: ReceivedRequest) -> Respond:
        if self.status == 200:
            self.ok.append(request)
        return Respond(self.status)


async def views(client: Client, ids: list[str]) -> list[DeadLetterView]:
    return list(
        await asyncio.gather(
            *(
                client.get_workflow_handle_for(DeadLetter.run, i).query(DeadLetter.entry)
                for i in ids
            )
        )
    )


async def test_the_cli_job_redelivers_every_match_once_at_its_rate(
    client: Client, worker: None, publisher: EndpointPublisher, settings: Settings
) -> None:
    endpoint, rate, total = unique("ep_job"), 10, 30
    switch = Switch()
    async with Receiver(switch) as rx:
        ids = await dead_letters(client, publisher, rx.url, endpoint, total)
        other = await dead_letters(client, publisher, rx.url, unique("ep_other"), 2)
        switch.status = 200
        cli = Cli(client, settings)
        result = await cli.json(
            "dlq", "redeliver", "--endpoint", endpoint, "--job", "--rate", str(rate), "--by", "ops"
        )
        progress = BulkProgress.model_validate(result["progress"])
        assert (progress.total, progress.signalled, progress.failed) == (total, total, 0)
        assert progress.done
        assert not progress.cancelled

        async def delivered() -> int:
            return len(switch.ok)

        await eventually(delivered, lambda n: n >= total)
    assert Counter(r.headers["webhook-id"] for r in switch.ok) == dict.fromkeys(
        {i.removesuffix("-dlq-0") for i in ids}, 1
    )
    assert {(v.state, v.acted_by) for v in await views(client, ids)} == {
        (DeadLetterState.REDELIVERED, "ops")
    }
    assert {v.state for v in await views(client, other)} == {DeadLetterState.OPEN}
    # The job's rate is the pace of its signals, as the server took them; the sends after
    # them pass through the worker's queue, which a busy worker releases in bursts.
    signals = await signalled_at(client, ids, "redeliver")
    # Sent at least 1/rate apart; up to half a second of RPC latency may close them up.
    assert most_in_one_second(signals, window=2.0) <= 2 * rate + rate // 2 + 1
    assert max(signals) - min(signals) >= (total - 1) / rate * 0.8
    arrivals = [r.received_at for r in switch.ok]
    assert max(arrivals) - min(arrivals) >= (total - 1) / rate * 0.8


async def test_a_redelivery_that_fails_again_is_not_redelivered_by_the_same_job(
    client: Client, worker: None, publisher: EndpointPublisher, settings: Settings
) -> None:
    endpoint, total = unique("ep_again"), 8
    async with Receiver(lambda _: Respond(500)) as rx:
        await dead_letters(client, publisher, rx.url, endpoint, total)
        job_id = await bulk.start_bulk(
            client,
            settings,
            BulkRequest(
                action=BulkAction.REDELIVER,
                filter=BulkFilter(endpoint_id=endpoint),
                per_second=50,
                requested_by="ops",
            ),
        )
        result = await client.get_workflow_handle(job_id, result_type=BulkProgress).result()
        assert (result.total, result.signalled) == (total, total)
        # Each redelivery failed again and opened a second dead letter, which stays open.
        again = DeadLetterFilter(endpoint_id=endpoint)

        async def reopened() -> int:
            return (await client.count_workflows(again.query())).count

        assert await eventually(reopened, lambda n: n == total) == total
        assert len(rx.requests) == 2 * total
    progress = await bulk.job_progress(client, job_id)
    assert progress == result
    assert job_id in {j.job_id for j in await bulk.list_jobs(client)}


async def test_a_job_over_ids_survives_a_worker_restart_without_duplicates(
    client: Client, publisher: EndpointPublisher, settings: Settings
) -> None:
    endpoint, total = unique("ep_restart"), 16
    switch = Switch()
    async with Receiver(switch) as rx:
        async with running_worker(client, settings):
            ids = await dead_letters(client, publisher, rx.url, endpoint, total)
            switch.status = 200
            job_id = await bulk.start_bulk(
                client,
                settings,
                BulkRequest(
                    action=BulkAction.DISCARD, ids=ids, per_second=4, requested_by="ops", note="dup"
                ),
            )

            async def handled() -> int:
                return (await bulk.job_progress(client, job_id)).handled

            # Mid-way (progress is counted per batch; watch the dead letters instead).
            async def discarded() -> int:
                return sum(v.state is DeadLetterState.DISCARDED for v in await views(client, ids))

            await eventually(discarded, lambda n: n >= 4)
        # The worker is gone mid-job; a new one picks the job up where its heartbeat was.
        async with running_worker(client, settings):
            result = await asyncio.wait_for(
                client.get_workflow_handle(job_id, result_type=BulkProgress).result(),
                BOUND_SECONDS * 2,
            )
            assert await handled() == total
            final = await views(client, ids)
        assert result.signalled + result.already_closed == total
        assert result.failed == 0
    assert switch.ok == []  # discarded, never sent
    assert {(v.state, v.acted_by, v.note) for v in final} == {
        (DeadLetterState.DISCARDED, "ops", "dup")
    }


async def test_a_cancelled_job_stops_and_finished_jobs_refuse_it(
    client: Client, worker: None, publisher: EndpointPublisher, settings: Settings
) -> None:
    endpoint = unique("ep_cancel")
    async with Receiver(lambda _: Respond(500)) as rx:
        ids = await dead_letters(client, publisher, rx.url, endpoint, 6)
        job_id = await bulk.start_bulk(
            client,
            settings,
            BulkRequest(action=BulkAction.DISCARD, ids=ids, per_second=0.5, requested_by="ops"),
        )
        await bulk.cancel_job(client, job_id)
        result = await client.get_workflow_handle(job_id, result_type=BulkProgress).result()
    assert result.cancelled
    assert result.done
    assert result.signalled < 6
    with pytest.raises(ConflictError, match="has finished"):
        await bulk.cancel_job(client, job_id)
    with pytest.raises(NotFoundError):
        await bulk.job_progress(client, ids[0])  # a dead letter, not a job


async def test_a_job_needs_a_filter_or_ids(client: Client, settings: Settings) -> None:
    with pytest.raises(ValueError, match="needs a filter or a list of ids"):
        await bulk.start_bulk(
            client, settings, BulkRequest(action=BulkAction.REDELIVER, requested_by="ops")
        )
    cli = Cli(client, settings)
    refused = await cli("dlq", "redeliver", "--job")
    assert refused.exit_code == 2
    assert "at least one filter such as --endpoint" in refused.output
