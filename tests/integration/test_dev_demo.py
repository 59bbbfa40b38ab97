"""The README's first command: `webhooks dev --demo` runs the dev server and a worker,
delivers the demo event through its retries, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from tests.conftest import BIN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_dev_demo_delivers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOKS_", "TEMPORAL_"))}
    command = [
        str(BIN / "webhooks"),
        "dev",
        "--demo",
        "--state-dir",
        str(tmp_path / "state"),
        "--port",
        str(free_port()),
        "--ui-port",
        str(free_port()),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        # Bounded by the suite's per-test timeout; the demo delivers within ~20 s.
        for line in process.stdout:
            lines.append(line)
            if "attempts; Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "Web UI: http://127.0.0.1:" in output
        assert output.count("signature ok") == 4, output
        assert "BAD SIGNATURE" not in output
        assert "delivered after 4 attempts" in output, output
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopped" in rest
    assert (tmp_path / "state" / "temporal.db").exists()
