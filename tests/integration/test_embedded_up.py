"""`orchestrator up` with no NATS URL: the embedded server, /healthz, a clean shutdown."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

from infra.bus.embedded import free_port
from tests.support import eventually, get_json

ROOT = Path(__file__).resolve().parents[2]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_up_serves_healthz_on_the_embedded_server_and_stops_cleanly(tmp_path):
    http_port, nats_port = free_port(), free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no ORCH_NATS_URL: embedded
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "up", "--http-port", str(http_port),
        "--embedded-nats-port", str(nats_port), "--data-dir", str(tmp_path / "data"),
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        async def healthy() -> bool:
            try:
                return (await get_json(f"http://127.0.0.1:{http_port}/healthz", 2))[0] == 200
            except OSError:
                return False

        await eventually(healthy, timeout=30, what="/healthz answered")
        assert port_open(nats_port)
        config = (tmp_path / "data" / "nats" / "nats-server.conf").read_text()
        assert "sync_interval: always" in config  # durability first by default
        assert "listen: 127.0.0.1:" in config  # loopback only

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert not port_open(nats_port)  # the embedded server went down with it
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
