"""The health monitor's schedule, on a fake clock: each agent is looked at when its next
deadline falls due, heartbeats postpone it, and a tick costs the agents due, not the fleet.

The registry is a stand-in that applies each decision to the projection at once, as the
log and the projection runner would; the monitor's own logic is what is under test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.health import DetectorSettings
from projections.agents import AgentHealth, AgentView
from projections.position import Position
from services.execute import Outcome
from services.health_monitor import HealthMonitor
from services.metrics import Metrics

SETTINGS = DetectorSettings(suspect_after=3.0, dead_after=5.0, heartbeat_interval=1.0)
LIVENESS = {"suspect": "suspect", "declare_dead": "dead", "recover": "alive"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Decisions:
    """Records decisions and applies them to the projection, as the log would."""

    def __init__(self, projection: AgentHealth) -> None:
        self.projection = projection
        self.made: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        if name not in LIVENESS:
            raise AttributeError(name)

        async def decide(agent_id: str, *args: Any, **kwargs: Any) -> Outcome:
            self.made.append((name, agent_id))
            self.projection.agents[agent_id].liveness = LIVENESS[name]
            return Outcome(None, [])

        return decide


async def no_newer_heartbeat(agent_id: str) -> None:
    return None


class World:
    def __init__(self, agents: int) -> None:
        self.clock = Clock()
        self.projection = AgentHealth()
        at = datetime.now(UTC)
        for i in range(agents):
            self.projection.agents[f"a{i}"] = AgentView(f"a{i}", 1, [], 1, {}, [], at, at)
        self.decisions = Decisions(self.projection)
        self.monitor = HealthMonitor(
            self.projection, Position(), self.decisions, SETTINGS,  # type: ignore[arg-type]
            no_newer_heartbeat, lambda: True, Metrics(), clock=self.clock)
        self.looks = 0
        look = self.monitor._look

        def counted(agent_id: str, now: float) -> None:
            self.looks += 1
            look(agent_id, now)

        self.monitor._look = counted  # type: ignore[method-assign]

    def enrol(self) -> None:
        """What run() does first: every agent is scheduled at its next deadline."""
        self.monitor._running = True
        self.monitor._enrol()

    async def at(self, now: float) -> None:
        """Advance the clock and tick; let the decisions it started finish."""
        self.clock.now = now
        self.monitor.tick(now)
        for task in list(self.monitor._tasks):
            await task

    def heartbeat(self, agent_id: str) -> None:
        self.monitor.saw(agent_id, 1, 1)


@pytest.fixture
def world() -> World:
    fleet = World(agents=1000)
    fleet.enrol()
    return fleet


async def test_a_silent_agent_is_suspected_then_declared_dead_at_its_deadlines(
        world: World) -> None:
    await world.at(100.0)  # first noticed: deadlines start now
    for i in range(1, 1000):
        world.heartbeat(f"a{i}")  # all but a0 keep heartbeating
    await world.at(102.9)
    assert world.decisions.made == []
    for i in range(1, 1000):
        world.heartbeat(f"a{i}")
    await world.at(103.0)
    assert world.decisions.made == [("suspect", "a0")]
    await world.at(104.99)
    assert world.decisions.made == [("suspect", "a0")]
    await world.at(105.0)
    assert world.decisions.made == [("suspect", "a0"), ("declare_dead", "a0")]


async def test_a_tick_costs_the_agents_due_not_the_fleet(world: World) -> None:
    for step in range(0, 100):  # ~2.5 s of 25 ms ticks, everyone heartbeating
        for i in range(1000):
            world.heartbeat(f"a{i}")
        await world.at(100.0 + step * 0.025)
    assert world.looks == 0, "nobody was due: no agent looked at"
    await world.at(103.0)  # each agent's deadline (from t=100) comes up once...
    assert world.looks == 1000
    assert world.decisions.made == []  # ...and is put back: they heartbeated
    await world.at(104.0)
    assert world.looks == 1000


async def test_deadlines_falling_due_together_are_spread_over_ticks(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.health_monitor.MAX_LOOKS_PER_TICK", 300)
    await world.at(103.0)
    assert (world.looks, len(world.decisions.made)) == (300, 300)
    await world.at(103.025)
    await world.at(103.05)
    await world.at(103.075)
    assert (world.looks, len(world.decisions.made)) == (1000, 1000)
    assert {d for d, _ in world.decisions.made} == {"suspect"}


async def test_a_heartbeat_of_a_suspect_brings_a_recovery_at_the_next_tick(
        world: World) -> None:
    await world.at(100.0)
    await world.at(103.0)
    assert ("suspect", "a7") in world.decisions.made
    world.decisions.made.clear()
    world.heartbeat("a7")
    await world.at(103.025)
    assert world.decisions.made == [("recover", "a7")]


async def test_a_restart_of_deadlines_postpones_every_decision(world: World) -> None:
    await world.at(100.0)
    world.clock.now = 102.0
    world.monitor.restart_deadlines("reconnected")
    await world.at(104.9)
    assert world.decisions.made == []
    await world.at(105.0)  # 3 s after it could see again
    assert len(world.decisions.made) == 1000
    assert {d for d, _ in world.decisions.made} == {"suspect"}


async def test_an_agent_registered_later_is_looked_at_once_told(world: World) -> None:
    await world.at(100.0)
    at = datetime.now(UTC)
    world.projection.agents["late"] = AgentView("late", 1, [], 1, {}, [], at, at)
    world.monitor.look_at("late")  # as the app does for every applied agent event
    await world.at(101.0)
    await world.at(104.0)
    assert ("suspect", "late") in world.decisions.made
