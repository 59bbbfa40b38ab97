"""A worker in its own process, for the crash test to SIGKILL.

    TEMPORAL_ADDRESS=127.0.0.1:7233 WEBHOOKS_TASK_QUEUE=... \
        WEBHOOKS_DATABASE_URL=... WEBHOOKS_SECRET_KEYS=... \
        python -m tests.integration.worker_process

Configured from the environment exactly like `webhooks worker`; prints `ready` once polling.
"""

from __future__ import annotations

import asyncio

from webhooks.config import Settings
from webhooks.publisher import connect
from worker import running_worker


async def main() -> None:
    settings = Settings()
    client = await connect(settings)
    async with running_worker(client, settings):
        print("ready", flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main())
