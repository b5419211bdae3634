"""Rebuilding every projection from a long log, beside a raw consumer of the same log."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from bench.harness import (
    Orchestrator,
    connect,
    nats_server,
    orchestrator,
    raw_consumer_rate,
)
from bench.sizes import Size
from domain.agents.agent import Agent
from infra.log.format.codec import create_mapper
from infra.log.snapshot_store import OBJECT_NAME
from infra.log.streams import provision
from infra.names import AGENT, Header, Names

WINDOW = 1000


# The log's agents never heartbeat: long deadlines keep the health monitor from declaring
# them all dead (a million more events) while rebuilds are measured.
QUIET = {"ORCH_SUSPECT_AFTER": "3600", "ORCH_DEAD_AFTER": "3600"}
SNAPSHOT_TIMEOUT_S = 300.0


async def run(size: Size) -> dict[str, float]:
    async with nats_server("default") as server:
        async with orchestrator(server) as empty:
            cold_start = await empty.start()  # process start-up with an empty log
        async with orchestrator(server, **QUIET,
                                ORCH_SNAPSHOT_EVERY=str(size.rebuild_events)) as orch:
            nc = await connect(server.url)
            await write_log(nc, orch.names, size.rebuild_events)
            baseline = await raw_consumer_rate(nc, orch.names.events_stream)
            ready = await orch.start()  # rebuilt from the whole log
            # Once leading it writes a snapshot of the whole log (ORCH_SNAPSHOT_EVERY is
            # the log's length); then it is stopped as an operator would (SIGTERM).
            # Meanwhile a client reads /healthz back to back: its slowest answer is the
            # longest the event loop was held, writing the snapshot included.
            probe = asyncio.create_task(slowest_answer(orch))
            await snapshot_written(nc, orch.names)
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
            snapshot_stall_s = PROBE.slowest
            idle_stall_s = await idle_answer(orch)
            await asyncio.to_thread(orch.stop)
            async with orchestrator(server, **QUIET) as restarted:
                restarted.prefix = orch.prefix
                from_snapshot = await restarted.start()
                started_from = (await restarted.stats())["started_from"]
            await nc.close()
    rebuilding = max(ready - cold_start, 1e-3)
    rate = size.rebuild_events / rebuilding
    return {
        "log_events": size.rebuild_events,
        "ready_s": ready,
        "events_per_s": rate,
        "baseline_per_s": baseline,
        "ratio": rate / baseline if baseline else 0.0,
        # Process start to ready and leading, like `ready_s`; from the snapshot the
        # stopping orchestrator wrote at the log's end (started_from says it was used).
        "ready_from_snapshot_s": from_snapshot,
        "snapshot_started_from": started_from,
        "cold_start_s": cold_start,
        "snapshot_stall_ms": snapshot_stall_s * 1000,
        "baseline_idle_stall_ms": idle_stall_s * 1000,
    }


class _Probe:
    slowest = 0.0


PROBE = _Probe()


async def slowest_answer(orch: Orchestrator) -> None:
    """GET /healthz back to back, keeping the slowest answer's seconds in PROBE."""
    PROBE.slowest = 0.0
    async with aiohttp.ClientSession() as session:
        while True:
            started = time.perf_counter()
            async with session.get(orch.url("/healthz")) as response:
                await response.read()
            PROBE.slowest = max(PROBE.slowest, time.perf_counter() - started)


async def snapshot_written(nc: Client, names: Names) -> None:
    """Wait for the snapshot object to appear in the store (the first is of the whole
    log: ORCH_SNAPSHOT_EVERY is its length). Asked of NATS, not of the orchestrator:
    its /metrics counts the agents by status, a pass over 500,000 views that held its
    loop for 50 to 150 ms per scrape, which this probe then counted as the snapshot's."""
    js = nc.jetstream()
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
    while True:
        try:
            await (await js.object_store(names.snapshots_bucket)).get_info(OBJECT_NAME)
            return
        except NotFoundError:
            if time.monotonic() > deadline:
                raise TimeoutError("no snapshot of the whole log was written") from None
            await asyncio.sleep(0.1)


async def idle_answer(orch: Orchestrator, seconds: float = 2.0) -> float:
    """The same probe's slowest answer while nothing else happens: the baseline."""
    probe = asyncio.create_task(slowest_answer(orch))
    await asyncio.sleep(seconds)
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    return PROBE.slowest


async def write_log(nc: Client, names: Names, count: int) -> None:
    """Registrations and drains of count/2 agents, written straight to the stream."""
    js = nc.jetstream()
    await provision(js, names, heartbeat_history=1)
    mapper = create_mapper()
    template = Agent("x", ["cpu"], 4, {"zone": "eu"}, [])
    template.drain()
    registered, drained = (mapper.to_stored_event(e) for e in template.collect_events())
    state = orjson.loads(registered.state)
    pending = []
    for i in range(count):
        agent_id = f"a{i // 2}"
        stored = registered if i % 2 == 0 else drained
        data = orjson.dumps({**state, "agent_id": agent_id}) if i % 2 == 0 else stored.state
        name = "Registered" if i % 2 == 0 else "DrainStarted"
        headers: dict[str, str] = {
            Header.TOPIC: stored.topic, Header.VERSION: str(stored.originator_version),
            Header.EVENT_ID: f"e{i}", Header.IDENTITY: agent_id}  # sent by the agent
        pending.append(js.publish(names.event(AGENT, agent_id, name), data, headers=headers))
        if len(pending) >= WINDOW:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
