"""Assignments each agent left unaccepted in a row: the evidence of a gray failure.

An agent that heartbeats but does not take its work (hung workers, a full local queue)
leaves its assignments unaccepted; each is moved off it after the accept timeout. The
leader takes such an agent out of placement once its streak is long enough
(services/leader/unresponsive.py). An accept or a progress report from the agent ends
its streak; a new incarnation starts a new one.
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


class Unaccepted:
    def __init__(self) -> None:
        self.streaks: dict[str, Streak] = {}
        # Agents whose streak grew since the leader last looked (at most one per agent).
        self.grown: set[str] = set()

    def timed_out(self, agent_id: str, incarnation: int, task_id: str,
                  event_id: str) -> None:
        streak = self.streaks.get(agent_id)
        if streak is None or streak.incarnation != incarnation:
            streak = self.streaks[agent_id] = Streak(incarnation)
        streak.count += 1
        streak.tasks.append(task_id)
        streak.last_event_id = event_id
        self.grown.add(agent_id)

    def worked(self, agent_id: str) -> None:
        """It accepted or reported on an assignment: it works."""
        if self.streaks:
            self.streaks.pop(agent_id, None)

    def of(self, agent_id: str, incarnation: int) -> Streak | None:
        streak = self.streaks.get(agent_id)
        return streak if streak is not None and streak.incarnation == incarnation else None
