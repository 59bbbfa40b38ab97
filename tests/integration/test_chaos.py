"""The CI-sized fault campaign (`python -m bench.chaos --ci`): a few hundred deliveries
through a flaky receiver, one worker SIGKILL, a dev server SIGKILL and restart, and a SIGTERM
rolling restart of both workers, with the full campaign's checks, the circuit's included: no
delivery was held more than 10 s while its endpoint's circuit was closed (the stall of issue
11: healthy endpoints held for a maximum cooldown after a restart).
Everything runs in its own processes (`bench.fleet`), apart from this test's dev server."""

from __future__ import annotations

import pytest

from bench.chaos import REPEATED_TASK_ATTEMPTS, Config, campaign, render
from bench.waits import EXCESS_BOUND_SECONDS


@pytest.mark.timeout(600)
async def test_the_ci_sized_campaign_loses_nothing_and_explains_every_duplicate() -> None:
    config = Config.ci()
    report = await campaign(config)
    print("\n" + render(report))
    assert [name for _, name in report.faults] == [
        "SIGKILL worker 0",
        "SIGKILL dev server",
        "SIGTERM rolling restart",
    ]
    assert report.published == report.events == config.events
    assert report.missing == []
    assert report.running_after_drain == 0
    assert report.delivered + report.dead_lettered == report.events
    assert report.delivered > report.events // 2  # the flaky mix still lets most through
    assert report.unverified_2xx == 0
    assert report.unexplained_duplicates == []
    assert sum(report.duplicate_causes.values()) == report.duplicates
    assert report.workflow_task_attempts["1"] > report.events  # the metrics were read
    assert report.workflow_task_attempts[f">{REPEATED_TASK_ATTEMPTS}"] == 0
    assert report.worker_rss_mb  # sampled at start and end
    # The circuit never held a delivery while it was closed (beyond the wake after closing).
    assert report.waits.waits > report.events
    assert report.waits.holds > 0  # the endpoint down for 15 s opens its circuit
    assert report.waits.max_hold_while_closed_seconds <= EXCESS_BOUND_SECONDS
    assert report.ok
