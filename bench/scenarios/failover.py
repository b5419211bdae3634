"""Failover: agents holding running tasks die at once; how soon is their work delivered
elsewhere, measured from each dead deadline."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

from nats.aio.client import Client

from bench.fleet import Fleet
from bench.harness import IDENTITY, connect, nats_server, orchestrator, percentile
from bench.sizes import Size
from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from infra.names import TASK_SUBMIT, Names

INTERVAL, SUSPECT, DEAD = 0.25, 1.0, 2.0


async def run(size: Size) -> dict[str, float]:
    async with nats_server() as server, orchestrator(
        server, ORCH_HEARTBEAT_INTERVAL=str(INTERVAL), ORCH_SUSPECT_AFTER=str(SUSPECT),
        ORCH_DEAD_AFTER=str(DEAD), ORCH_ACCEPT_TIMEOUT="30",
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        fleet = Fleet(nc, orch.names, complete=False)  # tasks keep running
        agents = [f"f{i:05d}" for i in range(size.failover_agents)]
        await fleet.register(agents, capacity=2)
        await fleet.serve_assignments()
        beating = asyncio.create_task(fleet.heartbeat_forever(INTERVAL))
        try:
            for start in range(0, len(agents), 200):
                await asyncio.gather(*(
                    nc.request(orch.names.client_command(TASK_SUBMIT, IDENTITY),
                               f'{{"task_id": "t{i}", "kind": "run"}}'.encode(), timeout=30)
                    for i in range(start, min(start + 200, len(agents)))))
            await _until(lambda: len(fleet.received) >= len(agents), 120)
            holders = {task: agent for task, agent, _, _ in fleet.received}
            dying = set(agents[:size.failover_dying])
            held = {t for t, a in holders.items() if a in dying}
            fleet.silent |= dying
            deadline = {a: fleet.last_beat[a] + DEAD for a in dying}
            await _until(lambda: len(_moved(fleet, dying)) >= len(held), DEAD + 60)
            moved = _moved(fleet, dying)
        finally:
            beating.cancel()
        delays = [(at - deadline[holders[task]]) * 1000 for task, at in moved.items()]
        store = EventStore(nc.jetstream(), orch.names, create_mapper())
        events = await store.read(limit=10_000_000,
                                  subject_filter=orch.names.kind_events("task"))
        precision = await death_precision(nc, store, orch.names, dying)
        await nc.close()
    attempts = Counter((e.aggregate_id, e.data()["attempt"]) for e in events
                       if e.name in ("Assigned", "Reassigned"))
    return {
        "agents": size.failover_agents,
        "dying": len(dying),
        "tasks_moved": len(moved),
        "p50_ms": percentile(delays, 0.5),
        "p99_ms": percentile(delays, 0.99),
        "max_ms": max(delays, default=0.0),
        "double_assignments": sum(1 for n in attempts.values() if n > 1),
        "death_late_p50_ms": percentile(precision, 0.5),
        "death_late_p99_ms": percentile(precision, 0.99),
        "baseline_dead_after_ms": DEAD * 1000,
    }


async def death_precision(nc: Client, store: EventStore, names: Names,
                          dying: set[str]) -> list[float]:
    """How late each death was declared: from the agent's last heartbeat as stored in
    its stream, plus dead_after, to the DeclaredDead event (both server clock)."""
    late = []
    for event in await store.read(limit=100_000,
                                  subject_filter=names.event("agent", "*", "DeclaredDead")):
        if event.aggregate_id not in dying:
            continue
        beat = await nc.jetstream().get_last_msg(names.heartbeats_stream,
                                                 names.heartbeat(event.aggregate_id))
        assert beat.time is not None
        due = beat.time.timestamp() + DEAD
        late.append((event.recorded_at.timestamp() - due) * 1000)
    return late


def _moved(fleet: Fleet, dying: set[str]) -> dict[str, float]:
    """Task -> when it reached a live agent again (attempt 2 or later)."""
    return {task: at for task, agent, attempt, at in fleet.received
            if attempt > 1 and agent not in dying}


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.01)
