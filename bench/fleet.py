"""A small deployment in processes, for the fault campaign: the Temporal dev server on a
SQLite file, `webhooks worker` processes, the registry database, and the means to kill,
restart and stop each of them.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import sys
import tempfile
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import httpx
from temporalio.client import Client

from tests.postgres import PG_BIN, PostgresCluster, free_port
from webhooks.codec import generate_key
from webhooks.config import Settings
from webhooks.core.models import RetrySchedule
from webhooks.dev.devserver import dev_server_command
from webhooks.publisher import WebhookPublisher, connect
from webhooks.registry.models import NewEndpoint
from webhooks.registry.service import EndpointRegistry, open_registry

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class FleetConfig:
    state: Path
    endpoints: int
    workers: int
    http_timeout_seconds: float


class Fleet:
    """Starts everything on enter, stops everything on exit; faults are methods."""

    def __init__(self, config: FleetConfig, receiver_url: str) -> None:
        self.config = config
        self.receiver_url = receiver_url
        self.secrets: dict[str, str] = {}
        """Receiver path segment (`ep-3`) -> the endpoint's signing secret."""
        self.port = free_port()
        self.metrics_port = free_port()
        self.server_metrics: list[str] = []
        """The dev server's /metrics text, read before each restart and at the end (its
        counters restart with it)."""
        self._server: asyncio.subprocess.Process | None = None
        self._workers: list[asyncio.subprocess.Process | None] = [None] * config.workers
        self._client: Client | None = None
        self._publisher: WebhookPublisher | None = None
        self._cluster: PostgresCluster | None = None
        self._registry_cm: AbstractAsyncContextManager[EndpointRegistry] | None = None
        self._env: dict[str, str] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self.registry_kind = "none"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Fleet:
        try:
            await self._start_registry()
            await self._start_server()
            self._client = await connect(self._settings())
            self._registry_cm = open_registry(self._settings(), keys=False)
            registry = await self._registry_cm.__aenter__()
            self._publisher = WebhookPublisher(
                self._client, registry=registry, task_queue=self._settings().task_queue
            )
            await asyncio.gather(*(self._start_worker(i) for i in range(self.config.workers)))
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._registry_cm is not None:
            await self._registry_cm.__aexit__(None, None, None)
        for process in [*self._workers, self._server]:
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        if self._cluster is not None:
            db = str(self._cluster.data / "db")
            stop = ("pg_ctl", "-D", db, "-m", "immediate", "stop")
            await asyncio.to_thread(self._cluster.run, *stop, check=False)
            shutil.rmtree(self._cluster.data, ignore_errors=True)

    @property
    def client(self) -> Client:
        assert self._client is not None
        return self._client

    @property
    def registry_can_stop(self) -> bool:
        return self._cluster is not None

    def _settings(self) -> Settings:
        return Settings(
            temporal_address=f"127.0.0.1:{self.port}",
            task_queue="webhooks",
            database_url=self._env["WEBHOOKS_DATABASE_URL"],
            secret_keys=self._env["WEBHOOKS_SECRET_KEYS"],
            allow_private_destinations=True,
            http_timeout_seconds=self.config.http_timeout_seconds,
        )

    async def _start_registry(self) -> None:
        """The registry on a throwaway PostgreSQL cluster (SQLite without PostgreSQL), with
        one endpoint per receiver path `ep-<n>`."""
        if postgres_available():
            data = Path(tempfile.mkdtemp(prefix="webhooks-chaos-pg-"))
            user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
            if os.geteuid() == 0:
                shutil.chown(data, user, user)
            self._cluster = PostgresCluster(data=data, port=free_port(), user=user)
            initdb = ("initdb", "-D", str(data / "db"), "-A", "trust", "-U", user, "-E", "UTF8")
            await asyncio.to_thread(self._cluster.run, *initdb)
            await asyncio.to_thread(self._cluster.start)
            url = await asyncio.to_thread(self._cluster.new_database)
            self.registry_kind = "PostgreSQL 15"
        else:
            url = f"sqlite:///{self.config.state / 'registry.db'}"
            self.registry_kind = "SQLite (no outage: PostgreSQL is not installed)"
        self._env = {
            "WEBHOOKS_DATABASE_URL": url,
            "WEBHOOKS_SECRET_KEYS": f"chaos:{generate_key()}",
        }
        async with open_registry(self._settings(), migrate=True) as registry:
            for i in range(self.config.endpoints):
                name = f"ep-{i}"
                created = await registry.create(
                    NewEndpoint(
                        id=f"ep_chaos_{i}",
                        account_id="acct_chaos",
                        url=f"{self.receiver_url}/hooks/{name}",
                    )
                )
                self.secrets[name] = created.secret.get_secret_value()

    async def _start_server(self) -> None:
        state = self.config.state
        command = dev_server_command(
            state,
            port=self.port,
            ui_port=free_port(),
            extra=["--headless", "--metrics-port", str(self.metrics_port)],
        )
        log = (state / "temporal.log").open("ab")
        self._server = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True
        )
        for _ in range(600):
            try:
                await Client.connect(f"127.0.0.1:{self.port}")
                return
            except RuntimeError:
                await asyncio.sleep(0.1)
        raise TimeoutError("the dev server did not come up")

    async def _start_worker(self, index: int) -> None:
        env = {
            **os.environ,
            **self._env,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.port}",
            "WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS": "true",
            "WEBHOOKS_HTTP_TIMEOUT_SECONDS": str(self.config.http_timeout_seconds),
            "COLUMNS": "300",
        }
        log = (self.config.state / f"worker-{index}.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from webhooks.cli import main; main()",
            "worker",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        assert process.stdout is not None
        async with asyncio.timeout(120):
            line = await process.stdout.readline()
        if not line.startswith(b"worker polling"):
            raise RuntimeError(f"worker {index} did not start: {line!r}")
        self._workers[index] = process
        # Whatever else it prints goes to its log: a pipe nobody reads fills up and blocks
        # the writer.
        self._drains.add(asyncio.create_task(_copy(process.stdout, log)))

    # -- traffic -----------------------------------------------------------------------

    async def publish(self, endpoint: int, event_id: str, retry: RetrySchedule) -> str:
        assert self._publisher is not None
        return await self._publisher.publish(
            endpoint_id=f"ep_chaos_{endpoint}",
            event_type="chaos.test",
            event_id=event_id,
            data={"n": event_id},
            retry=retry,
        )

    # -- faults ------------------------------------------------------------------------

    async def kill_worker(self, index: int) -> None:
        index %= self.config.workers
        process = self._workers[index]
        assert process is not None
        process.kill()
        await process.wait()
        await self._start_worker(index)

    async def read_server_metrics(self) -> None:
        """Keep the dev server's metrics as they are now (before a restart, at the end)."""
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")
            self.server_metrics.append(response.text)
        except httpx.HTTPError as err:
            print(f"could not read the server's metrics: {err}", file=sys.stderr)

    async def kill_server(self, down_seconds: float = 3.0) -> None:
        assert self._server is not None
        await self.read_server_metrics()
        self._server.kill()
        await self._server.wait()
        await asyncio.sleep(down_seconds)
        await self._start_server()

    async def rolling_restart(self) -> None:
        """SIGTERM each worker in turn, wait for its clean exit, start its replacement."""
        for index, process in enumerate(self._workers):
            assert process is not None
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(self.config.http_timeout_seconds + 60):
                code = await process.wait()
            if code != 0:
                raise RuntimeError(f"worker {index} exited {code} after SIGTERM")
            await self._start_worker(index)

    async def stop_registry(self, seconds: float) -> None:
        assert self._cluster is not None
        await asyncio.to_thread(self._cluster.stop)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(self._cluster.start)

    def worker_rss_mb(self) -> list[float]:
        sizes: list[float] = []
        for process in self._workers:
            if process is None or process.returncode is not None:
                continue
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(round(int(line.split()[1]) / 1024, 1))
        return sizes


async def _copy(source: asyncio.StreamReader, sink: BinaryIO) -> None:
    while chunk := await source.read(65536):
        sink.write(chunk)
        sink.flush()


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists()
