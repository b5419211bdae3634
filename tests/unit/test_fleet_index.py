"""The dispatcher's index of candidates, kept by the projections' change notices, equals
the fleet made afresh from them after any history: agents registering, draining, falling
ill and leaving; tasks placed (in flight, then applied), finished and requeued; and a
snapshot's restore replacing the projections' dictionaries."""

from __future__ import annotations

import contextlib
import random

import pytest

from domain.agents.agent import Agent
from domain.errors import CommandRefused
from domain.tasks.placement import Candidate, Strategy
from domain.tasks.task import Task
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.position import Position
from services.leader.fleet import Fleet
from tests.unit.log_events import Log


def afresh(agents: AgentHealth, board: TaskBoard, extra: dict[str, int]) -> dict[str, Candidate]:
    """The definition: every healthy agent, its load its open tasks and those in flight."""
    return {
        v.agent_id: Candidate(v.agent_id, v.incarnation, frozenset(v.capabilities),
                              v.capacity, board.load(v.agent_id) + extra.get(v.agent_id, 0),
                              v.status, frozenset(v.kinds))
        for v in agents.agents.values() if v.status == "healthy"}


class World:
    def __init__(self) -> None:
        self.log = Log()
        self.agents, self.board, self.position = AgentHealth(), TaskBoard(), Position()
        self.fleet = Fleet(self.agents, self.board, self.position)
        self.applied = 0
        self.in_flight: dict[str, str] = {}  # task id -> agent, reserved and not applied

    def apply(self) -> None:
        for event in self.log.events[self.applied:]:
            self.agents.apply(event)
            self.board.apply(event)
            self.position.advance(event.position)
        self.applied = len(self.log.events)

    def extra(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for agent_id in self.in_flight.values():
            counts[agent_id] = counts.get(agent_id, 0) + 1
        return counts


@pytest.mark.parametrize("seed", range(12))
def test_the_index_is_the_fleet_made_afresh_after_any_history(seed: int) -> None:
    rng = random.Random(seed)
    world = World()
    agents: dict[str, Agent] = {}
    tasks: dict[str, Task] = {}
    plan = world.fleet.plan(Strategy.LEAST_LOADED)
    for step in range(400):
        roll = rng.random()
        if roll < 0.15 or not agents:
            agent_id = f"a{rng.randrange(12)}"
            agent = Agent(agent_id, rng.choice([["cpu"], ["cpu", "gpu"]]),
                          rng.choice([1, 2, 5]), {}, [])
            agents[agent_id] = agent
            world.log.record("agent", agent)
        elif roll < 0.25:
            agent = rng.choice(list(agents.values()))
            with contextlib.suppress(CommandRefused):  # it left already, or is dead
                change = rng.randrange(3)
                if change == 0:
                    agent.drain()
                elif change == 1:
                    agent.declare_dead(agent.incarnation, 5.0, 5.0, 0)
                else:
                    agent.deregister(agent.incarnation)
            world.log.record("agent", agent)
        elif roll < 0.55:
            task = Task(f"t{step}", "k", None, [], 0, 3, 30.0, "f")
            tasks[task.id] = task
            world.log.record("task", task)
            healthy = [a for a in world.fleet.candidates() if a.free > 0]
            if healthy:
                chosen = rng.choice(healthy).agent_id
                world.fleet.reserve(task.id, chosen)
                world.in_flight[task.id] = chosen
                task.assign(chosen, 1, f"tok-{task.id}", "least_loaded", [], 0.0)
                world.log.record("task", task)  # written; applied below, some time
        elif roll < 0.8 and tasks:
            task = rng.choice(list(tasks.values()))
            if task.status in ("assigned", "running"):
                task.complete(task.token or "", None) if task.status == "running" else (
                    task.accept(task.token or ""))
                world.log.record("task", task)
        else:
            world.apply()
            for task_id in list(world.in_flight):
                world.fleet.note(task_id, world.in_flight.pop(task_id), world.log.events[-1]
                                 .position)
        if rng.random() < 0.05:  # a restore: the projections' dictionaries replaced
            world.agents.agents = dict(world.agents.agents)
        assert {c.agent_id: c for c in world.fleet.candidates()} == afresh(
            world.agents, world.board, world.extra())
        plan = world.fleet.plan(Strategy.LEAST_LOADED)
        assert plan.candidates == afresh(world.agents, world.board, world.extra())
