"""`orchestrator up` that cannot have its ports, or its NATS, says so plainly.

A second `up` whose embedded server could not listen used to log "embedded nats-server
started" and serve the first deployment's log as a follower.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import infra.bus.embedded
from infra.bus.embedded import EmbeddedNats, PortInUse, free_port
from services.cli.main import EXIT_PORT_IN_USE
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]


async def _up(tmp_path: Path, *flags: str) -> asyncio.subprocess.Process:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "up", "--data-dir", str(tmp_path / "data"),
        *flags, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


async def _refused(process: asyncio.subprocess.Process) -> list[str]:
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == EXIT_PORT_IN_USE, stderr
    return stderr.decode().strip().splitlines()


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


async def test_up_refuses_an_embedded_port_held_by_another_nats_server(
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    process = await _up(tmp_path, "--embedded-nats-port", str(nats_server.port),
                        "--http-port", str(free_port()))
    lines = await _refused(process)
    assert len(lines) == 1, lines
    assert str(nats_server.port) in lines[0]
    assert "ORCH_EMBEDDED_NATS_PORT" in lines[0]
    assert not (tmp_path / "data" / "nats" / "jetstream").exists()  # nothing started


async def test_up_refuses_a_taken_http_port(tmp_path: Path, listening_port: int) -> None:
    process = await _up(tmp_path, "--embedded-nats-port", str(free_port()),
                        "--http-port", str(listening_port), "--log-level", "ERROR")
    lines = await _refused(process)
    assert len(lines) == 1, lines
    assert str(listening_port) in lines[0] and "ORCH_HTTP_PORT" in lines[0]


def test_a_server_that_lost_the_race_for_its_port_is_not_taken_for_the_other(
        nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The port is taken between the check and the start: the answering server is the
    # other one, and only our own server's ports file would prove it is ours.
    monkeypatch.setattr(infra.bus.embedded, "check_port_free", lambda port: None)
    second = EmbeddedNats(tmp_path / "second", port=nats_server.port, sync="default")
    with pytest.raises(PortInUse):
        second.start()
    assert not second.running


async def test_up_says_within_seconds_that_its_nats_is_unreachable(tmp_path: Path) -> None:
    closed = free_port()
    process = await _up(tmp_path, "--nats-url", f"nats://127.0.0.1:{closed}",
                        "--http-port", str(free_port()), "--auth", "off")
    assert process.stderr is not None
    seen: list[str] = []

    async def warned() -> bool:
        try:
            line = await asyncio.wait_for(process.stderr.readline(), 5)  # type: ignore[union-attr]
        except TimeoutError:
            return False
        seen.append(line.decode())
        return "cannot reach NATS at" in seen[-1] and str(closed) in seen[-1]

    try:
        await eventually(warned, timeout=30, what="the unreachable NATS reported")
        assert "ORCH_NATS_URL" in seen[-1]
        assert not any("Traceback" in line for line in seen)
    finally:
        process.kill()
        await process.wait()
