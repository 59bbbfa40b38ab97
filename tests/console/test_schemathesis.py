"""Schemathesis against the OpenAPI document, on a real console with a real backend (the
session's dev server, a SQLite registry): no 5xx, every response as documented."""

from __future__ import annotations

import asyncio
import sysconfig
from pathlib import Path

from tests.console.conftest import bearer
from webhooks.core.roles import Role

SCHEMATHESIS = Path(sysconfig.get_path("scripts")) / "schemathesis"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


async def test_the_api_holds_to_its_schema_and_never_answers_5xx(
    console_url: str, backend_worker: None, tmp_path: Path
) -> None:
    token = bearer(Role.ADMIN)["authorization"]
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{console_url}/api/v1/openapi.json",
        "--url",
        console_url,
        "--header",
        f"Authorization: {token}",
        "--checks",
        CHECKS,
        "--phases",
        "fuzzing",
        "--max-examples",
        "10",
        "--seed",
        "13",
        "--request-timeout",
        "60",
        # A bulk job over a random filter would act on other tests' dead letters.
        "--exclude-path",
        "/api/v1/dead-letters/bulk",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    async with asyncio.timeout(600):
        output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "No issues found" in text or "passed" in text, text
