"""Gray failure: an agent that heartbeats but leaves its assignments unaccepted.

Its heartbeats keep it healthy to the failure detector, and each assignment it leaves
unaccepted is moved off it after the accept timeout; without more, the only capable
agent would get the task back for ever. So, on the leader, once an agent has left
`after` assignments in a row unaccepted (projections/board/unaccepted.py) it is marked
unresponsive (a MarkedUnresponsive event naming the tasks): out of placement for the
hold. When the hold is over it is readmitted (Readmitted) and tried again; one more
assignment left unaccepted marks it again, for twice as long (at most 16 times the
hold). An accept or a progress report ends the streak. The tasks pay too: each
assignment left unaccepted counts as a failed attempt (domain/task.py), so none loops.
"""

from __future__ import annotations

import logging

from domain.errors import CommandRefused
from projections.board.unaccepted import Unaccepted
from projections.fleet.agents import AgentHealth
from projections.position import Position
from services.commands.registry import AgentRegistry
from services.metrics import Metrics

log = logging.getLogger(__name__)

MAX_DOUBLINGS = 4  # the hold grows to at most 16 times the setting
APPLIED_WAIT_S = 5.0


def hold_for(streak: int, after: int, hold: float) -> float:
    """The hold of an agent marked at this streak: doubled for each assignment left
    unaccepted past `after`."""
    return hold * 2 ** min(MAX_DOUBLINGS, max(0, streak - after))


class Unresponsiveness:
    def __init__(self, agents: AgentHealth, unaccepted: Unaccepted, registry: AgentRegistry,
                 position: Position, metrics: Metrics, after: int, hold: float) -> None:
        self.agents = agents
        self.position = position
        self.unaccepted = unaccepted
        self.registry = registry
        self.metrics = metrics
        self.after = after  # 0: never
        self.hold = hold

    def next_due(self) -> float | None:
        """When the next unresponsive agent's hold ends."""
        return min(self.agents.unresponsive.values(), default=None)

    async def review(self, now: float) -> None:
        """Mark the agents whose streak is long enough; readmit those whose hold ended."""
        grown, self.unaccepted.grown = self.unaccepted.grown, set()
        for agent_id in grown:
            await self._mark(agent_id, now)
        for agent_id, until in list(self.agents.unresponsive.items()):
            if until <= now:
                await self._readmit(agent_id, now)

    async def _mark(self, agent_id: str, now: float) -> None:
        view = self.agents.get(agent_id)
        if not self.after or view is None or view.status not in ("healthy", "draining"):
            return
        streak = self.unaccepted.of(agent_id, view.incarnation)
        if streak is None or streak.count < self.after:
            return
        hold = hold_for(streak.count, self.after, self.hold)
        try:
            outcome = await self.registry.mark_unresponsive(
                agent_id, view.incarnation, list(streak.tasks), streak.count, hold,
                round(now + hold, 3), causation_id=streak.last_event_id)
        except CommandRefused as refused:
            log.debug("unresponsive mark refused agent=%s: %s", agent_id, refused.message)
            return
        if outcome.position is not None:
            self.metrics.decisions.labels("unresponsive").inc()
            log.warning("agent unresponsive agent=%s unaccepted_in_a_row=%d hold=%.1fs "
                        "(heartbeats, but leaves its assignments unaccepted)",
                        agent_id, streak.count, hold)
            # Placed no more from here: the round that follows must see the mark.
            await self.position.wait_for(outcome.position, APPLIED_WAIT_S)

    async def _readmit(self, agent_id: str, now: float) -> None:
        view = self.agents.get(agent_id)
        if view is None or view.unresponsive_until is None:
            return
        try:
            outcome = await self.registry.readmit(agent_id, view.incarnation,
                                                  view.unresponsive_until,
                                                  causation_id=view.last_event_id)
        except CommandRefused as refused:
            # Not unresponsive in the log (a newer incarnation, dead, gone, readmitted
            # already): its view will say so once applied.
            log.debug("readmission refused agent=%s: %s", agent_id, refused.message)
            return
        if outcome.position is not None:
            self.metrics.decisions.labels("readmitted").inc()
            log.info("agent readmitted agent=%s (its hold ended; tried again)", agent_id)
