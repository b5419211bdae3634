"""The health monitor: turns silence into Suspected, DeclaredDead and Recovered events.

It never counts time it could not see against an agent, and never lets a deadline expire
on evidence it cannot see (`domain.agents.health.Evidence`). It looks at the bus continually (the
heartbeat stream's last sequence); while a look is overdue or answered late, an append
fails, NATS is disconnected, or this process was stalled, liveness evidence is unknown
and nothing expires. Once a prompt look is answered again and the heartbeat consumer has
applied everything the stream held then, every deadline restarts from that moment. A
decision refused or interrupted meanwhile is not retried: the agent is looked at again on
the fresh evidence. A deadline expires only within what the evidence covers (every
heartbeat the stream held at a look applied), so a death needs no probe of the stream.
The looks at the bus and the evidence they make are services/health/bus_evidence.py;
writing a verdict, services/health/verdicts.py.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator

from domain.agents.health import (
    DetectorSettings,
    Verdict,
    is_stall,
    may_recover,
    next_deadline,
    silence,
    streak_after,
    verdict,
)
from projections.fleet.agents import AgentHealth, AgentView
from projections.position import Position
from services.commands.registry import AgentRegistry
from services.health.bus_evidence import BusCheck, BusEvidence
from services.health.schedule import LookSchedule, Seen
from services.health.verdicts import VerdictWriter
from services.metrics import Metrics

ENROL_PART = 1_000  # agents enrolled between two turns of the event loop (2 ms here)
DROP_PART = 10_000  # entries of an ended lead's heap freed in one turn (1 ms here)

# Agents looked at in one tick at most, when many deadlines fall due together.
MAX_LOOKS_PER_TICK = 5000


async def _drop_in_parts(entries: list[tuple[float, str]]) -> None:
    """Free a list a part at a time, letting the loop run between parts."""
    while entries:
        del entries[-DROP_PART:]
        await asyncio.sleep(0)


class HealthMonitor(BusEvidence, VerdictWriter):
    def __init__(
        self,
        projection: AgentHealth,
        position: Position,
        registry: AgentRegistry,
        settings: DetectorSettings,
        is_connected: Callable[[], bool],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        deregister_dead_after: float = 0.0,
        wall_clock: Callable[[], float] = time.time,
        bus_check: BusCheck | None = None,
    ) -> None:
        self.projection = projection
        self.position = position
        self.registry = registry
        self.settings = settings
        self.is_connected = is_connected
        self.metrics = metrics
        self.clock = clock
        self.wall_clock = wall_clock
        self.deregister_dead_after = deregister_dead_after
        # Tick often enough that a deadline is acted on within 25 ms (or 1/20 of
        # suspect_after): the failover target is work moved within 100 ms of a deadline.
        self.interval = min(0.025, settings.suspect_after / 20)
        # A late tick this much past its time means we were not running (paused,
        # starved): deadlines restart. Smaller lags are covered by the evidence's horizon
        # (heartbeats waiting in this process are not applied yet, so no deadline passes
        # them), and a busy machine does not postpone deaths indefinitely.
        self.stall_tolerance = max(0.5, settings.suspect_after / 2)
        super().__init__(settings, clock, bus_check)  # the looks at the bus
        self.schedule = LookSchedule()
        self.seen = self.schedule.seen  # what was last heard of each agent
        self.ticks = 0  # how many times it has looked at the fleet (tests wait on it)
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False
        # The liveness record what-if replays (services/audit/liveness.py): told of each
        # silence longer than silence_after, from the leader only.
        self.on_silence: Callable[[str, int, float, float], None] | None = None
        self.silence_after = float("inf")

    def saw(self, agent_id: str, incarnation: int, heartbeat_seq: int) -> None:
        """A heartbeat of the agent's current incarnation was received just now."""
        now = self.clock()
        seen = self.seen.get(agent_id)
        if seen is not None and seen.incarnation == incarnation:
            # Updated in place: no record made and dropped per heartbeat.
            if now - seen.at > self.silence_after and self._running:
                self._record_silence(agent_id, incarnation, seen.at, now)
            seen.streak = streak_after(seen.streak, now - seen.at, self.settings)
        else:
            seen = self.schedule.heard(agent_id, incarnation, now)
            seen.streak = 1
        seen.at = now
        seen.heartbeat_seq = heartbeat_seq
        view = self.projection.agents.get(agent_id)
        if view is not None and view.liveness != Verdict.ALIVE:
            # A suspect may recover now: a look at once (no deadline waits for evidence).
            self.look_at(agent_id, min(now, self.evidence.horizon))

    def _record_silence(self, agent_id: str, incarnation: int, last: float, now: float) -> None:
        """Tell the liveness record of a silence as the detector measured it (from the
        later of the last heartbeat and the moment it began to see), if long enough."""
        start = max(last, self.evidence.since)
        if now - start > self.silence_after and self.on_silence is not None:
            wall = self.wall_clock()
            self.on_silence(agent_id, incarnation, wall - (now - start), wall)

    @property
    def running(self) -> bool:
        """Leading: deciding, and watching what it decides on."""
        return self._running

    def noticed(self, agent_id: str) -> None:
        """A new incarnation of the agent was applied: its deadlines start now."""
        self.schedule.notice(agent_id)  # made now if new, not by a new leader's enrolment
        self.look_at(agent_id)

    def notice_fleet(self) -> None:
        """A record for every agent the projections hold (restored from a snapshot, say):
        made at start-up, before serving, so that a new leader's enrolment allocates
        nothing fleet-sized in the turns it holds the loop for."""
        self.schedule.notice_all(self.projection.agents)

    def look_at(self, agent_id: str, at: float | None = None) -> None:
        """Look at an agent at `at` (now by default) or earlier: something changed."""
        if not self._running:
            return  # not leading: the fleet is enrolled when the monitor starts
        self.schedule.look_at(agent_id, self.clock() if at is None else at)

    async def run(self) -> None:
        if self.bus_check is None:
            raise RuntimeError("the health monitor needs a bus check to see the bus")
        self._running = True
        looking: asyncio.Future[None] | None = None
        try:
            await self._enrol()
            looking = asyncio.ensure_future(self._look_at_bus(self.bus_check))
            await self._run()
        finally:
            if looking is not None:
                looking.cancel()
                await asyncio.gather(looking, return_exceptions=True)
            self._look_sent = None
            self._running = False
            self._spawn(_drop_in_parts(self.schedule.end_term()))

    async def _run(self) -> None:
        previous = self.clock()
        while True:
            await asyncio.sleep(self._until_next_tick(previous))
            now = self.clock()
            if is_stall(previous, now, self.interval, self.stall_tolerance):
                self.restart_deadlines("stall")
            previous = now
            if not self.is_connected():
                self._lose("disconnected")
                continue
            self.check_overdue(now)
            self.tick(now)

    def _until_next_tick(self, now: float) -> float:
        """Until the next deadline when it comes before the next regular tick: a death
        then waits for a look's round trip, not for up to a tick (25 ms) as well."""
        wait = self.interval
        due = self.schedule.first_due
        if due is not None and now < due < now + wait:
            wait = due - now
        return wait

    async def _enrol(self) -> None:
        """Schedule a first look at every agent, at its next deadline.

        In parts, letting the loop run between them: at 500,000 agents one pass held the
        loop for seconds just as the lease, the snapshot and the first commands of a new
        leader needed it. A look asked for meanwhile (look_at) is kept when earlier.
        """
        for _ in self.enrolment():
            await asyncio.sleep(0)

    def enrolment(self) -> Iterator[None]:
        """The enrolment, one part per step.

        Each part pushes its agents on the heap (a heapify of the fleet at the end held the
        loop for 100 ms at 500,000 agents) and then freezes what the collector tracks:
        the part's heap entries and records (of agents not heard from yet) live as long
        as the lead, and left in its reach they set off full collections that walked all
        of them again and again (up to 130 ms each). The cost is that garbage cycles of
        other tasks alive at that instant are never collected: a few, once per term.
        Each agent's place among the records exists already (`notice_fleet`,
        `noticed`): made here, the growth of their dict held the loop for 25 to 50 ms in
        one part.
        """
        now = self.clock()
        views = list(self.projection.agents.values())  # no tuple per agent to collect
        gc.freeze()  # nor the list itself to walk (500,000 views): 30 ms a collection
        for start in range(0, len(views), ENROL_PART):
            for view in views[start:start + ENROL_PART]:
                if view.left:
                    continue
                seen = self._seen(view, now)
                when = now if view.liveness == Verdict.DEAD else next_deadline(
                    seen.at, self.visible_since, self.settings, view.liveness)
                self.look_at(view.agent_id, when)
            gc.freeze()
            yield

    def tick(self, now: float) -> None:
        self.ticks += 1
        if not self.evidence.current:
            return  # liveness evidence unknown: no deadline may expire
        # Deadlines expire only as far as the evidence reaches: the newest prompt look at
        # the bus whose heartbeats the consumer has applied.
        horizon = min(now, self.evidence.horizon)
        self._look_now_if_due(now, horizon)
        # At most MAX_LOOKS_PER_TICK: the rest at the next tick (the loop has other
        # work, leases too).
        for agent_id in self.schedule.due(horizon, MAX_LOOKS_PER_TICK):
            self._look(agent_id, horizon)

    def _look_now_if_due(self, now: float, horizon: float) -> None:
        """A deadline has come that the evidence does not reach yet, and no look was sent
        since it came: ask for one at once."""
        due = self.schedule.first_due
        if due is not None and horizon < due <= now and self._last_look_sent < due:
            self._look_wanted.set()

    def _look(self, agent_id: str, now: float) -> None:
        view = self.projection.agents.get(agent_id)
        if view is None or view.left or agent_id in self._in_flight:
            return  # a decision in flight looks again when it is done
        if view.liveness == Verdict.DEAD:
            self._maybe_deregister(view, now)
            return
        seen = self._seen(view, now)
        silent_for = silence(seen.at, self.visible_since, now)
        wanted = verdict(silent_for, self.settings)
        if wanted == view.liveness or (
                wanted == Verdict.ALIVE and not may_recover(
                    seen.streak, self.settings, seen.at, self.visible_since)):
            # Nothing to decide yet (damping may want more heartbeats in a row: each
            # heartbeat of a suspect looks again).
            self.look_at(agent_id, next_deadline(seen.at, self.visible_since, self.settings,
                                                 view.liveness))
            return
        self._spawn(self._decide(view, seen, seen.at, wanted, silent_for,
                                 self.evidence.epoch))

    def _seen(self, view: AgentView, now: float) -> Seen:
        """What was last heard of the agent's current incarnation; first noticed now (a
        registration), its deadlines start here."""
        return self.schedule.heard(view.agent_id, view.incarnation, now)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
