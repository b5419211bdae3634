"""Failover on the in-memory event log: the same handlers, projections, dispatcher and
reactor as the product, the reactor fed by the in-memory durable feed
(infra.log.durable_memory). An agent declared dead has its open tasks moved, each move
caused by the death; a move that fails is given back and made later; a reactor made anew
on the same log goes on from the feed's cursor. Each decision read back from the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

import services.leader.failover as failover
from domain.agents.commands import RegisterAgent
from domain.tasks.commands import SubmitTask
from domain.tasks.placement import Strategy
from infra.caller import current_identity
from infra.log.durable_memory import InMemoryDurable
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.recorded import RecordedEvent, StoreUnavailable
from infra.log.repository import Repository
from infra.names import Names
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.log_event import LogEvent
from projections.runner import ProjectionRunner
from services.commands.registry import AgentRegistry, silence_in
from services.commands.tasks import TaskService
from services.leader.dispatcher import Dispatcher
from services.leader.failover import FailoverReactor
from services.leader.fleet import Fleet
from services.metrics import Metrics
from services.reactions import DISPATCH, TABLE
from tests.support import eventually

NAMES = Names("unit")
MOVES = ("Reassigned", "Requeued")


class Refusing:
    """The task service, its next `refusals` moves failing as a log that does not answer
    (the reactor gives the death back, and moves later)."""

    def __init__(self, tasks: TaskService) -> None:
        self.tasks = tasks
        self.refusals = 0
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tasks, name)

    def _refuse(self) -> None:
        if self.refusals:
            self.refusals -= 1
            self.refused += 1
            raise StoreUnavailable("the log did not answer")

    async def reassign(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse()
        return await self.tasks.reassign(*args, **kwargs)

    async def requeue(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse()
        return await self.tasks.requeue(*args, **kwargs)


class Recorded(FailoverReactor):
    """The reactor, each event it reacts to recorded."""

    reacted: list[str]

    async def react(self, event: RecordedEvent) -> None:
        self.reacted.append(event.event_id)
        await super().react(event)


@dataclass
class Leader:
    log: InMemoryEventLog
    agents: AgentHealth
    board: TaskBoard
    registry: AgentRegistry
    tasks: Refusing
    fleet: Fleet
    runner: ProjectionRunner
    reactors: list[asyncio.Task[None]] = field(default_factory=list)

    def failover(self) -> Recorded:
        """A reactor made anew, as a new leader makes it, on the feed of the same log."""
        feed = InMemoryDurable(self.log, failover.failover_feed(NAMES))
        reactor = Recorded(feed, self.board, self.fleet, self.tasks, self.runner.position,
                           Strategy.LEAST_LOADED, Metrics())
        reactor.reacted = []
        self.reactors.append(asyncio.ensure_future(reactor.run()))
        return reactor

    async def stop(self, reactor: int = -1) -> None:
        running = self.reactors[reactor]
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    async def agent(self, agent_id: str) -> None:
        """Registered, and known to placement."""
        current_identity.set(agent_id)
        await self.registry.register(RegisterAgent(agent_id=agent_id, capacity=4))
        await eventually(lambda: self.agents.get(agent_id), what=f"{agent_id} applied")

    async def submit(self, *task_ids: str) -> None:
        current_identity.set("ci")
        for task_id in task_ids:
            await self.tasks.submit(SubmitTask(task_id=task_id, kind="echo"))

    async def declare_dead(self, agent_id: str) -> str:
        """The health monitor's decision, as it writes it: the event's id."""
        view = self.agents.get(agent_id)
        assert view is not None
        await self.registry.declare_dead(agent_id, view.incarnation, 12.0, 10.0, 0,
                                         causation_id="silence", correlation_id="silence")
        [death] = [e for e in await self.events("DeclaredDead") if e.aggregate_id == agent_id]
        return death.event_id

    def holder(self, task_id: str) -> str | None:
        view = self.board.get(task_id)
        return None if view is None else view.agent_id

    def held_by(self, agent_id: str, *task_ids: str) -> bool:
        return all(self.holder(task_id) == agent_id for task_id in task_ids)

    async def events(self, *names: str) -> list[RecordedEvent]:
        return [e async for e in self.log.iterate(0) if e.name in names]

    async def moves_of(self, task_id: str) -> list[RecordedEvent]:
        return [e for e in await self.events(*MOVES) if e.aggregate_id == task_id]


@pytest.fixture
async def leader() -> AsyncIterator[Leader]:
    log = InMemoryEventLog(NAMES, create_mapper())
    agents, board = AgentHealth(), TaskBoard()

    async def publish(subject: str, data: bytes) -> None:
        orjson.loads(data)  # offers and revokes, to agents that are not there

    registry = AgentRegistry(Repository(log, "agent"), NAMES, 1.0, silence_in(agents))
    tasks = TaskService(Repository(log, "task"), NAMES, board, publish, 1.0, 60.0)

    async def on_applied(event: LogEvent) -> None:
        if DISPATCH in TABLE.get(event.name, ()):
            dispatcher.poke()

    runner = ProjectionRunner(log, [agents, board], on_applied=on_applied)
    fleet = Fleet(agents, board, runner.position)
    dispatcher = Dispatcher(board, fleet, tasks, Strategy.LEAST_LOADED, 60.0, Metrics())
    tasks.placer = dispatcher.claim
    await runner.start()
    dispatching = asyncio.ensure_future(dispatcher.run())
    made = Leader(log, agents, board, registry, Refusing(tasks), fleet, runner)
    try:
        yield made
    finally:
        for reactor in (*made.reactors, dispatching):
            reactor.cancel()
        await asyncio.gather(*made.reactors, dispatching, return_exceptions=True)
        await runner.stop()


async def assigned_to(leader: Leader, agent_id: str, *task_ids: str) -> None:
    """The tasks submitted while `agent_id` is the only agent: each placed on it."""
    await leader.agent(agent_id)
    await leader.submit(*task_ids)
    await eventually(lambda: leader.held_by(agent_id, *task_ids),
                     what=f"{task_ids} placed on {agent_id}")


async def test_a_dead_agents_open_tasks_move_to_a_healthy_one_caused_by_the_death(
        leader: Leader) -> None:
    await assigned_to(leader, "doomed", "t1", "t2")
    await leader.agent("healthy")
    reactor = leader.failover()
    death = await leader.declare_dead("doomed")

    await eventually(lambda: leader.held_by("healthy", "t1", "t2"), what="both moved")
    for task_id in ("t1", "t2"):
        [moved] = await leader.moves_of(task_id)
        assert moved.name == "Reassigned" and moved.causation_id == death
        assert moved.data()["reason"] == "agent declared dead"
    assert reactor.reacted == [death]


async def test_with_no_agent_to_take_them_a_dead_agents_tasks_are_requeued(
        leader: Leader) -> None:
    await assigned_to(leader, "doomed", "t1")
    leader.failover()
    death = await leader.declare_dead("doomed")

    await eventually(lambda: (view := leader.board.get("t1")) is not None
                     and view.status == "pending", what="t1 back in the queue")
    [requeued] = await leader.moves_of("t1")
    assert requeued.name == "Requeued" and requeued.causation_id == death
    await leader.agent("later")  # the queue's task goes to the next agent that comes
    await eventually(lambda: leader.held_by("later", "t1"), what="t1 placed again")


async def test_a_reaction_that_fails_is_given_back_and_made_later(
        leader: Leader, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "RETRY_AFTER_S", 0.05)
    await assigned_to(leader, "doomed", "t1", "t2")
    await leader.agent("healthy")
    leader.tasks.refusals = 2  # both first moves: the log does not answer
    reactor = leader.failover()
    death = await leader.declare_dead("doomed")

    await eventually(lambda: leader.held_by("healthy", "t1", "t2"), what="both moved")
    assert leader.tasks.refused == 2
    assert reactor.reacted == [death, death]  # given back once, then done
    for task_id in ("t1", "t2"):
        [moved] = await leader.moves_of(task_id)
        assert moved.causation_id == death


async def test_a_reactor_made_anew_on_the_same_log_goes_on_from_the_cursor(
        leader: Leader) -> None:
    await assigned_to(leader, "first", "t1")
    await leader.agent("healthy")
    old = leader.failover()
    first_death = await leader.declare_dead("first")
    await eventually(lambda: leader.held_by("healthy", "t1"), what="t1 moved")
    await eventually(lambda: old.reacted == [first_death], what="the first death handled")
    await leader.stop()  # the lead is lost; the next leader's reactor takes over

    await assigned_to(leader, "second", "t2")
    new = leader.failover()
    second_death = await leader.declare_dead("second")
    await eventually(lambda: leader.held_by("healthy", "t2"), what="t2 moved")
    # The first death was acknowledged: it does not come to the new reactor, and its
    # task moves once, as the second's does.
    assert new.reacted == [second_death]
    assert [e.causation_id for e in await leader.moves_of("t1")] == [first_death]
    assert [e.causation_id for e in await leader.moves_of("t2")] == [second_death]
