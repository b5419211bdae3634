"""Gray failure on the in-memory event log: an agent that heartbeats but leaves its
assignments unaccepted is taken out of placement, readmitted after its hold, and its
tasks' unaccepted assignments count as failed attempts, so none loops for ever. The same
handlers, projections and dispatcher as the product; each decision read from the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from domain.agents.agent import Agent
from domain.agents.commands import RegisterAgent
from domain.errors import CommandRefused
from domain.tasks.commands import ReportProgress, SubmitTask, TaskToken
from domain.tasks.placement import Strategy
from domain.tasks.task import ACCEPT_TIMEOUT, NO_PROGRESS, Task, TaskStatus
from infra.caller import current_identity
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.repository import Repository
from infra.names import Names
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.log_event import LogEvent
from projections.runner import ProjectionRunner
from services.commands.registry import AgentRegistry, silence_in
from services.commands.tasks import TaskService
from services.jobs import Jobs
from services.leader.dispatcher import Dispatcher
from services.leader.fleet import Fleet
from services.leader.unresponsive import Unresponsiveness, hold_for
from services.metrics import Metrics
from services.reactions import DISPATCH, TABLE
from tests.support import eventually

NAMES = Names("unit")
ACCEPT_S, HOLD_S, QUIET_FLOOR_S = 0.2, 0.5, 0.3


# --- the aggregates -----------------------------------------------------------------

def new_task(max_attempts: int = 3) -> Task:
    task = Task("t1", "echo", {}, [], 0, max_attempts, 60.0, "f")
    task.assign("a1", 1, "tok1", "least_loaded", [], now=0.0)
    task.collect_events()
    return task


def test_an_unaccepted_assignment_counts_as_a_failed_attempt() -> None:
    task = new_task()
    task.reassign("a2", 1, "tok2", ACCEPT_TIMEOUT, "least_loaded", [])
    task.requeue(ACCEPT_TIMEOUT)
    events = task.collect_events()
    assert [type(e).__name__ for e in events] == ["Reassigned", "Requeued"]
    assert [e.failures for e in events] == [1, 2]  # type: ignore[attr-defined]
    assert task.failures == 2 and task.status == TaskStatus.PENDING


def test_a_move_off_a_dead_agent_is_no_failure_of_the_task() -> None:
    task = new_task()
    task.reassign("a2", 1, "tok2", "agent_dead", "least_loaded", [])
    [moved] = task.collect_events()
    assert moved.failures is None and task.failures == 0  # type: ignore[attr-defined]


def test_the_last_allowed_attempt_left_unaccepted_ends_the_task() -> None:
    task = new_task(max_attempts=2)
    task.requeue(ACCEPT_TIMEOUT)
    task.assign("a1", 1, "tok2", "least_loaded", [], now=0.0)
    task.reassign("a2", 1, "tok3", ACCEPT_TIMEOUT, "least_loaded", [])
    names = [type(e).__name__ for e in task.collect_events()]
    assert names == ["Requeued", "Assigned", "DeadLettered"]
    assert task.status == TaskStatus.DEAD_LETTERED and task.failures == 2
    assert "not accepted within the accept timeout" in (task.error or "")
    with pytest.raises(CommandRefused):
        task.accept("tok2")  # too late: the task has ended


def test_an_agent_is_marked_once_and_readmitted_once() -> None:
    agent = Agent("a1", ["cpu"], 4, {}, [])
    agent.mark_unresponsive(1, ACCEPT_TIMEOUT, ["t1", "t2"], 2, 30.0, 1000.0)
    assert agent.status == "unresponsive"
    with pytest.raises(CommandRefused):
        agent.mark_unresponsive(1, ACCEPT_TIMEOUT, ["t3"], 3, 60.0, 2000.0)
    agent.readmit(1, 1000.0)
    assert agent.status == "healthy"
    with pytest.raises(CommandRefused):
        agent.readmit(1, 1000.0)
    with pytest.raises(CommandRefused):
        agent.mark_unresponsive(2, ACCEPT_TIMEOUT, ["t3"], 2, 30.0, 1000.0)  # not its own


def test_the_hold_doubles_with_each_assignment_left_unaccepted_past_the_threshold() -> None:
    assert [hold_for(streak, 2, 30.0) for streak in (2, 3, 4, 9)] == [30.0, 60.0, 120.0, 480.0]


# --- the leader on the in-memory log --------------------------------------------------

@dataclass
class World:
    log: InMemoryEventLog
    agents: AgentHealth
    board: TaskBoard
    registry: AgentRegistry
    tasks: TaskService
    delivered: list[tuple[str, dict[str, Any]]]  # (subject, message)

    def offers_to(self, agent_id: str) -> list[dict[str, Any]]:
        return [m for s, m in self.delivered if s == NAMES.agent_tasks(agent_id)]

    def revokes_to(self, agent_id: str) -> list[dict[str, Any]]:
        return [m for s, m in self.delivered
                if s == NAMES.agent_control(agent_id) and m.get("type") == "revoke"]

    async def agent(self, agent_id: str, progress_every_s: float | None = None) -> None:
        current_identity.set(agent_id)
        await self.registry.register(RegisterAgent(agent_id=agent_id, capacity=4,
                                                   progress_every_s=progress_every_s))

    async def progress(self, agent_id: str, offer: dict[str, Any], done: float) -> None:
        current_identity.set(agent_id)
        await self.tasks.progress(ReportProgress(task_id=offer["task_id"],
                                                 token=offer["token"], progress=done))

    async def submit(self, task_id: str, max_attempts: int = 3) -> None:
        current_identity.set("ci")
        await self.tasks.submit(SubmitTask(task_id=task_id, kind="echo",
                                           max_attempts=max_attempts))

    async def accept(self, agent_id: str, offer: dict[str, Any]) -> None:
        current_identity.set(agent_id)
        await self.tasks.accept(TaskToken(task_id=offer["task_id"], token=offer["token"]))

    async def events(self, *names: str) -> list[LogEvent]:
        return [e async for e in self.log.iterate(0) if e.name in names]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    log = InMemoryEventLog(NAMES, create_mapper())
    agents, board = AgentHealth(), TaskBoard()
    delivered: list[tuple[str, dict[str, Any]]] = []

    async def publish(subject: str, data: bytes) -> None:
        delivered.append((subject, orjson.loads(data)))

    registry = AgentRegistry(Repository(log, "agent"), NAMES, 1.0, silence_in(agents))
    tasks = TaskService(Repository(log, "task"), NAMES, board, publish, 1.0, 60.0)
    # Progress kept in the log this often at most: the quiet floor is three of these.
    tasks.progress_record_every_s = QUIET_FLOOR_S / 3
    metrics = Metrics()

    async def on_applied(event: LogEvent) -> None:
        if DISPATCH in TABLE.get(event.name, ()):
            dispatcher.poke()

    runner = ProjectionRunner(log, [agents, board], on_applied=on_applied)
    dispatcher = Dispatcher(
        board, Fleet(agents, board, runner.position), tasks, Strategy.LEAST_LOADED, ACCEPT_S,
        metrics, unresponsive=Unresponsiveness(agents, board, registry, runner.position,
                                               metrics, after=2, hold=HOLD_S,
                                               quiet_floor_s=QUIET_FLOOR_S))
    await runner.start()
    jobs = Jobs()
    jobs.spawn("dispatcher", dispatcher.run)
    try:
        yield World(log, agents, board, registry, tasks, delivered)
    finally:
        await jobs.cancel("dispatcher")
        await runner.stop()


def status(world: World, agent_id: str) -> str | None:
    view = world.agents.get(agent_id)
    return None if view is None else view.status


async def test_the_only_agent_never_accepting_ends_out_of_placement_and_the_task_ends(
        world: World) -> None:
    await world.agent("gray")
    await world.submit("t1", max_attempts=3)

    await eventually(lambda: status(world, "gray") == "unresponsive", timeout=10,
                     what="marked unresponsive after two assignments left unaccepted")
    [marked] = await world.events("MarkedUnresponsive")
    assert marked.aggregate_id == "gray"
    assert marked.data()["streak"] == 2 and marked.data()["tasks"] == ["t1", "t1"]
    assert marked.data()["reason"] == ACCEPT_TIMEOUT
    assert marked.data()["hold_s"] == HOLD_S
    view = world.board.get("t1")
    assert view is not None and view.status == "pending" and view.failures == 2
    assert len(world.offers_to("gray")) == 2  # not offered while out of placement

    # Its hold over, it is tried once more: left unaccepted, the task's third and last
    # attempt ends it, and the agent is out again for twice as long.
    await eventually(lambda: (v := world.board.get("t1")) is not None
                     and v.status == "dead_lettered", timeout=10, what="t1 ends")
    await eventually(lambda: len(world.agents.unresponsive) == 1, what="marked again")
    names = [e.name for e in await world.events("MarkedUnresponsive", "Readmitted",
                                                "DeadLettered")]
    assert names == ["MarkedUnresponsive", "Readmitted", "DeadLettered",
                     "MarkedUnresponsive"]
    again = (await world.events("MarkedUnresponsive"))[-1]
    assert again.data()["streak"] == 3 and again.data()["hold_s"] == 2 * HOLD_S
    [ended] = await world.events("DeadLettered")
    assert ended.data()["reason"] == ACCEPT_TIMEOUT and ended.data()["failures"] == 3
    # Requeued off it, each would come back to it under a newer token: not revoked.
    # Ended, the last assignment is revoked by its token.
    assert [r["token"] for r in world.revokes_to("gray")] == [
        world.offers_to("gray")[-1]["token"]]


async def test_an_unresponsive_agent_gets_no_work_while_a_healthy_one_does(
        world: World) -> None:
    await world.agent("gray")
    await world.submit("t1")
    await world.submit("t2")
    await eventually(lambda: status(world, "gray") == "unresponsive", timeout=10,
                     what="gray marked")
    await world.agent("good")
    await eventually(lambda: len(world.offers_to("good")) == 2, timeout=10,
                     what="both tasks offered to the healthy agent")
    assert {o["task_id"] for o in world.offers_to("good")} == {"t1", "t2"}


async def test_an_agent_that_accepts_again_is_back_for_good(world: World) -> None:
    await world.agent("slow")
    await world.submit("t1", max_attempts=5)
    await eventually(lambda: status(world, "slow") == "unresponsive", timeout=10,
                     what="marked")
    await eventually(lambda: len(world.offers_to("slow")) == 3, timeout=10,
                     what="offered again once readmitted")
    await world.accept("slow", world.offers_to("slow")[-1])  # it works again
    await eventually(lambda: (v := world.board.get("t1")) is not None
                     and v.status == "running", what="running")
    assert world.board.unaccepted.of("slow", 1) is None  # its streak is over
    await world.submit("t2", max_attempts=5)
    await eventually(lambda: len(world.offers_to("slow")) == 4, what="t2 offered")
    await world.accept("slow", world.offers_to("slow")[-1])
    assert status(world, "slow") == "healthy"
    assert len(await world.events("MarkedUnresponsive")) == 1


def test_a_restored_projection_knows_its_unresponsive_agents() -> None:
    agents = AgentHealth()
    from datetime import UTC, datetime

    from projections.fleet.agents import AgentView
    at = datetime.now(UTC)
    agents.agents = {
        "a": AgentView("a", 1, [], 1, {}, [], at, at, unresponsive_until=5.0),
        "b": AgentView("b", 1, [], 1, {}, [], at, at, liveness="dead", unresponsive_until=5.0),
        "c": AgentView("c", 1, [], 1, {}, [], at, at),
    }
    agents.reindex()
    assert agents.unresponsive == {"a": 5.0}


async def test_an_agent_that_promised_progress_and_goes_quiet_is_taken_out(
        world: World) -> None:
    await world.agent("quiet", progress_every_s=0.05)  # quiet after max(0.15, floor 0.3)
    await world.submit("t1", max_attempts=5)
    for n in (1, 2):  # it accepts each time, then says nothing
        await eventually(lambda: len(world.offers_to("quiet")) == n, timeout=10,  # noqa: B023
                         what=f"offer {n}")
        await world.accept("quiet", world.offers_to("quiet")[-1])
    await eventually(lambda: status(world, "quiet") == "unresponsive", timeout=10,
                     what="marked for going quiet twice")
    [marked] = await world.events("MarkedUnresponsive")
    assert marked.data()["reason"] == NO_PROGRESS and marked.data()["streak"] == 2
    moves = [e for e in await world.events("Requeued") if e.data()["reason"] == NO_PROGRESS]
    assert [e.data()["failures"] for e in moves] == [1, 2]
    assert all(getattr(e, "causation_id", "").startswith("quiet-") for e in moves)
    # Running work moved off it is revoked: both accepted assignments.
    assert len(world.revokes_to("quiet")) == 2


async def test_a_run_that_reports_progress_as_promised_is_left_alone(world: World) -> None:
    await world.agent("steady", progress_every_s=0.05)
    await world.submit("t1")
    await eventually(lambda: len(world.offers_to("steady")) == 1, what="offered")
    offer = world.offers_to("steady")[0]
    await world.accept("steady", offer)
    quiet_for = 0.3  # the floor: what a silent run may last here
    loop = asyncio.get_running_loop()
    until = loop.time() + 4 * quiet_for
    done = 0.0
    while loop.time() < until:  # progress more often than the promise, for a while
        done = min(0.99, done + 0.01)
        # Recorded at most every few seconds in the log (PROGRESS_RECORD_EVERY_S), so
        # the run's recorded activity is what the floor is set against.
        await world.progress("steady", offer, done)
        await asyncio.sleep(0.02)
    assert world.board.get("t1").status == "running"  # type: ignore[union-attr]
    assert await world.events("MarkedUnresponsive", "Requeued", "Reassigned") == []
