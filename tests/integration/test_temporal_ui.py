"""The Temporal Web UI shows a delivery readably: headless Chromium (Debian's) opens the
timeline of a delivery with three attempts and finds the attempt and timer summaries and the
current details. The screenshot is kept in tests/artifacts/ (and docs/img/ holds a copy)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.browser import ARGS, ARTIFACTS, CHROMIUM
from tests.conftest import BIN, EndpointPublisher
from tests.integration import BOUND_SECONDS, fast, unique
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.core.models import DeliveryResult, DeliveryState
from webhooks.dev.receiver import Receiver, Respond, scripted
from worker import running_worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
async def with_ui() -> AsyncIterator[tuple[WorkflowEnvironment, int]]:
    """A dev server of its own, with the Web UI on (the session's runs without it)."""
    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
        ui=True,
        ui_port=ui_port,
    )
    yield env, ui_port
    await env.shutdown()


async def shown(page: Page) -> str:
    """The text the page renders, including the frames the UI renders markdown in."""
    texts = []
    for frame in page.frames:
        with contextlib.suppress(PlaywrightError):  # a frame navigating away
            texts.append(await frame.evaluate("document.body ? document.body.innerText : ''"))
    return "\n".join(texts)


async def visible(page: Page, text: str) -> str:
    """Wait until the page shows `text`; return all it shows then."""
    deadline = asyncio.get_running_loop().time() + BOUND_SECONDS
    while text not in (rendered := await shown(page)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{text!r} never shown; the page shows: {rendered[:3000]}")
        await asyncio.sleep(0.25)
    return rendered


async def test_the_timeline_tells_the_attempts(
    with_ui: tuple[WorkflowEnvironment, int], settings: Settings, publisher: EndpointPublisher
) -> None:
    env, ui_port = with_ui
    endpoint_id = unique("ep_ui")
    async with (
        running_worker(env.client, settings),  # the UI's query for current details needs it
        Receiver(scripted(Respond(500), Respond(503))) as rx,
    ):
        endpoints = publisher.on(env.client, settings.task_queue)
        delivery_id = await endpoints.publish(
            endpoint_id=endpoint_id,
            url=rx.url,
            event_type="stream.settled.demo",
            data={"note": "payload-marker"},
            retry=fast(0, 1, 1),
        )
        handle = env.client.get_workflow_handle(delivery_id, result_type=DeliveryResult)
        result = await asyncio.wait_for(handle.result(), BOUND_SECONDS)
        assert result.state is DeliveryState.DELIVERED
        assert result.attempts == 3
        run_id = (await handle.describe()).run_id
        history = await handle.fetch_history()
        summaries = [
            e.user_metadata.summary.data.decode() + e.user_metadata.details.data.decode()
            for e in history.events
            if e.HasField("user_metadata")
        ]
        assert len(summaries) == 1 + 3 + 2  # the start, three attempts, two timers
        url = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/{delivery_id}/{run_id}"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1600, "height": 1000})
                texts = {
                    "timeline": ("retry 2 at", "after HTTP 500 in", "retry 3 at", "after HTTP 503"),
                    "history": ("attempt 1", "attempt 2", "attempt 3", "after HTTP 500 in"),
                    "user-metadata": ("delivered", "after 3 attempts", "last attempt: HTTP 200"),
                }
                seen = {}
                for view, expected in texts.items():
                    await page.goto(f"{url}/{view}", wait_until="networkidle")
                    for text in expected:
                        seen[view] = await visible(page, text)
                    await page.screenshot(path=str(ARTIFACTS / f"temporal-ui-{view}.png"))
            finally:
                await browser.close()
    # Static details: who and what the delivery is for, with the URL's host only.
    assert f"endpoint: {endpoint_id}" in seen["user-metadata"]
    assert "host: 127.0.0.1" in seen["user-metadata"]
    # No summary or detail carries the payload (the UI's Input panel shows it, as always).
    assert "payload-marker" not in "".join(summaries)
    for view in texts:
        assert (ARTIFACTS / f"temporal-ui-{view}.png").stat().st_size > 10_000
