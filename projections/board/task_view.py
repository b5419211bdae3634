"""A task as the board holds it while it is open (and, when it cannot be packed, after)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.tasks.task import OPEN, TaskStatus

# Flow control's view of a task (domain/limits/limit.py), one tuple shared by the tasks that
# have the same: (submitter, concurrency key, fairness key, selector, prefer), the last
# two as sorted (label, value) pairs. A plain tuple, so that a snapshot holds it as is.
Flow = tuple[str, str, str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]
NO_FLOW: Flow = ("", "", "", (), ())


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@dataclass(slots=True)
class TaskView:
    """A task as the board holds it. The board may hold a finished task for a day, so
    its cost counts (issue 21: at most 512 B): times are epoch seconds (a float is half
    a datetime; the `*_at` properties give datetimes, equal to the log's to the
    microsecond), values that repeat are shared, and what only an open task needs (its
    token, when its step started) is dropped when it finishes; the board then keeps it
    packed, as a FinishedTask (projections/board/finished_task.py)."""

    task_id: str
    kind: str
    payload: Any
    requires: list[str]
    priority: int
    max_attempts: int
    timeout_s: float
    submitted_position: int
    submitted_ts: float
    updated_ts: float
    status: str = TaskStatus.PENDING.value  # a plain string, as projections.board.tasks says
    agent_id: str | None = None
    incarnation: int = 0
    attempt: int = 0
    token: str | None = None
    assigned_ts: float | None = None
    started_ts: float | None = None
    failures: int = 0
    retry_at: float = 0.0
    progress: float = 0.0
    result: Any = None
    error: str | None = None
    position: int = 0
    finished_ts: float | None = None
    flow: Flow = NO_FLOW

    @property
    def submitter(self) -> str:
        return self.flow[0]

    @property
    def concurrency_key(self) -> str:
        return self.flow[1]

    @property
    def fairness_key(self) -> str:
        """Its own, else its submitter's: tasks are served in turn across these."""
        return self.flow[2] or self.flow[0]

    @property
    def selector(self) -> tuple[tuple[str, str], ...]:
        return self.flow[3]

    @property
    def prefer(self) -> tuple[tuple[str, str], ...]:
        return self.flow[4]

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def submitted_at(self) -> datetime:
        return datetime.fromtimestamp(self.submitted_ts, UTC)

    @property
    def updated_at(self) -> datetime:
        return datetime.fromtimestamp(self.updated_ts, UTC)

    @property
    def assigned_at(self) -> datetime | None:
        return _time(self.assigned_ts)

    @property
    def started_at(self) -> datetime | None:
        return _time(self.started_ts)

    @property
    def finished_at(self) -> datetime | None:
        return _time(self.finished_ts)

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
            **_flow_json(self.flow),
        }


def _flow_json(flow: Flow) -> dict[str, Any]:
    """The flow control fields a task was given (none for a task without them)."""
    found: dict[str, Any] = {}
    if flow[1]:
        found["concurrency_key"] = flow[1]
    if flow[2]:
        found["fairness_key"] = flow[2]
    if flow[3]:
        found["selector"] = dict(flow[3])
    if flow[4]:
        found["prefer"] = dict(flow[4])
    return found
