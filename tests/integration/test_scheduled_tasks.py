"""Tasks submitted to run later, on a real nats-server: placed not before their time,
said so by why, and placed on time by the next leader when the one that took the submit
is killed meanwhile."""

from __future__ import annotations

import time
from typing import Any

from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from sdk.agent import AgentClient, TaskContext
from sdk.client import Client
from tests.processes import OrchestratorProcess
from tests.support import eventually, get_json, request, subject


async def echo(ctx: TaskContext) -> Any:
    return ctx.payload


async def test_a_delayed_task_waits_as_scheduled_then_runs(orchestrator, nats_server,
                                                         prefix):
    agent = AgentClient("w1", nats_url=nats_server.url, prefix=prefix,
                        handlers={"echo": echo})
    await agent.start()
    client = await Client.connect(nats_server.url, identity="ci", subject_prefix=prefix)
    try:
        handle = await client.submit("echo", "later", task_id="t1", delay_s=1.0)
        assert orchestrator.board.get("t1").status == "scheduled"
        _, _, why = await get_json(
            f"http://127.0.0.1:{orchestrator.http_port}/v1/tasks/t1/why")
        assert why["waiting"]["summary"].startswith("waiting for its scheduled time: due at")
        assert await handle.result(timeout=15) == "later"
        history = await orchestrator.store.history("task", "t1")
        not_before = history[0].data()["not_before"]
        assigned = next(e for e in history if e.name == "Assigned")
        assert assigned.recorded_at.timestamp() >= not_before
    finally:
        await client.close()
        await agent.stop()


async def test_a_scheduled_task_survives_the_leader_that_took_it(orchestrators, nats_server,
                                                                nc, names):
    for orch in orchestrators:
        orch.start()
    for orch in orchestrators:
        await eventually(orch.ready, timeout=30, what="ready")

    async def leader() -> OrchestratorProcess | None:
        found = [o for o in orchestrators if o.alive and await o.is_leader()]
        return found[0] if len(found) == 1 else None

    first = await eventually(leader, timeout=10, what="a leader")
    agent = AgentClient("w1", nats_url=nats_server.url, prefix=names.prefix,
                        handlers={"echo": echo})
    await agent.start()
    try:
        reply = await request(nc, subject(names, "task.submit"),
                              {"task_id": "t1", "kind": "echo", "delay_s": 4.0})
        assert reply["status"] == "scheduled"
        first.kill9()  # before its time comes
        killed = time.time()
        survivor = await eventually(leader, timeout=10, what="the other took over")
        assert survivor is not first
        store = EventStore(nc.jetstream(), names, create_mapper())

        async def completed() -> bool:
            return any(e.name == "Completed" for e in await store.history("task", "t1"))

        await eventually(completed, timeout=30, what="t1 completed")
        history = await store.history("task", "t1")
        not_before = history[0].data()["not_before"]
        assert not_before > killed  # it was still to come when the leader died
        [assigned] = [e for e in history if e.name == "Assigned"]
        assert assigned.recorded_at.timestamp() >= not_before
        assert [e.name for e in history].count("Completed") == 1
    finally:
        await agent.stop(deregister=False)
