"""What the health monitor writes: a verdict (Suspected, DeclaredDead, Recovered) or the
deregistration of a long-dead agent, through the registry, staying in flight until the
projection shows it; then the agent's next look.

A verdict is taken on evidence of one epoch (services/health/bus_evidence.py) and dropped
if that evidence was lost before it could be written, or if the agent was heard from
meanwhile: the agent is looked at again on fresh evidence. HealthMonitor
(services/health/monitor.py) decides when to look, and what verdict a silence calls for.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from domain.agents.health import DetectorSettings, Evidence, Verdict, next_deadline
from domain.errors import CommandRefused, ErrorCode
from projections.fleet.agents import AgentHealth, AgentView
from projections.position import Position
from services.commands.registry import AgentRegistry
from services.health.schedule import Seen
from services.metrics import Metrics

log = logging.getLogger("services.health.monitor")  # the monitor's log, as before


class VerdictWriter:
    """Writing the health monitor's decisions, for HealthMonitor."""

    # Set by HealthMonitor and BusEvidence.
    projection: AgentHealth
    position: Position
    registry: AgentRegistry
    settings: DetectorSettings
    metrics: Metrics
    wall_clock: Callable[[], float]
    deregister_dead_after: float
    evidence: Evidence
    _in_flight: set[str]

    if TYPE_CHECKING:  # HealthMonitor's and BusEvidence's
        @property
        def visible_since(self) -> float: ...
        def look_at(self, agent_id: str, at: float | None = None) -> None: ...
        def _spawn(self, coro: Awaitable[None]) -> None: ...
        def _lose(self, reason: str) -> None: ...

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
