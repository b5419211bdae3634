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
# Paced lifecycles: a window is submitted when at most this many minus a window are
# unfinished.
PACED_UNFINISHED = 2 * WINDOW
POLL_S = 0.02


async def run(size: Size) -> dict[str, float]:
    bare = await _agents(size.memory_agents, declared=False)
    declared = await _agents(size.memory_agents, declared=True)
    # Half as many tasks as agents: a size of its own in bench/sizes.py would do as well.
    count = max(1, size.memory_agents // 2)
    held = await _finished_tasks(count, paced=True)
    burst = await _finished_tasks(count, paced=False)
    return {**bare, "bytes_per_agent_declared": declared["bytes_per_agent"], **held,
            "bytes_per_finished_task_burst": burst["bytes_per_finished_task"],
            "burst_peak_unfinished": burst["peak_unfinished"]}


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


async def _finished_tasks(count: int, paced: bool) -> dict[str, float]:
    """Lifecycles to completion with the fake fleet; the growth once they all finished,
    minus a warm-up's, so that buffers which grow once are not charged to the tasks.

    Paced, a window is submitted once at most PACED_UNFINISHED tasks are unfinished, as in
    a steady flow: what is measured is what the board holds per finished task. Not paced
    (a burst), all are submitted as fast as the orchestrator answers, the fleet falls
    behind, and the growth also holds the heap's high-water mark of the unfinished tasks
    at the peak (`peak_unfinished`): Python's allocator cannot give back memory where
    finished tasks made meanwhile are interleaved with theirs."""
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
        await _lifecycles(nc, orch, "warm", warm_up, warm_up, paced)
        before = await _settled_rss(orch)
        peak = await _lifecycles(nc, orch, "t", count, warm_up + count, paced)
        after = await _settled_rss(orch)
        await nc.close()
    return {
        "finished_tasks": count,
        "bytes_per_finished_task": (after - before) / count,
        "peak_unfinished": peak,
    }


async def _lifecycles(nc: Client, orch: Orchestrator, prefix: str, count: int,
                      completed_then: int, paced: bool) -> int:
    """Submit `count` tasks and wait until `completed_then` are completed; the most
    tasks seen unfinished at once (sampled every POLL_S)."""
    subject = orch.names.client_command(TASK_SUBMIT, IDENTITY)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, await _unfinished(orch))
            await asyncio.sleep(POLL_S)

    watching = asyncio.create_task(watch())
    try:
        for start in range(0, count, WINDOW):
            while paced and await _unfinished(orch) > PACED_UNFINISHED - WINDOW:
                await asyncio.sleep(POLL_S)
            await asyncio.gather(*(
                nc.request(subject, orjson.dumps({"task_id": f"{prefix}{i:07d}", "kind": "k"}),
                           timeout=60)
                for i in range(start, min(start + WINDOW, count))))
        await _completed(orch, completed_then)
    finally:
        watching.cancel()
    return peak


async def _unfinished(orch: Orchestrator) -> int:
    tasks = (await orch.stats())["tasks"]
    finished = sum(tasks["by_status"].get(status, 0)
                   for status in ("completed", "dead_lettered", "cancelled"))
    return int(tasks["total"]) - finished


async def _completed(orch: Orchestrator, completed_then: int) -> None:
    """Until `completed_then` tasks are completed and the projections hold the log."""
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
