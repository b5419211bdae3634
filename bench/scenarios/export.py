"""An export of the whole log beside the health monitor: the heartbeat intake's lag and
the fleet's false suspicions while `orchestrator events --json` reads the log, repeated
until the window ends, and over a window of the same length with no export.

The fleet all beat at the orchestrator's heartbeat interval, so every suspicion (or
death) of one of them is false. The export runs as an auditor's would: the CLI in a
process of its own, reading the log by batched direct gets (infra/log/direct_read.py).
The export window comes first: it lasts at least one whole pass over the log, and the
idle window after it is as long. A suspicion is counted in the window where its silence
began (its time less its `silence_s`), so one declared after the export ended still
counts against it; the run ends with a settle of its own for the idle window's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass

import orjson
from nats.aio.client import Client

from bench.fleet import Fleet
from bench.harness import (
    ROOT,
    Orchestrator,
    connect,
    histogram_quantile,
    nats_server,
    orchestrator,
)
from bench.scenarios.heartbeats import LAG, delta
from bench.sizes import Size
from domain.agents.agent import Agent
from infra.log import direct_read
from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from infra.log.streams import provision
from infra.names import AGENT, Header, Names

# The orchestrator's defaults, set so that the figures say what they were measured with.
INTERVAL, SUSPECT, DEAD = 1.0, 3.0, 5.0
WARM_UP_S = INTERVAL  # every agent has beaten once before the windows
WINDOW = 1000  # publishes in flight while the log is filled
RESETS = "orch_health_deadline_resets_total"


async def run(size: Size) -> dict[str, float]:
    async with nats_server("default") as server, orchestrator(
        server, ORCH_HEARTBEAT_INTERVAL=str(INTERVAL), ORCH_SUSPECT_AFTER=str(SUSPECT),
        ORCH_DEAD_AFTER=str(DEAD),
    ) as orch:
        nc = await connect(server.url)
        await write_departed(nc, orch.names, size.rebuild_events)
        await orch.start()
        baseline = await raw_direct_get_rate(nc, orch.names.events_stream)
        fleet = Fleet(nc, orch.names)
        agents = [f"x{i:05d}" for i in range(size.heartbeat_agents)]
        await fleet.register(agents)
        beating = asyncio.create_task(beat_spread(fleet, INTERVAL))
        try:
            await asyncio.sleep(WARM_UP_S)
            state = (await nc.jetstream().stream_info(orch.names.events_stream)).state
            after = await EventStore(nc.jetstream(), orch.names, create_mapper()).last_position()
            exporting = await window(orch, size.heartbeat_seconds, export=True)
            idle = await window(orch, exporting.seconds, export=False)
            # A silence begun at the idle window's end is declared suspect_after later.
            await asyncio.sleep(min(SUSPECT + INTERVAL, idle.seconds))
            false = await suspicions(nc, orch.names, set(agents), after)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
        await nc.close()
    export = exporting.export
    assert export is not None
    return {
        "agents": size.heartbeat_agents,
        "log_events": state.messages,
        "log_bytes": state.bytes,
        "window_s": exporting.seconds,
        "export_passes": export.passes,
        "export_pass_s": export.first_pass_s,
        "export_events_per_s": export.events / export.reading_s if export.reading_s else 0.0,
        "baseline_direct_get_per_s": baseline,
        "heartbeat_lag_p99_ms_during_export": exporting.lag_p99 * 1000,
        "heartbeat_lag_p99_ms_idle": idle.lag_p99 * 1000,
        "false_suspicions_during_export": exporting.count(false),
        "false_suspicions_idle": idle.count(false),
        "deadline_resets_during_export": exporting.resets,
        "deadline_resets_idle": idle.resets,
    }


@dataclass
class Export:
    """What the repeated export did: events printed, passes finished, and the seconds
    spent reading (from each process's first line to its last, start-up left out)."""

    events: int = 0
    passes: int = 0
    reading_s: float = 0.0
    first_pass_s: float = 0.0  # process start to exit, the first whole pass


@dataclass
class Window:
    start: float  # wall clock, as the log's times
    end: float
    seconds: float
    lag_p99: float
    resets: float
    export: Export | None

    def count(self, silences_begun: list[float]) -> int:
        return sum(1 for at in silences_begun if self.start <= at < self.end)


async def window(orch: Orchestrator, seconds: float, export: bool) -> Window:
    """The heartbeat lag p99 and the monitor's deadline resets over `seconds`, with the
    export repeated meanwhile if `export` (then at least until its first pass ends)."""
    before = await orch.metrics()
    start, began = time.time(), time.monotonic()
    done: Export | None = None
    if export:
        done = await export_until(orch, began + seconds)
    else:
        await asyncio.sleep(seconds)
    elapsed = time.monotonic() - began
    after = await orch.metrics()
    return Window(start, start + elapsed, elapsed,
                  histogram_quantile(delta(after, before), LAG, 0.99),
                  _sum(after, RESETS) - _sum(before, RESETS), done)


async def export_until(orch: Orchestrator, deadline: float) -> Export:
    """`orchestrator events --json` over the whole log, again and again, until the
    deadline has passed and one pass has ended (a pass under way then is stopped)."""
    done = Export()
    with tempfile.TemporaryDirectory(prefix="orch-export-") as data_dir:
        env = {**os.environ, "ORCH_NATS_URL": orch.nats_url,
               "ORCH_SUBJECT_PREFIX": orch.prefix, "ORCH_DATA_DIR": data_dir}
        while done.passes == 0 or time.monotonic() < deadline:
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli.main", "events", "--json", cwd=ROOT,
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            assert process.stdout is not None
            first: float | None = None
            stopped = False
            while True:
                timeout = None if done.passes == 0 else deadline - time.monotonic()
                try:
                    chunk = await asyncio.wait_for(process.stdout.read(1 << 16),
                                                   None if timeout is None else max(0, timeout))
                except TimeoutError:
                    stopped = True
                    break
                if not chunk:
                    break
                first = first or time.monotonic()
                done.events += chunk.count(b"\n")
            ended = time.monotonic()
            if stopped:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            if await process.wait() != 0 and not stopped:
                raise RuntimeError(f"orchestrator events exited with {process.returncode}")
            if first is not None:
                done.reading_s += ended - first
            if not stopped:
                done.passes += 1
                done.first_pass_s = done.first_pass_s or ended - started
    return done


async def beat_spread(fleet: Fleet, interval: float, slices: int = 20) -> None:
    """Every agent beats once an interval, the fleet spread over it in `slices` (agents
    are not in step; a fleet beating at once would measure its own burst's queue)."""
    agents = list(fleet.incarnations.items())
    per_slice = -(-len(agents) // slices)
    started, seq = time.monotonic(), 0
    while True:
        for index in range(slices):
            for agent_id, incarnation in agents[index * per_slice:(index + 1) * per_slice]:
                seq += 1
                await fleet.nc.publish(fleet.names.heartbeat(agent_id), orjson.dumps(
                    {"incarnation": incarnation, "seq": seq}))
            started += interval / slices
            await asyncio.sleep(max(0.0, started - time.monotonic()))


async def suspicions(nc: Client, names: Names, fleet: set[str], after: int) -> list[float]:
    """When each silence began that made an agent of the fleet suspect or dead (wall
    clock): the event's time less the silence it states."""
    store = EventStore(nc.jetstream(), names, create_mapper())
    begun = []
    for name in ("Suspected", "DeclaredDead"):
        for event in await store.read(after, 10_000_000, names.event(AGENT, "*", name)):
            if event.aggregate_id in fleet:
                begun.append(event.recorded_at.timestamp() - event.data()["silence_s"])
    return begun


async def raw_direct_get_rate(nc: Client, stream: str) -> float:
    """The raw baseline: the whole log by the same batched direct gets, each message only
    parsed as JSON, in this process, with nothing else running."""
    count = 0
    started = time.monotonic()
    async for msg in direct_read.stored(nc, stream, ">"):
        orjson.loads(msg.data)
        count += 1
    return count / (time.monotonic() - started)


async def write_departed(nc: Client, names: Names, count: int) -> None:
    """count/2 agents that registered and left, written straight to the log: a long log
    of nobody the health monitor watches (left agents have no deadlines)."""
    js = nc.jetstream()
    await provision(js, names, heartbeat_history=1)
    mapper = create_mapper()
    template = Agent("x", ["cpu"], 4, {"zone": "eu"}, [])
    template.deregister(1)
    registered, departed = (mapper.to_stored_event(e) for e in template.collect_events())
    state = orjson.loads(registered.state)
    pending = []
    for i in range(count):
        agent_id = f"a{i // 2}"
        stored = registered if i % 2 == 0 else departed
        data = orjson.dumps({**state, "agent_id": agent_id}) if i % 2 == 0 else stored.state
        name = "Registered" if i % 2 == 0 else "Deregistered"
        headers: dict[str, str] = {
            Header.TOPIC: stored.topic, Header.VERSION: str(stored.originator_version),
            Header.EVENT_ID: f"e{i}", Header.IDENTITY: agent_id}
        pending.append(js.publish(names.event(AGENT, agent_id, name), data, headers=headers))
        if len(pending) >= WINDOW:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


def _sum(text: str, name: str) -> float:
    """A counter's samples summed over its labels."""
    return sum(float(v) for v in re.findall(
        "^" + re.escape(name) + r"(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE))
