"""Tasks end to end: submission, placement, results, retries, cancellation."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from sdk.agent import AgentClient, TaskContext, TaskFailed
from services.app import Orchestrator
from tests.support import eventually, request, subject


@pytest.fixture
async def agents(orchestrator, nats_server, prefix):
    started: list[AgentClient] = []

    async def start(agent_id: str, **kwargs) -> AgentClient:
        agent = AgentClient(agent_id, nats_url=nats_server.url, prefix=prefix, **kwargs)
        await agent.start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        await agent.stop(deregister=False)


async def echo(ctx: TaskContext) -> dict:
    return {"echo": ctx.payload}


def submit_body(task_id: str | None = None, **extra) -> dict:
    body: dict = {"kind": "echo", "payload": {"n": 1}}
    if task_id:
        body["task_id"] = task_id
    body.update(extra)
    return body


class TestSubmitTask:
    async def test_is_idempotent_by_task_id(self, orchestrator, nc, names):
        first = await request(nc, subject(names, "task.submit"), submit_body("t1"))
        again = await request(nc, subject(names, "task.submit"), submit_body("t1"))

        assert first["ok"] and first["task_id"] == "t1" and first["status"] == "pending"
        assert again["ok"] and again["task_id"] == "t1" and "position" not in again
        assert len(await orchestrator.store.history("task", "t1")) == 1

    async def test_a_different_body_under_the_same_id_is_a_conflict(
        self, orchestrator, nc, names
    ):
        await request(nc, subject(names, "task.submit"), submit_body("t1"))
        before = await orchestrator.store.last_position()
        reply = await request(nc, subject(names, "task.submit"),
                              submit_body("t1", payload={"n": 2}))
        assert reply["error"]["code"] == "conflict"
        assert await orchestrator.store.last_position() == before

    async def test_without_an_id_gets_one(self, orchestrator, nc, names):
        reply = await request(nc, subject(names, "task.submit"), submit_body())
        assert reply["ok"] and reply["task_id"].startswith("t-")


class TestLifecycle:
    async def test_a_task_runs_on_a_capable_agent_and_completes(
        self, orchestrator, nc, names, agents
    ):
        await agents("cpu1", capabilities=["cpu"], handlers={"echo": echo})
        gpu = await agents("gpu1", capabilities=["gpu"], handlers={"echo": echo})

        await request(nc, subject(names, "task.submit"), submit_body("t1", requires=["gpu"]))

        await eventually(lambda: (v := orchestrator.board.get("t1")) and
                         v.status == "completed", what="completed")
        view = orchestrator.board.get("t1")
        assert view is not None and view.agent_id == "gpu1"
        assert view.result == {"echo": {"n": 1}}
        assert list(gpu.completed) == ["t1"]
        names_ = [e.name for e in await orchestrator.store.history("task", "t1")]
        assert names_ == ["Submitted", "Assigned", "Accepted", "Completed"]

    async def test_waits_in_the_queue_until_a_capable_agent_appears(
        self, orchestrator, nc, names, agents
    ):
        await request(nc, subject(names, "task.submit"), submit_body("t1", requires=["gpu"]))
        await agents("cpu1", capabilities=["cpu"], handlers={"echo": echo})
        await orchestrator.runner.position.wait_for(2, 5)
        assert orchestrator.board.get("t1").status == "pending"

        await agents("gpu1", capabilities=["gpu"], handlers={"echo": echo})

        await eventually(lambda: orchestrator.board.get("t1").status == "completed")

    async def test_a_retryable_failure_is_retried_with_growing_delays_then_dead_lettered(
        self, orchestrator, nc, names, agents
    ):
        async def broken(ctx: TaskContext) -> None:
            raise TaskFailed("disk full")

        await agents("a1", capabilities=["cpu"], handlers={"echo": broken})
        await request(nc, subject(names, "task.submit"), submit_body("t1", max_attempts=3))

        await eventually(lambda: orchestrator.board.get("t1").status == "dead_lettered",
                         timeout=20, what="dead-lettered")
        history = await orchestrator.store.history("task", "t1")
        failed = [e for e in history if e.name == "Failed"]
        assert [e.data()["retry_in_s"] for e in failed] == [0.2, 0.4]  # backoff doubles
        assigned = [e for e in history if e.name == "Assigned"]
        # Each retry placed not before its backoff's end, the `retry_at` its failure
        # recorded (the Failed event's own time comes a moment after that was decided,
        # so a gap from it may fall short of retry_in_s by that moment).
        assert all(b.recorded_at.timestamp() >= f.data()["retry_at"] - 1e-6  # µs stored
                   for f, b in zip(failed, assigned[1:], strict=True))
        assert history[-1].name == "DeadLettered"
        assert history[-1].data()["failures"] == 3

    async def test_a_non_retryable_failure_is_dead_lettered_at_once(
        self, orchestrator, nc, names, agents
    ):
        async def refuse(ctx: TaskContext) -> None:
            raise TaskFailed("bad input", retryable=False)

        await agents("a1", capabilities=["cpu"], handlers={"echo": refuse})
        await request(nc, subject(names, "task.submit"), submit_body("t1"))
        await eventually(lambda: orchestrator.board.get("t1").status == "dead_lettered")
        assert orchestrator.board.get("t1").failures == 1

    async def test_cancel_stops_a_running_task(self, orchestrator, nc, names, agents):
        started = asyncio.Event()

        async def slow(ctx: TaskContext) -> None:
            started.set()
            await asyncio.Event().wait()  # until cancelled

        agent = await agents("a1", capabilities=["cpu"], handlers={"echo": slow})
        await request(nc, subject(names, "task.submit"), submit_body("t1"))
        await asyncio.wait_for(started.wait(), 10)

        reply = await request(nc, subject(names, "task.cancel"), {"task_id": "t1"})

        assert reply["ok"] and reply["status"] == "cancelled"
        await eventually(lambda: "t1" not in agent.running, what="handler stopped")
        again = await request(nc, subject(names, "task.cancel"), {"task_id": "t1"})
        assert again["ok"] and "position" not in again

    async def test_an_assignment_not_accepted_in_time_goes_to_another_agent(
        self, settings, nc, names, nats_server
    ):
        orch = Orchestrator(replace(settings, accept_timeout=0.5))
        await orch.start()
        sleepy = await nc.subscribe(names.agent_tasks("sleepy"))  # never accepts
        await request(nc, subject(names, "register", "sleepy"),
                      {"agent_id": "sleepy", "capabilities": ["cpu"], "capacity": 5})
        await request(nc, subject(names, "task.submit"), submit_body("t1"))
        await sleepy.next_msg(timeout=10)  # it was offered the task, and says nothing
        good = AgentClient("good", ["cpu"], nats_url=nats_server.url, prefix=names.prefix,
                           handlers={"echo": echo})
        try:
            await good.start()
            await eventually(lambda: orch.board.tasks["t1"].status == "completed",
                             timeout=15, what="completed elsewhere")
            history = await orch.store.history("task", "t1")
            moved = [e for e in history if e.name == "Reassigned"]
            assert moved and moved[0].data()["reason"] == "accept_timeout"
            assert moved[0].data()["from_agent"] == "sleepy"
            assert orch.board.tasks["t1"].agent_id == "good"
        finally:
            await good.stop(deregister=False)
            await orch.stop()


async def test_a_task_running_past_its_timeout_fails_and_is_retried(
    orchestrator, nc, names, agents
):
    calls: list[int] = []

    async def slow_then_quick(ctx: TaskContext) -> str:
        calls.append(ctx.assignment.attempt)
        if ctx.assignment.attempt == 1:
            await asyncio.Event().wait()  # hangs until revoked
        return "done"

    agent = await agents("a1", capabilities=["cpu"], handlers={"echo": slow_then_quick})
    await request(nc, subject(names, "task.submit"), submit_body("t1", timeout_s=0.3))

    await eventually(lambda: orchestrator.board.tasks["t1"].status == "completed",
                     timeout=15, what="completed on the second attempt")
    history = await orchestrator.store.history("task", "t1")
    failed = next(e for e in history if e.name == "Failed")
    assert failed.data()["error"].startswith("timed out")
    assert calls == [1, 2]
    assert "t1" in agent.completed
