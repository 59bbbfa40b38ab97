"""Run `webhooks publish` many times, as a script would, and count the exit codes.

    .venv/bin/python -m bench.publish_loop [--runs 300] [--parallel 2]

Each run is a fresh process against one embedded dev server with a worker, publishing a
distinct event. Every exit code must be 0 and every event delivered: a CLI that succeeds
and then aborts in interpreter teardown (the SDK's runtime threads racing finalization)
would show up here as a -6 (SIGABRT).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from webhooks.codec import generate_key
from webhooks.config import Settings
from webhooks.core import search_attributes as sa
from webhooks.dev.devserver import SQLITE_PRAGMAS, temporal_binary
from webhooks.dev.receiver import Receiver
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import open_registry
from worker import running_worker

DATA = json.dumps({"note": "publish loop"})
ENDPOINT = "ep_loop"


async def publish_once(env: dict[str, str], n: int) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from webhooks.cli import main; main()",
        "publish",
        "--endpoint-id",
        ENDPOINT,
        "--event-type",
        "loop.test",
        "--event-id",
        f"evt_loop_{n}",
        "--data",
        DATA,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, (out + err).decode(errors="replace")[-300:]


async def run(runs: int, parallel: int) -> int:
    with tempfile.TemporaryDirectory(prefix="webhooks-loop-") as tmp:
        async with (
            await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_binary(),
                search_attributes=sa.ALL,
                data_converter=pydantic_data_converter,
                dev_server_database_filename=str(Path(tmp) / "temporal.sqlite"),
                dev_server_extra_args=SQLITE_PRAGMAS,
            ) as temporal,
            Receiver() as rx,
        ):
            keys = f"loop:{generate_key()}"
            settings = Settings(
                task_queue=f"loop-{uuid.uuid4().hex[:6]}",
                database_url=f"sqlite:///{Path(tmp) / 'registry.db'}",
                secret_keys=keys,
                allow_private_destinations=True,
            )
            # `webhooks publish` names a registry endpoint: the loop's one, at the receiver.
            # The publishing processes get the database, not the key ring: they hold no secrets.
            async with open_registry(settings, migrate=True) as registry:
                await registry.create(NewEndpoint(id=ENDPOINT, account_id="acct_loop", url=rx.url))
            env = {
                **os.environ,
                "TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
                "WEBHOOKS_TASK_QUEUE": settings.task_queue,
                "WEBHOOKS_DATABASE_URL": settings.registry_url(),
                "WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS": "true",
            }
            codes: Counter[int] = Counter()
            failures: list[str] = []
            slots = asyncio.Semaphore(parallel)
            started = time.monotonic()

            async def one(n: int) -> None:
                async with slots:
                    code, output = await publish_once(env, n)
                codes[code] += 1
                if code != 0:
                    failures.append(f"run {n}: exit {code}: {output}")
                done = sum(codes.values())
                if done % 25 == 0:  # a run cut short still says how far it got
                    tally = ", ".join(f"{c}: {k}" for c, k in sorted(codes.items()))
                    print(f"after {done} runs, exit codes {tally}", flush=True)

            async with running_worker(temporal.client, settings):
                await asyncio.gather(*(one(n) for n in range(runs)))
                deadline = time.monotonic() + 60
                while len({r.headers["webhook-id"] for r in rx.requests}) < runs:
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
            delivered = len({r.headers["webhook-id"] for r in rx.requests})
    print(f"runs: {runs} in {time.monotonic() - started:.0f} s ({parallel} at a time)")
    print("exit codes: " + ", ".join(f"{code}: {n}" for code, n in sorted(codes.items())))
    print(f"events delivered: {delivered} of {runs}")
    for line in failures[:10]:
        print(line)
    ok = codes == Counter({0: runs}) and delivered == runs
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(run(args.runs, args.parallel)))


if __name__ == "__main__":
    main()
