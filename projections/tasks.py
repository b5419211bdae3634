"""The task board: every task's status, the open tasks of each agent, and the queue."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.placement import queue_key
from domain.task import OPEN, RETRY_WAIT
from projections.deadlines import StepDeadlines, step_of
from projections.log_event import LogEvent

STATUS_BY_EVENT = {
    "Submitted": "pending",
    "Assigned": "assigned",
    "Reassigned": "assigned",
    "Requeued": "pending",
    "Accepted": "running",
    "Progressed": "running",
    "Completed": "completed",
    "Failed": "retry_wait",
    "DeadLettered": "dead_lettered",
    "Cancelled": "cancelled",
}
FINISHED = frozenset({"completed", "dead_lettered", "cancelled"})


@dataclass(slots=True)
class TaskView:
    task_id: str
    kind: str
    payload: Any
    requires: list[str]
    priority: int
    max_attempts: int
    timeout_s: float
    submitted_position: int
    submitted_at: datetime
    updated_at: datetime
    status: str = "pending"
    agent_id: str | None = None
    incarnation: int = 0
    attempt: int = 0
    token: str | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    failures: int = 0
    retry_at: float = 0.0
    progress: float = 0.0
    result: Any = None
    error: str | None = None
    position: int = 0
    finished_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "status": self.status,
            "payload": self.payload,
            "requires": self.requires,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "timeout_s": self.timeout_s,
            "agent_id": self.agent_id,
            "attempt": self.attempt,
            "failures": self.failures,
            "retry_at": self.retry_at or None,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "submitted_at": self.submitted_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "position": self.position,
        }


class TaskBoard:
    """The task board projection. `apply` is pure state change; no I/O.

    With a `retention_s`, a finished task leaves the board that long after it finished,
    by the log's clock (the time of the latest event applied), so a board rebuilt later
    holds the same tasks. The log keeps them: their history can still be read.
    """

    def __init__(self, retention_s: float = 0.0) -> None:
        self.retention_s = retention_s
        self.tasks: dict[str, TaskView] = {}
        self.open_by_agent: dict[str, set[str]] = {}
        self.queued: set[str] = set()
        self.position = 0
        self.finished: list[tuple[float, str]] = []  # a heap of (finished at, task id)
        self.deadlines = StepDeadlines()

    def apply(self, event: LogEvent) -> None:
        if event.kind == "task":
            self._apply_task_event(event)
        if self.finished and self.retention_s:
            self._forget_finished_before(event.recorded_at.timestamp() - self.retention_s)
        self.position = event.position

    def _forget_finished_before(self, cutoff: float) -> None:
        while self.finished and self.finished[0][0] < cutoff:
            _, task_id = heapq.heappop(self.finished)
            view = self.tasks.get(task_id)
            if view is not None and view.status in FINISHED:
                del self.tasks[task_id]

    def enter(self, view: TaskView) -> None:
        """Take a view as it is (from a snapshot) with everything derived from it."""
        self.tasks[view.task_id] = view
        self.index(view)
        self.note_finished(view)
        self.deadlines.started(view, self.tasks)

    def note_finished(self, view: TaskView) -> None:
        if self.retention_s and view.finished_at is not None:
            heapq.heappush(self.finished, (view.finished_at.timestamp(), view.task_id))

    def _apply_task_event(self, event: LogEvent) -> None:
        data = event.data()
        name = event.name
        step = None
        if name == "Submitted":
            view = TaskView(
                task_id=event.aggregate_id, kind=data["kind"], payload=data["payload"],
                requires=data["requires"], priority=data["priority"],
                max_attempts=data["max_attempts"], timeout_s=data["timeout_s"],
                submitted_position=event.position, submitted_at=event.recorded_at,
                updated_at=event.recorded_at,
            )
            self.tasks[view.task_id] = view
        else:
            found = self.tasks.get(event.aggregate_id)
            if found is None:
                return
            view = found
            step = step_of(view)
        self._leave_indexes(view)
        if name in ("Assigned", "Reassigned"):
            view.agent_id = data["agent_id"]
            view.incarnation = data["incarnation"]
            view.attempt = data["attempt"]
            view.token = data["token"]
            view.assigned_at = event.recorded_at
            view.started_at = None
            view.progress = 0.0
        elif name == "Requeued":
            view.agent_id = None
            view.token = None
        elif name == "Accepted":
            view.started_at = event.recorded_at
        elif name == "Progressed":
            view.progress = data["progress"]
            # Progress without an accept starts the run too, and its timeout with it.
            view.started_at = view.started_at or event.recorded_at
        elif name == "Completed":
            view.result = data["result"]
            view.progress = 1.0
        elif name == "Failed":
            view.failures = data["failures"]
            view.error = data["error"]
            view.retry_at = data["retry_at"]
            view.agent_id = None
        elif name == "DeadLettered":
            view.failures = data["failures"]
            view.error = data["error"]
        was_finished = view.status in FINISHED
        view.status = STATUS_BY_EVENT.get(name, view.status)
        view.updated_at = event.recorded_at
        view.position = event.position
        if view.status in FINISHED and not was_finished:
            view.finished_at = event.recorded_at
            self.note_finished(view)
        self.index(view)
        if step_of(view) != step:
            self.deadlines.started(view, self.tasks)

    def _leave_indexes(self, view: TaskView) -> None:
        self.queued.discard(view.task_id)
        if view.agent_id is not None:
            open_tasks = self.open_by_agent.get(view.agent_id)
            if open_tasks is not None:
                open_tasks.discard(view.task_id)
                if not open_tasks:  # an agent that held tasks once costs nothing after
                    del self.open_by_agent[view.agent_id]

    def index(self, view: TaskView) -> None:
        """Enter a task in the queue or its agent's open tasks, as its status says."""
        if view.status in ("pending", RETRY_WAIT):
            self.queued.add(view.task_id)
        elif view.is_open and view.agent_id is not None:
            self.open_by_agent.setdefault(view.agent_id, set()).add(view.task_id)

    # --- reads ------------------------------------------------------------------

    def get(self, task_id: str) -> TaskView | None:
        return self.tasks.get(task_id)

    def load(self, agent_id: str) -> int:
        return len(self.open_by_agent.get(agent_id, ()))

    def open_tasks_of(self, agent_id: str) -> list[TaskView]:
        return [self.tasks[t] for t in sorted(self.open_by_agent.get(agent_id, ()))]

    def due(self, now: float) -> list[TaskView]:
        """Tasks waiting for an agent, in the order they are served."""
        ready = [
            self.tasks[t] for t in self.queued
            if self.tasks[t].status == "pending" or self.tasks[t].retry_at <= now
        ]
        return sorted(ready, key=lambda v: queue_key(v.priority, v.submitted_position))

    def next_retry_at(self) -> float | None:
        times = [self.tasks[t].retry_at for t in self.queued
                 if self.tasks[t].status == RETRY_WAIT]
        return min(times) if times else None

    def query(self, status: str | None = None, agent_id: str | None = None,
              kind: str | None = None, after: int = 0, limit: int = 100) -> list[TaskView]:
        """Tasks matching the filters, by submission order, after a submission position."""
        found = [
            v for v in self.tasks.values()
            if v.submitted_position > after
            and (status is None or v.status == status)
            and (agent_id is None or v.agent_id == agent_id)
            and (kind is None or v.kind == kind)
        ]
        found.sort(key=lambda v: v.submitted_position)
        return found[:limit]

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for view in self.tasks.values():
            totals[view.status] = totals.get(view.status, 0) + 1
        return totals
