"""A leader duty on the in-memory event log: the dispatcher places submitted tasks on a
registered agent within its capacity, and places the next when one finishes. The same
handlers, projections and duty as the product, with no server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from domain.agents.commands import RegisterAgent
from domain.errors import CommandRefused
from domain.tasks.commands import CompleteTask, ReportProgress, SubmitTask
from domain.tasks.placement import Strategy
from infra.caller import current_identity
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.repository import Repository
from infra.names import Names
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.fleet.catalog import Catalog
from projections.log_event import LogEvent
from projections.runner import ProjectionRunner
from services.commands import tasks as tasks_module
from services.commands.registry import AgentRegistry, silence_in
from services.commands.tasks import TaskService
from services.jobs import Jobs
from services.leader.dispatcher import Dispatcher
from services.leader.fleet import Fleet
from services.metrics import Metrics
from services.reactions import DISPATCH, TABLE
from tests.support import eventually

NAMES = Names("unit")


@dataclass
class Leader:
    log: InMemoryEventLog
    board: TaskBoard
    registry: AgentRegistry
    tasks: TaskService
    delivered: list[tuple[str, dict[str, Any]]]
    progress: list[tuple[str, float]]

    def status(self, task_id: str) -> tuple[str, str | None] | None:
        view = self.board.get(task_id)
        return None if view is None else (view.status, view.agent_id)


@pytest.fixture
async def leader() -> AsyncIterator[Leader]:
    log = InMemoryEventLog(NAMES, create_mapper())
    agents, board, catalog = AgentHealth(), TaskBoard(), Catalog()
    delivered: list[tuple[str, dict[str, Any]]] = []

    async def publish(subject: str, data: bytes) -> None:
        delivered.append((subject, orjson.loads(data)))

    registry = AgentRegistry(Repository(log, "agent"), NAMES, 1.0, silence_in(agents))
    progress: list[tuple[str, float]] = []

    async def told(task_id: str, value: float) -> None:
        progress.append((task_id, value))

    tasks = TaskService(Repository(log, "task"), NAMES, board, publish, 1.0, 60.0,
                        on_progress=told)
    metrics = Metrics()

    async def on_applied(event: LogEvent) -> None:  # the reaction table's dispatch rows
        if DISPATCH in TABLE.get(event.name, ()):
            dispatcher.poke()

    runner = ProjectionRunner(log, [agents, board, catalog], on_applied=on_applied)
    fleet = Fleet(agents, board, runner.position)
    dispatcher = Dispatcher(board, fleet, tasks, Strategy.LEAST_LOADED, 30.0, metrics)
    await runner.start()
    jobs = Jobs()  # as the leader runs its duties: cancelled within a bound
    jobs.spawn("dispatcher", dispatcher.run)
    try:
        yield Leader(log, board, registry, tasks, delivered, progress)
    finally:
        await jobs.cancel("dispatcher")
        await runner.stop()


async def test_tasks_are_placed_within_capacity_and_the_next_when_one_finishes(leader):
    current_identity.set("tests")  # as the command service sets the sender (this task's)
    await leader.registry.register(RegisterAgent(agent_id="a1", capabilities=["cpu"],
                                                 capacity=1))
    for task_id in ("t1", "t2"):
        await leader.tasks.submit(SubmitTask(task_id=task_id, kind="echo"))
    await eventually(lambda: leader.status("t1") == ("assigned", "a1"), what="t1 placed")
    assert leader.status("t2") == ("pending", None)  # a1's one slot is taken
    [(subject, message)] = leader.delivered
    assert subject == NAMES.agent_tasks("a1") and message["task_id"] == "t1"

    current_identity.set("a1")  # the holder reports
    await leader.tasks.complete(CompleteTask(task_id="t1",
                                             token=message["token"], result={"ok": 1}))
    await eventually(lambda: leader.status("t2") == ("assigned", "a1"), what="t2 placed next")
    assert [m["task_id"] for _, m in leader.delivered] == ["t1", "t2"]
    assert leader.status("t1") == ("completed", "a1")

    # Another agent with t2's token is not its holder: refused, nothing written.
    current_identity.set("a2")
    before = await leader.log.last_position()
    with pytest.raises(CommandRefused):
        await leader.tasks.complete(CompleteTask(task_id="t2",
                                                 token=leader.delivered[1][1]["token"]))
    assert await leader.log.last_position() == before
    history = await leader.log.history("task", "t2")
    assert [(e.name, e.identity) for e in history] == [("Submitted", "tests"),
                                                       ("Assigned", "orchestrator")]


async def test_progress_is_written_now_and_then_and_told_every_time(leader, monkeypatch):
    current_identity.set("tests")
    await leader.registry.register(RegisterAgent(agent_id="a1", capabilities=["cpu"]))
    await leader.tasks.submit(SubmitTask(task_id="t1", kind="echo"))
    await eventually(lambda: leader.status("t1") == ("assigned", "a1"), what="t1 placed")
    token = leader.delivered[0][1]["token"]
    current_identity.set("a1")
    # Not accepted yet: the first report starts the run, so it is written.
    first = await leader.tasks.progress(ReportProgress(task_id="t1", token=token,
                                                       progress=0.1))
    assert "position" in first
    await eventually(lambda: leader.status("t1") == ("running", "a1"), what="t1 running")
    for step in range(2, 11):  # within PROGRESS_RECORD_EVERY_S: checked, not written
        reply = await leader.tasks.progress(ReportProgress(task_id="t1", token=token,
                                                           progress=step / 10))
        assert reply["ok"] and reply["status"] == "running" and "position" not in reply
    later = time.time() + tasks_module.PROGRESS_RECORD_EVERY_S
    monkeypatch.setattr(tasks_module.time, "time", lambda: later)
    assert "position" in await leader.tasks.progress(
        ReportProgress(task_id="t1", token=token, progress=0.95))
    names = [e.name for e in await leader.log.history("task", "t1")]
    assert names == ["Submitted", "Assigned", "Progressed", "Progressed"]
    assert [value for _, value in leader.progress] == [
        0.1, *(step / 10 for step in range(2, 11)), 0.95]
    # A stale token is refused whether or not the report would have been written.
    with pytest.raises(CommandRefused):
        await leader.tasks.progress(ReportProgress(task_id="t1", token="not-it",
                                                   progress=0.5))
