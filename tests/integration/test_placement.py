"""Placement at scale: every task once, only on capable agents, never over capacity."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from sdk.agent import AgentClient, TaskContext
from tests.support import eventually, request, subject

CAPABILITIES = {"plain": ["cpu"], "gpu": ["cpu", "gpu"], "fpga": ["cpu", "fpga"]}
REQUIREMENTS = [[], ["cpu"], ["gpu"], ["fpga"], ["cpu", "gpu"]]


async def start_agents(nats_server, names, capabilities, handler, capacity=5):
    agents = []
    for agent_id, caps in capabilities.items():
        agent = AgentClient(agent_id, caps, capacity=capacity, nats_url=nats_server.url,
                            prefix=names.prefix, handlers={"*": handler})
        await agent.start()
        agents.append(agent)
    return agents


async def test_300_mixed_tasks_complete_once_on_capable_agents_within_capacity(
    orchestrator, nc, names, nats_server
):
    rng = random.Random(7)
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()

    async def work(ctx: TaskContext) -> str:
        agent = ctx.client.agent_id
        running[agent] += 1
        most[agent] = max(most[agent], running[agent])
        await asyncio.sleep(rng.random() * 0.005)
        running[agent] -= 1
        return agent

    agents = await start_agents(nats_server, names, CAPABILITIES, work)
    try:
        requires = {}
        for i in range(300):
            requires[f"t{i}"] = rng.choice(REQUIREMENTS)
            reply = await request(nc, subject(names, "task.submit"), {
                "task_id": f"t{i}", "kind": "work", "requires": requires[f"t{i}"],
                "priority": rng.randint(-5, 5)})
            assert reply["ok"]
        await eventually(lambda: orchestrator.board.counts().get("completed") == 300,
                         timeout=120, interval=0.1, what="300 tasks completed")
    finally:
        for agent in agents:
            await agent.stop(deregister=False)

    events = await orchestrator.store.read(limit=100_000, subject_filter=names.kind_events("task"))
    completions = Counter(e.aggregate_id for e in events if e.name == "Completed")
    assert set(completions) == set(requires) and set(completions.values()) == {1}
    for event in events:
        if event.name == "Completed":
            agent_id = event.data()["agent_id"]
            assert set(requires[event.aggregate_id]) <= set(CAPABILITIES[agent_id])
    assert max(replayed_loads(events).values()) <= 5
    assert max(most.values()) <= 5


def replayed_loads(events) -> dict[str, int]:
    """The highest number of open tasks each agent held at any point of the log."""
    holder: dict[str, str] = {}
    load: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    for event in events:
        if event.name in ("Assigned", "Reassigned"):
            if event.aggregate_id in holder:
                load[holder[event.aggregate_id]] -= 1
            holder[event.aggregate_id] = event.data()["agent_id"]
            load[holder[event.aggregate_id]] += 1
            peak[holder[event.aggregate_id]] = max(peak[holder[event.aggregate_id]],
                                                   load[holder[event.aggregate_id]])
        elif event.name in ("Completed", "Failed", "DeadLettered", "Cancelled", "Requeued"):
            agent_id = holder.pop(event.aggregate_id, None)
            if agent_id:
                load[agent_id] -= 1
    return dict(peak)


async def test_least_loaded_spreads_work_evenly_over_equal_agents(
    orchestrator, nc, names, nats_server
):
    release = asyncio.Event()

    async def hold(ctx: TaskContext) -> None:
        await release.wait()

    equal = {"e1": ["cpu"], "e2": ["cpu"], "e3": ["cpu"]}
    agents = await start_agents(nats_server, names, equal, hold)
    try:
        for i in range(13):
            await request(nc, subject(names, "task.submit"), {"task_id": f"t{i}", "kind": "w"})
        await eventually(lambda: sum(orchestrator.board.load(a) for a in equal) == 13,
                         what="13 tasks placed")
        loads = sorted(orchestrator.board.load(a) for a in equal)
        assert loads == [4, 4, 5]  # within 1 of each other
    finally:
        release.set()
        for agent in agents:
            await agent.stop(deregister=False)


async def test_queued_tasks_are_served_by_priority_then_age(
    orchestrator, nc, names, nats_server
):
    for i, priority in enumerate([0, 5, 0, 9, 5, -1]):
        await request(nc, subject(names, "task.submit"),
                      {"task_id": f"t{i}", "kind": "w", "priority": priority})

    async def quick(ctx: TaskContext) -> None:
        return None

    [agent] = await start_agents(nats_server, names, {"only": ["cpu"]}, quick, capacity=1)
    try:
        await eventually(lambda: orchestrator.board.counts().get("completed") == 6)
    finally:
        await agent.stop(deregister=False)
    events = await orchestrator.store.read(subject_filter=names.kind_events("task"))
    order = [e.aggregate_id for e in events if e.name == "Assigned"]
    assert order == ["t3", "t1", "t4", "t0", "t2", "t5"]


async def test_a_task_goes_only_to_an_agent_that_runs_its_kind(orchestrator, nc, names,
                                                                nats_server):
    # An echo task used to go to an agent whose only handler was resize, and was
    # dead-lettered at once ("no handler for kind echo").
    async def resize(ctx: TaskContext) -> str:
        return "resized"

    resizer = AgentClient("resizer", ["cpu"], capacity=5, nats_url=nats_server.url,
                          prefix=names.prefix, handlers={"resize": resize})
    await resizer.start()
    try:
        await request(nc, subject(names, "task.submit"), {"task_id": "e1", "kind": "echo"})
        await request(nc, subject(names, "task.submit"), {"task_id": "r1", "kind": "resize"})
        await eventually(lambda: orchestrator.board.get("r1").status == "completed",
                         what="the resize task completed")
        assert orchestrator.board.get("e1").status == "pending"

        async def echo(ctx: TaskContext) -> object:
            return ctx.payload

        echoer = AgentClient("echoer", ["cpu"], capacity=1, nats_url=nats_server.url,
                             prefix=names.prefix, handlers={"echo": echo})
        await echoer.start()
        try:
            await eventually(lambda: orchestrator.board.get("e1").status == "completed",
                             what="the echo task completed on the echo agent")
            assert orchestrator.board.get("e1").agent_id == "echoer"
        finally:
            await echoer.stop()
    finally:
        await resizer.stop()
