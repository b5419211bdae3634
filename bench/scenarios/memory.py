"""Memory: RSS growth of the orchestrator per registered agent (bare, and declaring labels
and a service as real fleets do) and per finished task held on the task board."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from nats.aio.client import Client

from bench.fleet import Fleet
from bench.harness import IDENTITY, Orchestrator, connect, metric, nats_server, orchestrator
from bench.sizes import Size
from infra.names import REGISTER, TASK_SUBMIT

WINDOW = 200  # commands in flight at once
WORKERS = 8
# The orchestrator's memory settles between measurements: RSS is read once it stops moving.
SETTLE_S = 0.5


async def run(size: Size) -> dict[str, float]:
    bare = await _agents(size.memory_agents, declared=False)
    declared = await _agents(size.memory_agents, declared=True)
    # Half as many tasks as agents: a size of its own in bench/sizes.py would do as well.
    tasks = await _finished_tasks(max(1, size.memory_agents // 2))
    return {**bare, "bytes_per_agent_declared": declared["bytes_per_agent"], **tasks}


def declaration(agent_id: str, number: int) -> dict[str, Any]:
    """What a real fleet's agent declares: its zone, host and version, and one service."""
    return {
        "agent_id": agent_id, "capacity": 10, "capabilities": ["cpu"],
        "labels": {"zone": f"zone-{number % 3}", "host": f"host-{agent_id}",
                   "version": "2.4.1"},
        # A service per hundred agents: one service of every agent would measure the
        # change feed's cost, which republishes a service's whole instance list on each
        # change (quadratic at 100,000 instances; noted for the catalog's own work).
        "services": [{"name": f"web-{number // 100}", "address": f"10.{number >> 16 & 255}."
                      f"{number >> 8 & 255}.{number & 255}", "port": 8080,
                      "tags": ["http", "v2"]}],
    }


async def _agents(count: int, declared: bool) -> dict[str, float]:
    async with nats_server("default") as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="600", ORCH_DEAD_AFTER="1200",
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        await _register(nc, orch, ["warm-up"], declared)
        await _caught_up(orch)
        before = await _settled_rss(orch)
        await _register(nc, orch, [f"m{i:06d}" for i in range(count)], declared)
        await _caught_up(orch)
        after = await _settled_rss(orch)
        await nc.close()
    return {
        "agents": count,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "bytes_per_agent": (after - before) / count,
    }


async def _register(nc: Client, orch: Orchestrator, agent_ids: list[str],
                    declared: bool) -> None:
    if not declared:
        await Fleet(nc, orch.names).register(agent_ids)
        return
    for start in range(0, len(agent_ids), WINDOW):
        await asyncio.gather(*(
            nc.request(orch.names.agent_command(agent_id, REGISTER),
                       orjson.dumps(declaration(agent_id, start + offset)), timeout=30)
            for offset, agent_id in enumerate(agent_ids[start:start + WINDOW])))


async def _finished_tasks(count: int) -> dict[str, float]:
    """Lifecycles to completion with the fake fleet; the growth once they all finished,
    minus a warm-up's, so that buffers which grow once are not charged to the tasks."""
    async with nats_server("default") as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="600", ORCH_DEAD_AFTER="1200", ORCH_ACCEPT_TIMEOUT="600",
        ORCH_FINISHED_TASK_LIMIT="0",  # every finished task stays: it is what is measured
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        fleet = Fleet(nc, orch.names, complete=True)
        await fleet.register([f"w{i}" for i in range(WORKERS)], capacity=WINDOW)
        await fleet.serve_assignments()
        warm_up = min(count, 2000)
        await _lifecycles(nc, orch, "warm", warm_up, warm_up)
        before = await _settled_rss(orch)
        await _lifecycles(nc, orch, "t", count, warm_up + count)
        after = await _settled_rss(orch)
        await nc.close()
    return {
        "finished_tasks": count,
        "bytes_per_finished_task": (after - before) / count,
    }


async def _lifecycles(nc: Client, orch: Orchestrator, prefix: str, count: int,
                      completed_then: int) -> None:
    subject = orch.names.client_command(TASK_SUBMIT, IDENTITY)
    for start in range(0, count, WINDOW):
        await asyncio.gather(*(
            nc.request(subject, orjson.dumps({"task_id": f"{prefix}{i:07d}", "kind": "k"}),
                       timeout=60)
            for i in range(start, min(start + WINDOW, count))))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 600
    while (await orch.stats())["tasks"]["by_status"].get("completed", 0) < completed_then:
        if loop.time() > deadline:
            raise TimeoutError(f"{completed_then} tasks did not complete")
        await asyncio.sleep(0.1)
    await _caught_up(orch)


async def _caught_up(orch: Orchestrator) -> None:
    """The projections have applied every event of the log."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 600
    while True:
        text = await orch.metrics()
        if metric(text, "orch_projection_position") >= metric(text, "orch_log_last_position") > 0:
            return
        if loop.time() > deadline:
            raise TimeoutError("the projections did not catch up with the log")
        await asyncio.sleep(0.1)


async def _settled_rss(orch: Orchestrator) -> int:
    """RSS once two readings SETTLE_S apart agree within 1 %, or the last of ten."""
    previous = orch.rss_bytes()
    for _ in range(10):
        await asyncio.sleep(SETTLE_S)
        current = orch.rss_bytes()
        if abs(current - previous) <= previous // 100:
            return current
        previous = current
    return previous
