"""HA: three orchestrators on one nats-server, the leader SIGKILLed again and again; how
soon does a successor place work? Measured from the SIGKILL to the first `Assigned` of a
task submitted after it (only a survivor can have written it), in the log's own time (the
stream's timestamps, the same clock as the kill's on one machine). The killed process is
started again each round, so every kill meets one leader and two standbys.

Beside it, the parts (from the orchestrators' logs: the kill to `leader lease acquired`,
how late after its due moment the takeover was answered, then to the first placement),
and a raw baseline in the same run: a bare KV lease of the same TTL renewed every TTL/3
and then abandoned, taken by a client that tries to create the entry every 5 ms, i.e. the
best a standby that waits for the server to expire the entry can do
(docs/how-it-works.md, High availability)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from bench.fleet import Fleet
from bench.harness import IDENTITY, ROOT, connect, nats_server, percentile, stop_process
from bench.sizes import Size
from infra.bus.embedded import EmbeddedNats, free_port
from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from infra.names import TASK_SUBMIT, Names

ORCHESTRATORS = 3
SUBMIT_EVERY = 0.1  # after a kill, a task each 0.1 s until one is placed
ACQUIRED = "leader lease acquired"


class Node:
    """One `orchestrator up` process of the group (all share the subject prefix), its log
    at INFO in a file of its own, to read when it acquired the lease."""

    def __init__(self, server: EmbeddedNats, prefix: str, ttl: float, logs: Path,
                 index: int) -> None:
        self.server, self.prefix, self.ttl, self.logs, self.index = (server, prefix, ttl,
                                                                     logs, index)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.logs / f"orch{self.index}-{self.starts}.log"

    def spawn(self) -> None:
        self.starts += 1
        self.port = free_port()
        env = {**os.environ, "ORCH_NATS_URL": self.server.url,
               "ORCH_SUBJECT_PREFIX": self.prefix, "ORCH_HTTP_PORT": str(self.port),
               "ORCH_LOG_LEVEL": "INFO", "ORCH_LEASE_TTL": str(self.ttl), "ORCH_AUTH": "off",
               "ORCH_HEARTBEAT_INTERVAL": "0.5"}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli.main", "up"], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=log)

    async def leads(self, session: aiohttp.ClientSession) -> bool | None:
        """Whether it leads; None while it does not answer (starting, or dead)."""
        if self.process is None or self.process.poll() is not None:
            return None
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with session.get(f"http://127.0.0.1:{self.port}/v1/stats") as response:
                if response.status == 200:
                    return bool((await response.json())["leader"])
        return None

    def kill(self) -> float:
        assert self.process is not None
        killed = time.time()
        self.process.kill()
        self.process.wait()
        return killed

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def acquired_after(self, moment: float) -> tuple[float, float] | None:
        """When one of its runs first logged acquiring the lease after `moment`, and how
        long the entry it took over had gone unrenewed (NaN if it created one)."""
        for run in range(1, self.starts + 1):
            for line in (self.logs / f"orch{self.index}-{run}.log").read_text(
                    errors="replace").splitlines():
                if ACQUIRED in line:
                    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    if stamp > moment:
                        unrenewed = re.search(r"unrenewed=([0-9.]+)s", line)
                        return stamp, float(unrenewed.group(1)) if unrenewed else math.nan
        return None


async def run(size: Size) -> dict[str, float]:
    ttl = size.ha_lease_ttl
    prefix = "b" + uuid.uuid4().hex[:8]
    names = Names(prefix)
    with tempfile.TemporaryDirectory(prefix="orch-bench-ha-") as logs:
        async with nats_server() as server:
            nodes = [Node(server, prefix, ttl, Path(logs), i) for i in range(ORCHESTRATORS)]
            try:
                figures = await _measure(server, names, nodes, ttl, size.ha_kills)
            finally:
                for node in nodes:
                    node.stop()
            nc = await connect(server.url)
            try:
                baseline = await bare_lease_takeover(nc, ttl, size.ha_baseline_samples)
            finally:
                await nc.close()
    return {**figures,
            "baseline_bare_kv_takeover_p50_s": percentile(baseline, 0.5),
            "baseline_bare_kv_takeover_p99_s": percentile(baseline, 0.99),
            "lease_ttl_s": ttl}


async def _measure(server: EmbeddedNats, names: Names, nodes: list[Node], ttl: float,
                   kills: int) -> dict[str, float]:
    nodes[0].spawn()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        await _until(session, lambda states: states[0] is True, nodes, 600)
        for node in nodes[1:]:
            node.spawn()
        nc = await connect(server.url)
        fleet = Fleet(nc, names)
        await fleet.register(["ha-agent"], capacity=1000)
        await fleet.serve_assignments()
        beating = asyncio.create_task(fleet.heartbeat_forever(0.5))
        rounds: list[tuple[float, list[str], Node]] = []
        try:
            for kill in range(kills):
                # Every node answering, one of them leading; then a moment at random in
                # the renewal period, so kills fall anywhere between two renewals.
                states = await _until(session, lambda states: None not in states
                                      and sum(1 for s in states if s) == 1, nodes, 600)
                leader = nodes[states.index(True)]
                await asyncio.sleep(random.uniform(0.2, 0.2 + ttl / 3))
                killed = leader.kill()
                submitted = await _submit_until_placed(nc, names, fleet, kill, ttl)
                rounds.append((killed, submitted, leader))
                leader.spawn()
            await fleet.settled()
        finally:
            beating.cancel()
            await fleet.stop()
        store = EventStore(nc.jetstream(), names, create_mapper())
        assigned = {e.aggregate_id: e.recorded_at.timestamp() for e in await store.read(
            limit=1_000_000, subject_filter=names.event("task", "*", "Assigned"))}
        await nc.close()
    succession, lease, placing, late = [], [], [], []
    for killed, submitted, _ in rounds:
        placed = min(assigned[task] for task in submitted if task in assigned)
        succession.append(placed - killed)
        acquired = [a for a in (node.acquired_after(killed) for node in nodes) if a]
        if acquired:  # from the log of whichever survivor acquired it first
            at, unrenewed = min(acquired)
            lease.append(at - killed)
            placing.append(placed - at)
            if not math.isnan(unrenewed):
                late.append(unrenewed - ttl)
    return {
        "kills": len(rounds),
        "succession_p50_s": percentile(succession, 0.5),
        "succession_p99_s": percentile(succession, 0.99),
        "succession_max_s": max(succession, default=0.0),
        "succession_p99_vs_ttl": percentile(succession, 0.99) / ttl,
        "kill_to_lease_p50_s": percentile(lease, 0.5),
        "kill_to_lease_p99_s": percentile(lease, 0.99),
        # From the moment the last renewal seen was a TTL old to the takeover's answer.
        "takeover_late_p99_s": percentile(late, 0.99),
        "lease_to_placement_p50_s": percentile(placing, 0.5),
        "lease_to_placement_p99_s": percentile(placing, 0.99),
    }


async def _submit_until_placed(nc: Client, names: Names, fleet: Fleet, kill: int,
                               ttl: float) -> list[str]:
    """Tasks submitted from the kill on, each SUBMIT_EVERY, until one reaches the agent."""
    submitted: list[str] = []
    deadline = time.monotonic() + 10 * ttl + 60
    while True:
        task_id = f"ha{kill}-{len(submitted)}"
        with contextlib.suppress(TimeoutError):  # no answer yet: the next one is sent
            await nc.request(names.client_command(TASK_SUBMIT, IDENTITY), orjson.dumps(
                {"task_id": task_id, "kind": "run"}), timeout=SUBMIT_EVERY * 20)
            submitted.append(task_id)
        waited = time.monotonic() + SUBMIT_EVERY
        while time.monotonic() < waited:
            if any(task.startswith(f"ha{kill}-") for task, _, _, _ in fleet.received):
                return submitted
            await asyncio.sleep(0.005)
        if time.monotonic() > deadline:
            raise TimeoutError("no successor placed a task")


async def _until(session: aiohttp.ClientSession, condition: Callable[[list[bool | None]], bool],
                 nodes: list[Node], timeout: float) -> list[bool | None]:
    deadline = time.monotonic() + timeout
    while True:
        states = list(await asyncio.gather(*(node.leads(session) for node in nodes)))
        if condition(states):
            return states
        for node in nodes:
            if node.process is not None and node.process.poll() is not None \
                    and node.process.returncode not in (-9,):
                raise RuntimeError(f"orchestrator exited: see {node.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"orchestrators not ready: {states}")
        await asyncio.sleep(0.05)


async def bare_lease_takeover(nc: Client, ttl: float, samples: int) -> list[float]:
    """Seconds from abandoning a bare KV lease (renewed every TTL/3 until a moment at
    random) to another client's create succeeding, trying every 5 ms: the expiry as the
    server carries it out, with nothing of the orchestrator's."""
    js = nc.jetstream()
    bucket = await js.create_key_value(bucket=f"HA_BASELINE_{uuid.uuid4().hex[:8]}",
                                       history=1, ttl=ttl)

    async def one(key: str) -> float:
        revision = await bucket.create(key, b"holder")
        stop = time.monotonic() + random.uniform(ttl / 3, ttl)
        while time.monotonic() < stop:
            await asyncio.sleep(min(ttl / 3, max(0.0, stop - time.monotonic())))
            if time.monotonic() < stop:
                revision = await bucket.update(key, b"holder", revision)
        abandoned = time.monotonic()
        while True:
            try:
                await bucket.create(key, b"standby")
                return time.monotonic() - abandoned
            except (KeyWrongLastSequenceError, KeyNotFoundError):
                await asyncio.sleep(0.005)

    return list(await asyncio.gather(*(one(f"k{i}") for i in range(samples))))
