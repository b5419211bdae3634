"""Work each agent left undone in a row: the evidence of a gray failure.

An agent that heartbeats but does not take its work (hung workers, a full local queue)
leaves its assignments unaccepted; one that promised progress reports may go quiet on a
task it runs. Either way the task is moved off it (the accept timeout; the progress
promise, services/leader/unresponsive.py), and its streak of that kind grows. The leader
takes an agent out of placement once a streak is long enough. Its work ends a streak: an
accept, a progress report or a completion ends the unaccepted one; a progress report or a
completion the quiet one (an accept alone proves nothing of a run). A new incarnation
starts afresh.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

KEPT_TASKS = 5  # the streak's last task ids, named in the decision


@dataclass(slots=True)
class Streak:
    incarnation: int
    count: int = 0
    tasks: deque[str] = field(default_factory=lambda: deque(maxlen=KEPT_TASKS))
    last_event_id: str = ""  # the last move off it: the cause of a decision on it


class Streaks:
    """The streaks of one kind of undone work, by agent."""

    def __init__(self, reason: str) -> None:
        self.reason = reason  # the moves that lengthen them (domain.tasks.task)
        self.streaks: dict[str, Streak] = {}
        # Agents whose streak grew since the leader last looked (at most one per agent).
        self.grown: set[str] = set()

    def left_undone(self, agent_id: str, incarnation: int, task_id: str,
                    event_id: str) -> None:
        streak = self.streaks.get(agent_id)
        if streak is None or streak.incarnation != incarnation:
            streak = self.streaks[agent_id] = Streak(incarnation)
        streak.count += 1
        streak.tasks.append(task_id)
        streak.last_event_id = event_id
        self.grown.add(agent_id)

    def worked(self, agent_id: str) -> None:
        if self.streaks:
            self.streaks.pop(agent_id, None)

    def of(self, agent_id: str, incarnation: int) -> Streak | None:
        streak = self.streaks.get(agent_id)
        return streak if streak is not None and streak.incarnation == incarnation else None
