"""A long-running agent keeps the ids of the tasks it completed last, not of every task
it ever ran (one id per task was held for ever)."""

from __future__ import annotations

from typing import Any

from sdk.agent import COMPLETED_KEPT, AgentClient, TaskContext
from sdk.protocol import Assignment


async def echo(ctx: TaskContext) -> str:
    return "done"


async def test_completed_keeps_only_the_newest() -> None:
    agent = AgentClient("a1", handlers={"echo": echo})
    reports: list[str] = []

    async def report(command: str, body: dict[str, Any]) -> dict[str, Any]:
        reports.append(command)
        return {"ok": True}

    agent._report = report  # type: ignore[method-assign]  # no orchestrator needed here
    runs = COMPLETED_KEPT + 5
    for i in range(runs):
        await agent._run(Assignment(task_id=f"t{i}", kind="echo", payload=None, requires=[],
                                    attempt=1, token=f"tok{i:012d}", timeout_s=60.0))
    assert len(reports) == 2 * runs  # each accepted and completed
    assert len(agent.completed) == COMPLETED_KEPT
    assert list(agent.completed)[-1] == f"t{runs - 1}" and "t4" not in agent.completed
    assert agent.running == [] and agent._work == {} and agent._contexts == {}
