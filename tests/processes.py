"""Orchestrator and agent processes of their own, for crash and pause tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from infra.bus.embedded import free_port
from tests.support import get_json

ROOT = Path(__file__).resolve().parents[1]


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
            "ORCH_LEASE_TTL": "1.0",
            "ORCH_ACCEPT_TIMEOUT": "2.0",
            "ORCH_AUTH": "off",  # the shared test server has no accounts
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli.main", "up"], cwd=ROOT, env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def is_leader(self) -> bool:
        try:
            status, _, body = await get_json(self.url("/v1/stats"), timeout=2)
        except OSError:
            return False
        return status == 200 and bool(body["leader"])

    async def ready(self) -> bool:
        try:
            status, _, _ = await get_json(self.url("/readyz"), timeout=2)
        except OSError:
            return False
        return status == 200




class AgentProcess:
    """The demo agent (`orchestrator agent`), heartbeating from a process of its own."""

    def __init__(self, agent_id: str, nats_url: str, prefix: str, log_path: Path) -> None:
        self.agent_id = agent_id
        self.args = [sys.executable, "-m", "services.cli.main", "agent", agent_id,
                     "--nats-url", nats_url, "--subject-prefix", prefix,
                     "--keep-registration"]
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
