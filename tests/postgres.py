"""A throwaway PostgreSQL 15 cluster for the tests (a pytest plugin, see tests/conftest.py).

Debian's server refuses to run as root, so the cluster is created and run as the
`postgres` user in a temporary folder it owns, listening on a free local port with its
unix socket in that folder, and stopped at the end of the session. Without PostgreSQL
installed the tests that need it skip, except on CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("WEBHOOKS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PostgresCluster:
    """A running cluster: `url` for SQLAlchemy, and stop/start to simulate an outage."""

    data: Path
    port: int
    user: str

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self.run(
            "pg_ctl", "-D", str(self.data / "db"), "-l", str(self.data / "log"), "-w",
            "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data / "db"), "-m", "fast", "-w", "stop")

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.run("createdb", "-h", str(self.data), "-p", str(self.port), name)
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def dump(self, url: str) -> str:
        """`pg_dump` of the database at `url`, as text."""
        name = url.rsplit("/", 1)[1]
        return self.run("pg_dump", "-h", str(self.data), "-p", str(self.port), name).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    if not (PG_BIN / "initdb").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL 15 is required on CI and missing at {PG_BIN}")
        pytest.skip(f"PostgreSQL 15 is not installed at {PG_BIN}")
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    data = Path(tempfile.mkdtemp(prefix="webhooks-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, user, user)
    cluster = PostgresCluster(data=data, port=free_port(), user=user)
    cluster.run("initdb", "-D", str(data / "db"), "-A", "trust", "-U", user, "-E", "UTF8")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.run("pg_ctl", "-D", str(data / "db"), "-m", "immediate", "stop", check=False)
        shutil.rmtree(data, ignore_errors=True)
