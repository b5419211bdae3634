"""At least once, with the double work bounded: an agent a task moved off while it was
still alive (declared dead while it worked on) is told to stop, and the SDK cancels the
handler (issue 33, item 6); an agent given the same task again keeps working on it."""

from __future__ import annotations

import asyncio
from typing import Any

from infra.names import Names
from sdk.agent import AgentClient, TaskContext
from tests.support import eventually, request, subject


async def test_the_agent_a_task_moved_off_is_told_to_stop(orchestrator, nats_server, prefix,
                                                          nc):
    release = asyncio.Event()
    started: list[str] = []
    cancelled: list[str] = []

    def worker(agent_id: str) -> AgentClient:
        async def work(ctx: TaskContext) -> Any:
            started.append(agent_id)
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.append(agent_id)
                raise
            return agent_id

        return AgentClient(agent_id, nats_url=nats_server.url, prefix=prefix,
                           handlers={"work": work})

    first = worker("a1")
    await first.start()
    second = worker("a2")
    try:
        reply = await request(nc, subject(Names(prefix), "task.submit"),
                              {"task_id": "t1", "kind": "work"})
        assert reply["ok"], reply
        await eventually(lambda: started == ["a1"], what="a1 at work on t1")
        await second.start()
        first.heartbeats_paused = True  # alive and working, but silent: declared dead
        await eventually(lambda: started == ["a1", "a2"], timeout=20,
                         what="t1 moved to a2")
        await eventually(lambda: cancelled == ["a1"], what="a1 told to stop, its handler "
                                                            "cancelled")
        release.set()
        await eventually(lambda: (t := orchestrator.board.get("t1")) and
                         t.status == "completed", what="t1 completed")
        assert orchestrator.board.get("t1").agent_id == "a2"
        history = await orchestrator.store.history("task", "t1")
        assert [e.name for e in history].count("Completed") == 1
    finally:
        first.heartbeats_paused = False
        await first.stop(deregister=False)
        await second.stop(deregister=False)
