"""Gray failure: an agent that heartbeats but leaves its work undone.

Its heartbeats keep it healthy to the failure detector. An assignment it leaves
unaccepted is moved off it after the accept timeout; a running task of an agent that
promised progress reports (`progress_every_s` at registration) and went quiet past that
promise is moved off it here ("no_progress"). Without more, the only capable agent would
get the task back for ever. So, on the leader, once an agent has left `after` of either
in a row (projections/board/unaccepted.py) it is marked unresponsive (a
MarkedUnresponsive event naming the tasks): out of placement for the hold. When the hold
is over it is readmitted (Readmitted) and tried again; one more left undone marks it
again, for twice as long (at most 16 times the hold). Its work ends a streak. The tasks
pay too: each such move counts as a failed attempt (domain/tasks/task.py), so none loops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from domain.errors import CommandRefused
from domain.tasks.task import TaskStatus
from projections.board.tasks import TaskBoard, TaskView
from projections.board.unaccepted import Streaks
from projections.fleet.agents import AgentHealth, AgentView
from projections.position import Position
from services.commands.registry import AgentRegistry
from services.commands.tasks import PROGRESS_RECORD_EVERY_S
from services.metrics import Metrics

log = logging.getLogger(__name__)

MAX_DOUBLINGS = 4  # the hold grows to at most 16 times the setting
APPLIED_WAIT_S = 5.0
# A run is quiet once silent for this many of its agent's promised intervals...
QUIET_AFTER_PROMISES = 3
# ...and never before this: the log keeps a task's progress at most every few seconds,
# and that is what is read here.
QUIET_FLOOR_S = QUIET_AFTER_PROMISES * PROGRESS_RECORD_EVERY_S
_WHAT = {"accept_timeout": "assignments unaccepted",
         "no_progress": "running tasks without the progress it promised"}


def hold_for(streak: int, after: int, hold: float) -> float:
    """The hold of an agent marked at this streak: doubled for each one left undone past
    `after`."""
    return hold * 2 ** min(MAX_DOUBLINGS, max(0, streak - after))


def quiet_after(promise_s: float, floor_s: float = QUIET_FLOOR_S) -> float:
    """How long a run of an agent that promised progress every `promise_s` may be silent."""
    return max(QUIET_AFTER_PROMISES * promise_s, floor_s)


class Unresponsiveness:
    def __init__(self, agents: AgentHealth, board: TaskBoard, registry: AgentRegistry,
                 position: Position, metrics: Metrics, after: int, hold: float,
                 quiet_floor_s: float = QUIET_FLOOR_S) -> None:
        self.agents = agents
        self.board = board
        self.registry = registry
        self.position = position
        self.metrics = metrics
        self.after = after  # 0: never
        self.hold = hold
        self.quiet_floor_s = quiet_floor_s

    def next_due(self) -> float | None:
        """When the next unresponsive agent's hold ends."""
        return min(self.agents.unresponsive.values(), default=None)

    def quiet_runs(self, now: float) -> Iterator[TaskView]:
        """Running tasks of agents that promised progress, silent past the promise (a
        pass over the promising agents' open tasks only)."""
        if not self.after:
            return
        for agent_id, promise in list(self.agents.promised.items()):
            silence = quiet_after(promise, self.quiet_floor_s)
            for task_id in list(self.board.open_by_agent.get(agent_id, ())):
                view = self.board.tasks.get(task_id)
                if (isinstance(view, TaskView) and view.status == TaskStatus.RUNNING
                        and view.agent_id == agent_id and now - view.updated_ts > silence):
                    yield view

    async def review(self, now: float) -> None:
        """Mark the agents whose streak is long enough; readmit those whose hold ended."""
        for streaks in (self.board.unaccepted, self.board.quiet):
            grown, streaks.grown = streaks.grown, set()
            for agent_id in grown:
                await self._mark(streaks, agent_id, now)
        for agent_id, until in list(self.agents.unresponsive.items()):
            if until <= now:
                await self._readmit(agent_id)

    async def _mark(self, streaks: Streaks, agent_id: str, now: float) -> None:
        view = self.agents.get(agent_id)
        if not self.after or view is None or view.status not in ("healthy", "draining"):
            return
        streak = streaks.of(agent_id, view.incarnation)
        if streak is None or streak.count < self.after:
            return
        hold = hold_for(streak.count, self.after, self.hold)
        try:
            outcome = await self.registry.mark_unresponsive(
                agent_id, view.incarnation, streaks.reason, list(streak.tasks), streak.count,
                hold, round(now + hold, 3), causation_id=streak.last_event_id)
        except CommandRefused as refused:
            log.debug("unresponsive mark refused agent=%s: %s", agent_id, refused.message)
            return
        if outcome.position is not None:
            self.metrics.decisions.labels("unresponsive").inc()
            log.warning("agent unresponsive agent=%s in_a_row=%d hold=%.1fs (heartbeats, "
                        "but left %s)", agent_id, streak.count, hold, _WHAT[streaks.reason])
            # Placed no more from here: the round that follows must see the mark.
            await self.position.wait_for(outcome.position, APPLIED_WAIT_S)

    async def _readmit(self, agent_id: str) -> None:
        view: AgentView | None = self.agents.get(agent_id)
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
