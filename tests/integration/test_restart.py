"""kill -9 the orchestrator and start it again: the projection is rebuilt, equal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.embedded import free_port
from sdk.agent import AgentClient
from tests.support import eventually, get_json, registration, request

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_FIELDS = ("last_heartbeat_at", "load", "running")


class OrchestratorProcess:
    """`orchestrator up` in a process of its own, against the test's nats-server."""

    def __init__(self, nats_url: str, prefix: str, log_path: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "ORCH_NATS_URL": nats_url,
            "ORCH_SUBJECT_PREFIX": prefix,
            "ORCH_HTTP_PORT": str(self.port),
            "ORCH_HEARTBEAT_INTERVAL": "0.1",
            "ORCH_SUSPECT_AFTER": "0.5",
            "ORCH_DEAD_AFTER": "1.0",
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up"], cwd=ROOT, env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def ready(self) -> bool:
        try:
            status, _, _ = await get_json(self.url("/readyz"), timeout=2)
        except OSError:
            return False
        return status == 200


@pytest.fixture
def process(nats_server, prefix, tmp_path) -> Iterator[OrchestratorProcess]:
    proc = OrchestratorProcess(nats_server.url, prefix, tmp_path / "orchestrator.log")
    yield proc
    proc.stop()


def without_heartbeats(agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k not in HEARTBEAT_FIELDS} for a in agents]


async def test_kill_9_and_restart_rebuilds_an_equal_projection(process, nats_server, nc, names):
    process.start()
    await eventually(process.ready, timeout=30, what="orchestrator ready")
    live = AgentClient("live", ["cpu"], nats_url=nats_server.url, prefix=names.prefix)
    await live.start()
    try:
        await scenario(process, nc, names)
    finally:
        await live.stop(deregister=False)


async def scenario(process: OrchestratorProcess, nc, names) -> None:
    register = names.command("agent.register")
    # A fleet in every state: re-registered, draining, left, and (silent) dead.
    for agent_id in ("a1", "a2", "a3", "a4"):
        await request(nc, register, registration(agent_id, labels={"n": agent_id}))
    await request(nc, register, registration("a1"))
    await request(nc, names.command("agent.drain"), {"agent_id": "a2"})
    await request(nc, names.command("agent.deregister"), {"agent_id": "a3", "incarnation": 1})

    async def settled() -> Any:
        _, headers, body = await get_json(process.url("/v1/agents"))
        statuses = {a["agent_id"]: a["status"] for a in body["agents"]}
        done = statuses == {"a1": "dead", "a2": "dead", "a3": "left", "a4": "dead",
                            "live": "healthy"}
        return (headers["X-Orch-Index"], body) if done else None

    index_before, before = await eventually(settled, timeout=30, what="fleet settled")

    process.kill9()
    process.start()
    await eventually(process.ready, timeout=30, what="orchestrator ready again")

    _, headers, after = await get_json(process.url("/v1/agents"))
    assert headers["X-Orch-Index"] == index_before
    assert without_heartbeats(after["agents"]) == without_heartbeats(before["agents"])
    assert [a["incarnation"] for a in after["agents"]] == [2, 1, 1, 1, 1]
    assert after["agents"][-1]["last_heartbeat_at"] is not None  # heartbeats re-read too
