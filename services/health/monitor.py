"""The health monitor: turns silence into Suspected, DeclaredDead and Recovered events.

It never counts time it could not see against an agent, and never lets a deadline expire
on evidence it cannot see (`domain.health.Evidence`). It looks at the bus continually (the
heartbeat stream's last sequence); while a look is overdue or answered late, an append
fails, NATS is disconnected, or this process was stalled, liveness evidence is unknown
and nothing expires. Once a prompt look is answered again and the heartbeat consumer has
applied everything the stream held then, every deadline restarts from that moment. A
decision refused or interrupted meanwhile is not retried: the agent is looked at again on
the fresh evidence. A deadline expires only within what the evidence covers (every
heartbeat the stream held at a look applied), so a death needs no probe of the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from domain.errors import CommandRefused, ErrorCode
from domain.health import (
    DetectorSettings,
    Evidence,
    Verdict,
    bus_stall_tolerance,
    is_stall,
    look_interval,
    may_recover,
    next_deadline,
    silence,
    streak_after,
    verdict,
)
from projections.agents import AgentHealth, AgentView
from projections.position import Position
from services.commands.registry import AgentRegistry
from services.health.schedule import LookSchedule, Seen
from services.metrics import Metrics

log = logging.getLogger(__name__)

ENROL_PART = 1_000  # agents enrolled between two turns of the event loop (2 ms here)
DROP_PART = 10_000  # entries of an ended lead's heap freed in one turn (1 ms here)

# Agents looked at in one tick at most, when many deadlines fall due together.
MAX_LOOKS_PER_TICK = 5000
# Looks at the bus are at least this far apart, even when deadlines ask for them.
MIN_LOOK_GAP_S = 0.005

# The heartbeat stream's last sequence (0 when it holds nothing): a look at the bus.
BusCheck = Callable[[], Awaitable[int]]

# After these the heartbeat consumer's position means nothing until the intake replaces
# the consumer (the app restarts it after every reconnect: NATS may have restarted, with
# a new heartbeat stream whose sequences start again at 1).
_CONSUMER_REPLACED_AFTER = frozenset({"reconnected"})


async def _drop_in_parts(entries: list[tuple[float, str]]) -> None:
    """Free a list a part at a time, letting the loop run between parts."""
    while entries:
        del entries[-DROP_PART:]
        await asyncio.sleep(0)


class HealthMonitor:
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
        # Looks at the bus: how often, and how late an answer may be before it is a stall.
        self.bus_check = bus_check
        self.look_every = look_interval(settings)
        self.evidence = Evidence(tolerance=bus_stall_tolerance(settings), since=clock())
        self._look_sent: float | None = None  # the look waiting for its answer
        self._bus_look: asyncio.Future[int] | None = None
        self._last_look_sent = float("-inf")
        # Set when a deadline has come that no look covers yet: look now, not at the next
        # look_every, so a death waits one round trip for its evidence, not a period.
        self._look_wanted = asyncio.Event()
        # A look unanswered this long is given up and another sent (the answer may have
        # been owed on a connection since replaced).
        self.look_timeout = min(2.0, max(0.5, 2 * self.evidence.tolerance))
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

    @property
    def visible_since(self) -> float:
        """When evidence last became current: no silence before it counts."""
        return self.evidence.since

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

    def heartbeat_applied(self, stream_seq: int) -> None:
        """The intake applied (or set aside) the heartbeat at this stream sequence."""
        if self.evidence.applied_up_to(stream_seq, self.clock()):
            self._current_again()

    def heartbeat_consumer_replaced(self) -> None:
        """The intake subscribed afresh: its position starts again from nothing."""
        if self.evidence.consumer_replaced(self.clock()):
            self._report_lost("heartbeat-consumer-replaced")

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

    def restart_deadlines(self, reason: str) -> None:
        """We could not see, or cannot now: liveness evidence is unknown until a prompt
        look at the bus and the heartbeat consumer's catching up with it; then every
        deadline restarts from that moment."""
        now = self.clock()
        if reason in _CONSUMER_REPLACED_AFTER:
            self.evidence.consumer_lost(now, reason)
            if self._bus_look is not None:
                self._bus_look.cancel()  # owed on the old connection: look again on the new
        else:
            self.evidence.lost(now, reason)
        self._report_lost(reason)

    def _lose(self, reason: str) -> None:
        """Trouble seen by the monitor itself: said once per blind spell."""
        if self.evidence.lost(self.clock(), reason):
            self._report_lost(reason)

    def _report_lost(self, reason: str, detail: str = "") -> None:
        self.metrics.blind_resets.labels(reason).inc()
        log.warning("health deadlines restarted reason=%s%s", reason, detail)

    def _current_again(self) -> None:
        evidence = self.evidence
        blind = (evidence.since - evidence.blind_since
                 if evidence.blind_since is not None else 0.0)
        log.info("health evidence current again after %.3fs blind; deadlines restart now "
                 "heartbeat_seq=%d", blind, evidence.applied)

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

    def check_overdue(self, now: float) -> None:
        """A look at the bus unanswered for longer than the stall tolerance: the bus (the
        server, its disk, or the path to it) stalls, and evidence is unknown from now."""
        sent = self._look_sent
        if sent is not None and self.evidence.overdue(sent, now):
            self._report_lost("bus-stall", f": no answer from the bus for {now - sent:.3f}s")

    async def _look_at_bus(self, check: BusCheck) -> None:
        """Look at the heartbeat stream continually: its last sequence, and how long the
        bus took to say it. A look is given up after `look_timeout` (or at once after a
        reconnect: its answer was owed on the old connection), and another one sent."""
        while True:
            sent = self._look_sent = self._last_look_sent = self.clock()
            look = self._bus_look = asyncio.ensure_future(check())
            try:
                done, _ = await asyncio.wait({look}, timeout=self.look_timeout)
            finally:
                self._bus_look = None
                self._look_sent = None
                if not look.done():
                    look.cancel()
            if not done or look.cancelled():  # given up: no answer, or owed elsewhere
                if self.evidence.lost(self.clock(), "bus-look-timeout"):
                    self._report_lost("bus-look-timeout")
                continue  # the next look at once
            exc = look.exception()
            if exc is not None:  # cannot see the bus: nothing may expire
                if self.evidence.lost(self.clock(), "bus-check-failed"):
                    self._report_lost("bus-check-failed", f": {exc!r}")
            else:
                answered = self.clock()
                was_current = self.evidence.current
                horizon = self.evidence.horizon
                if self.evidence.looked(sent, answered, look.result()):
                    self._current_again()
                elif was_current and not self.evidence.current:
                    self._report_lost("bus-stall",
                                      f": the bus took {answered - sent:.3f}s to answer")
                elif self.evidence.horizon > horizon and self._running:
                    self.tick(answered)  # deadlines this look covers: at once
            await asyncio.sleep(MIN_LOOK_GAP_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._look_wanted.wait(), self.look_every)
            self._look_wanted.clear()

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

    def _look_again(self, agent_id: str, seen: Seen) -> None:
        """After a decision (or its refusal): at the next deadline of the agent as the
        projection now shows it; at once if that is already past (a refusal)."""
        view = self.projection.agents.get(agent_id)
        if view is None or view.left:
            return
        if view.liveness == Verdict.DEAD:
            if self.deregister_dead_after:
                self.look_at(agent_id)
            return
        self.look_at(agent_id, next_deadline(seen.at, self.visible_since, self.settings,
                                             view.liveness))

    def _maybe_deregister(self, view: AgentView, now: float) -> None:
        """deregister_dead_after: a long-dead agent leaves the catalog altogether."""
        if not self.deregister_dead_after:
            return
        dead_for = self.wall_clock() - view.updated_at.timestamp()
        if dead_for < self.deregister_dead_after:
            self.look_at(view.agent_id, now + self.deregister_dead_after - dead_for)
            return
        self._spawn(self._deregister_dead(view))

    async def _deregister_dead(self, view: AgentView) -> None:
        self._in_flight.add(view.agent_id)
        try:
            outcome = await self.registry.deregister_dead(
                view.agent_id, view.incarnation, self.deregister_dead_after,
                causation_id=view.last_event_id, correlation_id=view.registration_event_id)
            if outcome.position is not None:
                self.metrics.decisions.labels("deregistered").inc()
                await self.position.wait_for(outcome.position, 5.0)
        except CommandRefused as refused:
            log.info("deregistration refused agent=%s: %s", view.agent_id, refused.message)
        finally:
            self._in_flight.discard(view.agent_id)
            self.look_at(view.agent_id)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide(self, view: AgentView, seen: Seen, heard_at: float, wanted: str,
                      silent_for: float, epoch: int) -> None:
        """Record a verdict taken on evidence of `epoch` when the agent was last heard
        `heard_at`; dropped if that evidence was lost before it could be written (the
        agent is looked at again on fresh evidence)."""
        agent_id = view.agent_id
        self._in_flight.add(agent_id)
        try:
            outcome = None
            if not self._still_current(epoch, agent_id, wanted):
                return
            if wanted != Verdict.ALIVE and seen.at != heard_at:
                return  # heard from since it was looked at (a heartbeat applied meanwhile)
            if wanted == Verdict.DEAD:
                # No probe of the stream first: the deadline is within the evidence's
                # horizon, so every heartbeat stored before it has been applied.
                outcome = await self.registry.declare_dead(
                    agent_id, view.incarnation, round(silent_for, 3), self.settings.dead_after,
                    seen.heartbeat_seq, causation_id=self._cause(view, seen),
                    correlation_id=view.registration_event_id,
                )
            elif wanted == Verdict.SUSPECT and view.liveness == Verdict.ALIVE:
                outcome = await self.registry.suspect(
                    agent_id, view.incarnation, round(silent_for, 3),
                    self.settings.suspect_after, seen.heartbeat_seq,
                    causation_id=self._cause(view, seen),
                    correlation_id=view.registration_event_id,
                )
            elif wanted == Verdict.ALIVE and view.liveness == Verdict.SUSPECT:
                outcome = await self.registry.recover(
                    agent_id, view.incarnation, seen.heartbeat_seq,
                    causation_id=f"hb-{seen.heartbeat_seq}",
                    correlation_id=view.registration_event_id,
                )
            if outcome is not None and outcome.position is not None:
                self.metrics.decisions.labels(wanted).inc()
                log.info("health decision agent=%s verdict=%s silence=%.3f position=%s",
                         agent_id, wanted, silent_for, outcome.position)
                # Stay in flight until the projection shows the decision, so the next
                # tick does not take it again.
                await self.position.wait_for(outcome.position, 5.0)
        except CommandRefused as refused:
            log.info("health decision refused agent=%s verdict=%s: %s",
                     agent_id, wanted, refused.message)
            if refused.code == ErrorCode.UNAVAILABLE:
                # The log could not be written: the bus is in trouble. Not retried as it
                # stands; decided again once evidence is current.
                self._lose("append-failed")
        finally:
            self._in_flight.discard(agent_id)
            self._look_again(agent_id, seen)

    def _still_current(self, epoch: int, agent_id: str, wanted: str) -> bool:
        if self.evidence.current and self.evidence.epoch == epoch:
            return True
        log.info("health decision dropped agent=%s verdict=%s: liveness evidence lost "
                 "meanwhile (%s)", agent_id, wanted, self.evidence.reason or "since regained")
        return False

    def _cause(self, view: AgentView, seen: Seen) -> str:
        """The last thing heard of the agent: its last heartbeat, else its last event."""
        if view.liveness == Verdict.SUSPECT:
            return view.last_event_id  # DeclaredDead follows from the suspicion
        return f"hb-{seen.heartbeat_seq}" if seen.heartbeat_seq else view.last_event_id

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
