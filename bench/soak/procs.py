"""The soak's processes: an external nats-server configured by `orchestrator auth
server-config`, orchestrators (`orchestrator up`) sharing its keys, demo agents
(`orchestrator agent`), and the CLI as an operator would run it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import stop_process
from infra.bus.embedded import EmbeddedNats, free_port

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "orch"
# Health timings a little longer than the tests' (0.1/0.5/1.0): the soak shares two cores
# with 20 agent processes, and a death it declares must be one it caused.
TIMINGS = {
    "ORCH_HEARTBEAT_INTERVAL": "0.25",
    "ORCH_SUSPECT_AFTER": "1.0",
    "ORCH_DEAD_AFTER": "2.0",
    "ORCH_LEASE_TTL": "2.0",
    "ORCH_ACCEPT_TIMEOUT": "3.0",
    "ORCH_RETRY_BACKOFF": "0.2",
    "ORCH_RETRY_BACKOFF_MAX": "1.0",
}
DEAD_AFTER_S = float(TIMINGS["ORCH_DEAD_AFTER"])
CLI = [sys.executable, "-m", "services.cli.main"]


def rss_bytes(pid: int) -> int:
    """VmRSS of a live process; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) * 1024 if match else 0


class Cli:
    """`orchestrator <command>` as the local operator of the first orchestrator."""

    def __init__(self, data_dir: Path, nats_url: str) -> None:
        self.env = {**os.environ, "ORCH_DATA_DIR": str(data_dir), "ORCH_NATS_URL": nats_url,
                    "ORCH_SUBJECT_PREFIX": PREFIX}

    async def run(self, *args: str, timeout: float = 120.0) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            *CLI, *args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, limit=1 << 20)
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return -1, "", f"timed out after {timeout}s"
        return process.returncode or 0, (out or b"").decode(), err.decode()


def server_config(data_dir: Path) -> str:
    """The block `orchestrator auth server-config` prints (making the keys)."""
    done = subprocess.run([*CLI, "auth", "server-config", "--data-dir", str(data_dir),
                           "--subject-prefix", PREFIX], cwd=ROOT, capture_output=True,
                          check=True, timeout=120)
    return done.stdout.decode()


def start_nats(run_dir: Path, auth_block: str) -> EmbeddedNats:
    server = EmbeddedNats(run_dir / "nats", port=free_port(), sync="always",
                          server_name="soak", auth_config=auth_block)
    server.start(timeout=30)
    return server


def share_keys(first: Path, other: Path) -> None:
    """Another orchestrator of the deployment gets the keys they share, as the docs say:
    `orchestrator auth export` on the first, `auth import` on the other."""
    bundle = first.parent / "keys.bundle"
    for command in (["export", str(bundle), "--data-dir", str(first)],
                    ["import", str(bundle), "--data-dir", str(other)]):
        subprocess.run([*CLI, "auth", *command], cwd=ROOT, capture_output=True, check=True,
                       timeout=120)


class Orchestrator:
    """`orchestrator up` against the external server, in a process of its own."""

    def __init__(self, name: str, data_dir: Path, nats_url: str, log_path: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**os.environ, "ORCH_NATS_URL": nats_url, "ORCH_DATA_DIR": str(data_dir),
                    "ORCH_SUBJECT_PREFIX": PREFIX, "ORCH_HTTP_PORT": str(self.port),
                    "ORCH_LOG_LEVEL": "INFO", **TIMINGS}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""  # a read token, for /v1
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- soak: start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen([*CLI, "up"], cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 20.0)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def get(self, path: str, timeout: float = 5.0) -> Any:
        """A read API GET with the read token; None when it does not answer 200."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with aiohttp.ClientSession() as session, session.get(
                self.url(path), headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                if response.status != 200:
                    return None
                return await response.json()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def ready(self) -> bool:
        if not self.alive:
            return False
        try:
            async with aiohttp.ClientSession() as session, session.get(
                self.url("/readyz"), timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def is_leader(self) -> bool:
        if not self.alive:
            return False
        stats = await self.get("/v1/stats", timeout=2)
        return bool(stats and stats.get("leader"))

    async def board(self) -> dict[str, str]:
        """task id -> status, every task on its board (paged)."""
        tasks: dict[str, str] = {}
        body = await self.get("/v1/tasks?limit=1000", timeout=30)
        while body is not None:
            tasks.update({t["task_id"]: t["status"] for t in body["tasks"]})
            after = body.get("next_after")
            if after is None:
                return tasks
            body = await self.get(f"/v1/tasks?limit=1000&after={after}", timeout=30)
        raise RuntimeError(f"{self.name}: the task board could not be read")


class Agent:
    """The demo agent, enrolled by itself from the first orchestrator's data directory."""

    def __init__(self, agent_id: str, data_dir: Path, nats_url: str, log_dir: Path,
                 capacity: int) -> None:
        self.agent_id = agent_id
        self.args = [*CLI, "agent", agent_id, "--nats-url", nats_url, "--subject-prefix",
                     PREFIX, "--data-dir", str(data_dir), "--capacity", str(capacity),
                     "--keep-registration"]
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.started_at = 0.0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.agent_id}.{self.generation}.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.generation += 1
        self.started_at = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT)

    def incarnation(self) -> int | None:
        """The incarnation this process registered as (its first line), None before."""
        with contextlib.suppress(OSError):
            match = re.search(r"registered incarnation=(\d+)", self.log_path.read_text())
            if match:
                return int(match.group(1))
        return None

    def kill9(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 10.0)
