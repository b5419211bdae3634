"""An agent dies holding tasks: they move right after its dead deadline, fenced."""

from __future__ import annotations

import asyncio
import time

import orjson

from sdk.agent import AgentClient, TaskContext
from tests.conftest import DEAD_AFTER
from tests.support import eventually, registration, request, subject

SLACK = 1.5  # a loaded 2-core machine; the benchmark measures the real figure


async def test_dead_agents_tasks_move_to_a_healthy_agent_and_its_late_result_is_refused(
    orchestrator, nc, names, nats_server
):
    js = nc.jetstream()
    # The doomed agent speaks raw NATS, so the test controls its every message.
    await request(nc, subject(names, "register", "doomed"), registration("doomed", capacity=3))
    offers = await nc.subscribe(names.agent_tasks("doomed"))
    for i in range(3):
        await request(nc, subject(names, "task.submit"), {"task_id": f"t{i}", "kind": "work"})
    tokens = {}
    for _ in range(3):
        offer = orjson.loads((await offers.next_msg(timeout=10)).data)
        tokens[offer["task_id"]] = offer["token"]
        reply = await request(nc, subject(names, "task.accept", "doomed"),
                              {"task_id": offer["task_id"], "token": offer["token"]})
        assert reply["ok"]

    received: dict[str, float] = {}

    async def work(ctx: TaskContext) -> str:
        received[ctx.task_id] = time.monotonic()
        await asyncio.Event().wait()  # holds the task until the test ends
        return "unreachable"

    rescuer = AgentClient("rescuer", ["cpu"], capacity=5, nats_url=nats_server.url,
                          prefix=names.prefix, handlers={"work": work})
    await rescuer.start()
    try:
        # The doomed agent's last heartbeat; then silence, and its connection is gone.
        await js.publish(names.heartbeat("doomed"), orjson.dumps({"incarnation": 1, "seq": 1}))
        last_beat = time.monotonic()
        await offers.unsubscribe()

        await eventually(lambda: len(received) == 3, timeout=DEAD_AFTER + SLACK + 5,
                         what="all three tasks delivered to the rescuer")
        for task_id, at in received.items():
            assert DEAD_AFTER <= at - last_beat < DEAD_AFTER + SLACK, task_id

        # The presumed-dead agent reports late: fenced off, and the refusal is recorded.
        late = await request(nc, subject(names, "task.complete", "doomed"),
                             {"task_id": "t0", "token": tokens["t0"], "result": "stale"})
        assert late["ok"] is False and late["error"]["code"] == "stale_token"
        await eventually(lambda: orchestrator.board.tasks["t0"].agent_id == "rescuer")
        assert orchestrator.board.tasks["t0"].status == "running"

        history = (await _history(orchestrator, "t0"))["events"]
        kinds = [e["type"] for e in history]
        assert kinds[:3] == ["Submitted", "Assigned", "Accepted"]
        dead = next(e for e in history if e["type"] == "DeclaredDead")
        moved = next(e for e in history if e["type"] == "Reassigned")
        assert dead["aggregate_id"] == "doomed"
        assert moved["causation_id"] == dead["event_id"]
        assert moved["data"]["from_agent"] == "doomed"
        assert moved["data"]["agent_id"] == "rescuer"
        assert moved["data"]["attempt"] == 2
        assert kinds.index("DeclaredDead") < kinds.index("Reassigned")
        refused = next(e for e in history if e["type"] == "StaleResultRefused")
        assert refused["data"]["action"] == "complete"
    finally:
        await rescuer.stop(deregister=False)


async def test_a_forged_token_is_refused_and_not_recorded(orchestrator, nc, names):
    await request(nc, subject(names, "task.submit"), {"task_id": "t1", "kind": "work"})
    before = await orchestrator.store.last_position()
    reply = await request(nc, subject(names, "task.complete", "a1"),
                          {"task_id": "t1", "token": "forged", "result": None})
    assert reply["error"]["code"] == "stale_token"
    assert await orchestrator.store.last_position() == before


async def test_tasks_of_a_deregistered_agent_return_to_the_queue_when_nobody_can_take_them(
    orchestrator, nc, names
):
    await request(nc, subject(names, "register", "solo"), registration("solo"))
    offers = await nc.subscribe(names.agent_tasks("solo"))
    await request(nc, subject(names, "task.submit"), {"task_id": "t1", "kind": "work"})
    await offers.next_msg(timeout=10)

    await request(nc, subject(names, "deregister", "solo"), {"agent_id": "solo", "incarnation": 1})

    await eventually(lambda: orchestrator.board.tasks["t1"].status == "pending",
                     what="requeued")
    history = await orchestrator.store.history("task", "t1")
    assert history[-1].name == "Requeued"
    assert history[-1].data()["reason"] == "agent deregistered"


async def _history(orchestrator, task_id: str) -> dict:
    from tests.support import get_json

    status, _, body = await get_json(
        f"http://127.0.0.1:{orchestrator.http_port}/v1/tasks/{task_id}/history")
    assert status == 200
    return body
