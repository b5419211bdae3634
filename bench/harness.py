"""What every scenario needs: its own nats-server, the orchestrator as a separate
process, and ways to read the orchestrator's own metrics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from infra.bus.embedded import EmbeddedNats, free_port
from infra.names import Names

ROOT = Path(__file__).resolve().parents[1]
# The identity the benchmarks send submitters' commands as (`<prefix>.task.submit.bench`;
# auth is off in the orchestrators they start, so nobody checks it).
IDENTITY = "bench"


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `grace_s`; nothing if it exited."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class MissingTool(RuntimeError):
    """A scenario cannot run here: what it needs is missing, and the message says how to
    get it. The run fails (exit status 1) with the message alone, not a traceback."""


@dataclass
class Orchestrator:
    """`orchestrator up` in its own process, against the scenario's nats-server."""

    nats_url: str
    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self, timeout: float = 600.0) -> float:
        """Start it and wait until it is ready and leads; returns the seconds that took."""
        env = {**os.environ, "ORCH_NATS_URL": self.nats_url, "ORCH_SUBJECT_PREFIX": self.prefix,
               "ORCH_HTTP_PORT": str(self.port), "ORCH_LOG_LEVEL": "WARNING",
               "ORCH_LEASE_TTL": "1.0", "ORCH_AUTH": "off", **self.env}
        started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "services.cli.main", "up"], cwd=ROOT,
                                        env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = started + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError("orchestrator exited during start-up")
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    async with session.get(self.url("/v1/stats")) as response:
                        if response.status == 200 and (await response.json())["leader"]:
                            return time.monotonic() - started
                await asyncio.sleep(0.05)
        raise TimeoutError("orchestrator did not become ready")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def rss_bytes(self) -> int:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) * 1024 if match else 0

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(
            self.url("/v1/stats")
        ) as response:
            body: dict[str, Any] = await response.json()
            return body

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(
            self.url("/metrics")
        ) as response:
            return await response.text()


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample of the Prometheus text format, 0 when absent."""
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)"
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def histogram_quantile(text: str, name: str, q: float) -> float:
    """The q-quantile of a Prometheus histogram, by linear interpolation in its buckets."""
    buckets = sorted(
        (float("inf") if le == "+Inf" else float(le), float(count))
        for le, count in re.findall(re.escape(name) + r'_bucket\{le="([^"]+)"\} (\S+)', text))
    if not buckets or buckets[-1][1] == 0:
        return 0.0
    target = q * buckets[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= target:
            if le == float("inf"):
                return previous_le
            span = count - previous_count
            return previous_le + (le - previous_le) * ((target - previous_count) / span
                                                        if span else 1.0)
        previous_le, previous_count = le, count
    return previous_le


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.asynccontextmanager
async def nats_server(sync: str = "always") -> AsyncIterator[EmbeddedNats]:
    """A fresh nats-server with its own store, as the embedded default runs it."""
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as store:
        server = EmbeddedNats(Path(store), port=free_port(), sync=sync,
                              server_name="orch-bench")
        await server.astart()
        try:
            yield server
        finally:
            await server.astop()


@contextlib.asynccontextmanager
async def orchestrator(server: EmbeddedNats, prefix: str | None = None,
                       **env: str) -> AsyncIterator[Orchestrator]:
    """An orchestrator on `server` with its own subject prefix: random (`b` and 8 hex
    digits) unless given, so that several can share a server."""
    orch = Orchestrator(server.url, prefix or "b" + uuid.uuid4().hex[:8], dict(env))
    try:
        yield orch
    finally:
        orch.stop()


async def raw_consumer_rate(nc: Client, stream: str, timeout: float = 600.0) -> float:
    """The raw baseline: an ordered consumer doing only orjson.loads on every message."""
    js = nc.jetstream()
    total = (await js.stream_info(stream)).state.messages
    done = asyncio.Event()
    count = 0

    async def on_message(msg: Msg) -> None:
        nonlocal count
        orjson.loads(msg.data)
        count += 1
        if count >= total:
            done.set()

    started = time.monotonic()
    subscription = await js.subscribe(">", stream=stream, cb=on_message, ordered_consumer=True,
                                      deliver_policy=DeliverPolicy.ALL,
                                      pending_msgs_limit=0, pending_bytes_limit=0)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await subscription.unsubscribe()
    return count / (time.monotonic() - started)


async def connect(url: str) -> Client:
    return await nats.connect(url, max_reconnect_attempts=-1)
