"""`webhooks console`: serve until terminated; make password hashes and tokens."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from argon2 import PasswordHasher
from temporalio.client import Client
from typer.testing import CliRunner

from webhooks.cli import app
from webhooks.server.auth import hash_token


def test_hash_password_prints_an_argon2_hash_and_not_the_password() -> None:
    result = CliRunner().invoke(
        app, ["console", "hash-password"], input="s3cret-pass\ns3cret-pass\n"
    )
    assert result.exit_code == 0, result.output
    digest = result.stdout.strip().splitlines()[-1]
    assert digest.startswith("$argon2id$")
    assert PasswordHasher().verify(digest, "s3cret-pass")
    assert "s3cret-pass" not in result.stdout.replace("Password", "")


def test_new_token_prints_it_once_with_its_hash() -> None:
    result = CliRunner().invoke(
        app, ["console", "new-token", "--name", "backend", "--role", "admin", "--json"]
    )
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["token"].startswith("wht_")
    assert made["entry"] == {
        "name": "backend",
        "token_hash": hash_token(made["token"]),
        "role": "admin",
    }
    plain = CliRunner().invoke(app, ["console", "new-token", "--name", "ops"])
    assert "token (shown once): wht_" in plain.stdout
    assert '"role": "viewer"' in plain.stdout


async def test_the_command_serves_until_terminated(client: Client, tmp_path: Path) -> None:
    token, digest = (
        "wht_cli-test-token-0123456789abcdef",
        hash_token("wht_cli-test-token-0123456789abcdef"),
    )
    env = os.environ | {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "WEBHOOKS_CONSOLE__TOKENS": json.dumps(
            [{"name": "cli", "token_hash": digest, "role": "viewer"}]
        ),
        "WEBHOOKS_STATE_DIR": str(tmp_path),
        "COLUMNS": "300",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from webhooks.cli import main; main()",
        "console",
        "--port",
        "0",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            first = (await process.stdout.readline()).decode()
        url = first.split()[-1]
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.get(
                url + "/api/v1/deliveries", headers={"authorization": f"Bearer {token}"}
            )
        assert response.status_code == 200
        assert "items" in response.json()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    assert process.returncode == 0, err
    assert token not in (out + err).decode()


def test_a_bad_users_file_is_a_clear_error(tmp_path: os.PathLike[str]) -> None:
    users = os.path.join(tmp_path, "users.json")
    with open(users, "w") as f:
        json.dump({"users": [{"name": "x", "password_hash": "h", "role": "root"}]}, f)
    result = CliRunner().invoke(
        app, ["console", "--port", "0"], env={"WEBHOOKS_CONSOLE__USERS_FILE": users}
    )
    assert result.exit_code == 2
    assert "is not a valid users file: users.0.role" in result.output
