"""The health monitor's schedule, on a fake clock: each agent is looked at when its next
deadline falls due, heartbeats postpone it, and a tick costs the agents due, not the fleet.
And its evidence rule: no deadline expires while it cannot see the heartbeat stream as it
is now, and deadlines restart once it can again.

The registry is a stand-in that applies each decision to the projection at once, as the
log and the projection runner would; the monitor's own logic is what is under test. The
bus is a stand-in too: each tick a look at it answers at once with the stream's last
sequence, unless the world says the bus is stalled.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.agents.health import DetectorSettings
from domain.errors import CommandRefused, ErrorCode
from projections.fleet.agents import AgentHealth, AgentView
from projections.position import Position
from services.execute import Outcome
from services.health.monitor import HealthMonitor
from services.metrics import Metrics
from tests.support import eventually

SETTINGS = DetectorSettings(suspect_after=3.0, dead_after=5.0, heartbeat_interval=1.0)
LIVENESS = {"suspect": "suspect", "declare_dead": "dead", "recover": "alive"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Decisions:
    """Records decisions and applies them to the projection, as the log would; or refuses
    them as the command path does when the log cannot be written."""

    def __init__(self, projection: AgentHealth) -> None:
        self.projection = projection
        self.made: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []
        self.unavailable = False

    def __getattr__(self, name: str) -> Any:
        if name not in LIVENESS:
            raise AttributeError(name)

        async def decide(agent_id: str, *args: Any, **kwargs: Any) -> Outcome:
            if self.unavailable:
                self.refused.append((name, agent_id))
                raise CommandRefused(ErrorCode.UNAVAILABLE, "event log unavailable; retry")
            self.made.append((name, agent_id))
            self.projection.agents[agent_id].liveness = LIVENESS[name]
            return Outcome(None, [])

        return decide


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
            lambda: True, Metrics(), clock=self.clock)
        # The heartbeat stream: its last sequence, and the heartbeats stored but not yet
        # delivered to the intake (a consumer behind the stream).
        self.stream_seq = 0
        self.undelivered: list[tuple[str, int]] = []
        self.bus_stalled = False
        self.monitor.evidence.looked(self.clock.now, self.clock.now, 0)  # current from now
        self.looks = 0
        look = self.monitor._look

        def counted(agent_id: str, now: float) -> None:
            self.looks += 1
            look(agent_id, now)

        self.monitor._look = counted  # type: ignore[method-assign]

    def enrol(self) -> None:
        """What run() does first: every agent is scheduled at its next deadline."""
        self.monitor._running = True
        for _ in self.monitor.enrolment():
            pass

    async def at(self, now: float) -> None:
        """Advance the clock, look at the bus (a prompt answer, unless it is stalled) and
        tick; let the decisions it started finish."""
        self.clock.now = now
        if self.bus_stalled:
            if self.monitor._look_sent is None:
                self.monitor._look_sent = now  # a look goes out, and hangs
            self.monitor.check_overdue(now)
        elif self.monitor.evidence.looked(now, now, self.stream_seq):
            self.monitor._current_again()
        self.monitor.tick(now)
        for task in list(self.monitor._tasks):
            await task

    def heal(self, now: float) -> None:
        """The bus answers again: the look that hung comes back, late."""
        self.bus_stalled = False
        sent, self.monitor._look_sent = self.monitor._look_sent, None
        self.clock.now = now
        if sent is not None:
            self.monitor.evidence.looked(sent, now, self.stream_seq)

    def heartbeat(self, agent_id: str) -> None:
        """A heartbeat stored in the stream and applied by the intake at once."""
        self.stream_seq += 1
        self.monitor.saw(agent_id, 1, self.stream_seq)
        self.monitor.heartbeat_applied(self.stream_seq)

    def stored(self, agent_id: str) -> None:
        """A heartbeat stored in the stream, not yet delivered to the intake."""
        self.stream_seq += 1
        self.undelivered.append((agent_id, self.stream_seq))

    def deliver(self) -> None:
        """The intake catches up with the stream."""
        for agent_id, seq in self.undelivered:
            self.monitor.saw(agent_id, 1, seq)
            self.monitor.heartbeat_applied(seq)
        self.undelivered.clear()


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
    monkeypatch.setattr("services.health.monitor.MAX_LOOKS_PER_TICK", 300)
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
    world.monitor.restart_deadlines("disconnected")
    await world.at(102.0)  # the bus answers at once, and nothing is waiting to be applied
    await world.at(104.9)
    assert world.decisions.made == []
    await world.at(105.0)  # 3 s after it could see again
    assert len(world.decisions.made) == 1000
    assert {d for d, _ in world.decisions.made} == {"suspect"}


async def test_an_agent_registered_later_is_looked_at_once_told(world: World) -> None:
    await world.at(100.0)
    at = datetime.now(UTC)
    world.projection.agents["late"] = AgentView("late", 1, [], 1, {}, [], at, at)
    world.monitor.noticed("late")  # as the app does for each new incarnation applied
    await world.at(101.0)
    await world.at(104.0)
    assert ("suspect", "late") in world.decisions.made


@pytest.fixture
def small() -> World:
    fleet = World(agents=3)
    fleet.enrol()
    return fleet


async def test_no_deadline_expires_in_a_bus_stall_and_all_restart_after_it(
        world: World) -> None:
    """Issue 19: a 12 s freeze of the server. The agents heartbeat throughout; their
    heartbeats are stored only when it resumes, after the looks it was sent meanwhile."""
    await world.at(100.0)
    for i in range(1000):
        world.heartbeat(f"a{i}")
    world.bus_stalled = True
    await world.at(100.1)
    await world.at(100.2)
    assert world.monitor.evidence.current  # 0.1 s unanswered: within tolerance
    await world.at(101.2)
    assert not world.monitor.evidence.current  # overdue: a stall
    for step in range(1, 45):  # every 0.25 s of the freeze, silent to the monitor
        await world.at(101.2 + step * 0.25)
    assert world.decisions.made == []
    world.heal(112.2)
    for i in range(1, 1000):  # what a1.. sent in the freeze, stored now; a0 died in it
        world.stored(f"a{i}")
    await world.at(112.25)  # a prompt look: the stream holds heartbeats not yet applied
    assert not world.monitor.evidence.current and world.decisions.made == []
    world.clock.now = 112.3
    world.deliver()
    assert world.monitor.evidence.current and world.monitor.visible_since == 112.3
    for step in range(1, 200):  # and the agents heartbeat on
        if step % 4 == 0:
            for i in range(1, 1000):
                world.heartbeat(f"a{i}")
        await world.at(112.3 + step * 0.025)
        if world.decisions.made:
            break
    assert world.decisions.made == [("suspect", "a0")]
    assert world.clock.now == pytest.approx(112.3 + SETTINGS.suspect_after, abs=0.03)


async def test_a_decision_refused_as_unavailable_is_decided_again_on_fresh_evidence(
        small: World) -> None:
    await small.at(100.0)
    small.decisions.unavailable = True
    await small.at(103.0)
    # The first suspicion is refused: the log cannot be written, which is trouble, so the
    # two decided in the same tick are dropped before they are sent.
    assert small.decisions.refused == [("suspect", "a0")]
    assert not small.monitor.evidence.current
    small.decisions.unavailable = False
    for step in range(1, 120):
        if step == 40:
            small.heartbeat("a1")  # a1 turns out alive
        await small.at(103.01 + step * 0.025)
    # Nothing retried as it stood: from the moment evidence was current again, a full
    # suspect_after of silence is needed, and a1 heartbeated meanwhile.
    assert small.monitor.visible_since == pytest.approx(103.035)
    assert small.decisions.made == []
    await small.at(106.04)
    assert small.decisions.made == [("suspect", "a0"), ("suspect", "a2")]


async def test_a_heartbeat_applied_between_the_look_and_the_decision_saves_the_agent(
        small: World) -> None:
    await small.at(100.0)
    await small.at(103.0)
    assert len(small.decisions.made) == 3  # all three suspected
    small.clock.now = 105.0
    small.monitor.evidence.looked(105.0, 105.0, small.stream_seq)
    small.monitor.tick(105.0)  # a0..a2 due to die: their decisions are started
    small.heartbeat("a0")  # before they run, a0 is heard from
    for task in list(small.monitor._tasks):
        await task
    assert small.decisions.made[3:] == [("declare_dead", "a1"), ("declare_dead", "a2")]


async def test_deadlines_wait_for_the_consumer_to_catch_up(small: World) -> None:
    await small.at(100.0)
    for step in range(1, 20):  # from 102.5 the intake falls behind the stream
        small.clock.now = 102.4 + step * 0.1
        for agent in ("a0", "a1", "a2"):
            small.stored(agent)
        await small.at(small.clock.now)
    # Every deadline (103) is past what the evidence covers: the looks since 102.5 wait
    # for heartbeats not applied yet.
    assert small.monitor.evidence.current and small.monitor.evidence.horizon < 102.5
    assert small.decisions.made == []
    small.deliver()
    await small.at(104.5)
    assert small.decisions.made == []
    assert small.monitor.evidence.horizon == 104.5


async def test_a_restart_of_deadlines_never_recovers_a_silent_suspect(small: World) -> None:
    await small.at(100.0)
    await small.at(103.0)
    assert len(small.decisions.made) == 3
    small.decisions.made.clear()
    small.clock.now = 104.0
    small.monitor.restart_deadlines("disconnected")
    small.heartbeat("a1")
    for step in range(0, 240):
        await small.at(104.0 + step * 0.025)
    made = small.decisions.made
    assert ("recover", "a0") not in made and ("recover", "a2") not in made
    assert made[0] == ("recover", "a1")  # it heartbeated: a real recovery
    # The silent suspects die a full dead_after after the restart, not earlier.
    assert ("declare_dead", "a0") in made and ("declare_dead", "a2") in made


async def test_after_a_reconnect_the_evidence_waits_for_a_new_heartbeat_consumer(
        small: World) -> None:
    await small.at(100.0)
    small.clock.now = 101.0
    small.monitor.restart_deadlines("reconnected")
    for step in range(1, 200):
        await small.at(101.0 + step * 0.025)
    assert not small.monitor.evidence.current and small.decisions.made == []
    small.monitor.heartbeat_consumer_replaced()  # as the app's recovery does
    await small.at(106.0)
    assert small.monitor.evidence.current and small.monitor.visible_since == 106.0


async def test_a_look_owed_on_the_old_connection_is_given_up_at_a_reconnect() -> None:
    """The look that was out when the connection dropped is never answered: after the
    reconnect another one goes out at once, rather than after the first's timeout."""
    answers = 0
    owed = asyncio.Event()

    async def check() -> int:
        nonlocal answers
        if answers == 0:
            answers += 1
            await owed.wait()  # never set: the answer went with the old connection
        return 0

    monitor = HealthMonitor(
        AgentHealth(), Position(), Decisions(AgentHealth()), SETTINGS,  # type: ignore[arg-type]
        lambda: True, Metrics(), bus_check=check)
    monitor.look_timeout = 60.0
    looking = asyncio.ensure_future(monitor._look_at_bus(check))
    try:
        await eventually(lambda: monitor._bus_look is not None, timeout=5, interval=0.001)
        monitor.restart_deadlines("reconnected")
        monitor.heartbeat_consumer_replaced()  # the app's recovery
        await eventually(lambda: monitor.evidence.current, timeout=5, interval=0.005)
    finally:
        looking.cancel()
        await asyncio.gather(looking, return_exceptions=True)


async def test_a_deadline_beyond_the_evidence_asks_for_a_look_at_once(small: World) -> None:
    await small.at(100.0)
    small.clock.now = 103.0
    small.monitor.tick(103.0)  # due, but the newest look was sent at 100
    assert small.monitor._look_wanted.is_set() and small.decisions.made == []
    small.monitor._look_wanted.clear()
    await small.at(103.0)  # that look: it covers the deadline
    assert len(small.decisions.made) == 3


def test_enrolment_is_in_parts_and_keeps_a_look_asked_for_meanwhile() -> None:
    import services.health.monitor as module

    world = World(agents=3 * module.ENROL_PART + 1)
    world.monitor._running = True
    parts = world.monitor.enrolment()
    next(parts)  # the first part scheduled; the loop would run here
    world.monitor.look_at("a0", at=0.5)  # enrolled already: an earlier look asked for
    world.monitor.look_at(f"a{3 * module.ENROL_PART}", at=0.25)  # not enrolled yet
    steps = 1 + sum(1 for _ in parts)
    assert steps == 4
    schedule = world.monitor.schedule
    due = {agent: schedule.scheduled(agent) for agent in world.projection.agents}
    assert None not in due.values()
    assert due["a0"] == 0.5 and due[f"a{3 * module.ENROL_PART}"] == 0.25
    first = due["a1"]
    assert first is not None and first > 0.5  # the others at their first deadline
    # Each is taken once when due, at its earliest look (a look superseded by an
    # earlier one stays on the heap, and is skipped).
    taken = list(schedule.due(float("inf"), 10 * module.ENROL_PART))
    assert sorted(taken) == sorted(due)
    assert taken[:2] == [f"a{3 * module.ENROL_PART}", "a0"]


def test_a_new_leaders_enrolment_grows_no_fleet_sized_dict() -> None:
    """The records are made at start-up (notice_fleet) and as agents register, so the
    turns a new leader's enrolment holds the loop for allocate no 21 MB table."""
    import sys

    world = World(agents=5000)
    world.monitor.notice_fleet()
    records = world.monitor.seen
    size = sys.getsizeof(records)
    world.enrol()
    assert world.monitor.seen is records and sys.getsizeof(records) == size
    assert all(seen is not None and seen.incarnation == 1 for seen in records.values())


async def test_an_ended_leads_heap_is_freed_a_part_at_a_time() -> None:
    """Freed at once, 500,000 entries held the loop for 50 ms as the lead was lost."""
    import services.health.monitor as module

    entries = [(float(i), f"a{i}") for i in range(3 * module.DROP_PART + 1)]
    dropping = asyncio.ensure_future(module._drop_in_parts(entries))
    left = []
    while not dropping.done():
        await asyncio.sleep(0)
        left.append(len(entries))
    assert left[:4] == [2 * module.DROP_PART + 1, module.DROP_PART + 1, 1, 0]
