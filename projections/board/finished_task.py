"""A finished task as the board keeps it: a small record and its numbers packed in bytes.

The board may hold 100,000 finished tasks for a day, so each one's cost counts (issue 21:
at most 512 B). As a TaskView one took 224 B, and its two positions and two times were
objects of their own, 112 B more. A FinishedTask keeps as references only the values
that are objects anyway (its id, kind, agent, requirements: shared with the board's key
and other tasks; payload, result and error) and packs every number and its status into
one bytes object: 96 + 112 B. The numbers are read from the bytes when asked for, with
the values and types the view had; a view that cannot be packed so (a number of another
type, or out of its range) stays a TaskView.
"""

from __future__ import annotations

import struct
from dataclasses import fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Generic, TypeVar, overload

from domain.tasks.task import TaskStatus
from projections.board.task_view import NO_FLOW, TaskView

T = TypeVar("T")

# The finished ones, by their code in the packed numbers (plain values, as TaskView's).
STATUSES = (TaskStatus.COMPLETED.value, TaskStatus.DEAD_LETTERED.value,
            TaskStatus.CANCELLED.value)
_CODES = {status: code for code, status in enumerate(STATUSES)}
# The packed values in order, with their struct formats: little-endian, unpadded, 77
# bytes (a bytes object of 110, in the allocator's 112 B class). The ranges hold what
# commands may set (priority within +-1000, attempts up to 100).
_LAYOUT = (
    ("status", "B"), ("timeout_s", "d"), ("submitted_position", "q"), ("position", "q"),
    ("submitted_ts", "d"), ("updated_ts", "d"), ("finished_ts", "d"), ("retry_at", "d"),
    ("progress", "d"), ("incarnation", "I"), ("priority", "h"), ("max_attempts", "H"),
    ("attempt", "H"), ("failures", "H"),
)
_NUMBERS = struct.Struct("<" + "".join(fmt for _, fmt in _LAYOUT))
_NUMBER_VALUES = attrgetter(*(name for name, _ in _LAYOUT[1:]))
_NUMBER_TYPES = tuple(float if fmt == "d" else int for _, fmt in _LAYOUT[1:])
# A view's values in its field order (a snapshot's row).
FIELDS = tuple(f.name for f in fields(TaskView))
_VIEW_ROW = attrgetter(*FIELDS)


class _Packed(Generic[T]):
    """One of the record's numbers, unpacked from where it lies in the bytes."""

    __slots__ = ("_offset", "_unpack")

    def __init__(self, name: str) -> None:
        at = [field for field, _ in _LAYOUT].index(name)
        self._offset = struct.calcsize("<" + "".join(fmt for _, fmt in _LAYOUT[:at]))
        self._unpack = struct.Struct("<" + _LAYOUT[at][1]).unpack_from

    @overload
    def __get__(self, record: None, owner: Any = None) -> _Packed[T]: ...
    @overload
    def __get__(self, record: FinishedTask, owner: Any = None) -> T: ...

    def __get__(self, record: FinishedTask | None, owner: Any = None) -> T | _Packed[T]:
        if record is None:
            return self
        value: T = self._unpack(record._numbers, self._offset)[0]
        return value


class FinishedTask:
    """Read like a TaskView of a finished task (the same attributes and `to_json`), and
    never changed: an event on a finished task (a late report) thaws it into a view,
    which is packed again after."""

    __slots__ = ("_numbers", "agent_id", "error", "kind", "payload", "requires", "result",
                 "task_id")

    timeout_s = _Packed[float]("timeout_s")
    submitted_position = _Packed[int]("submitted_position")
    position = _Packed[int]("position")
    submitted_ts = _Packed[float]("submitted_ts")
    updated_ts = _Packed[float]("updated_ts")
    finished_ts = _Packed[float]("finished_ts")
    retry_at = _Packed[float]("retry_at")
    progress = _Packed[float]("progress")
    incarnation = _Packed[int]("incarnation")
    priority = _Packed[int]("priority")
    max_attempts = _Packed[int]("max_attempts")
    attempt = _Packed[int]("attempt")
    failures = _Packed[int]("failures")
    # What only an open task has (flow control's fields among them).
    is_open = False
    flow = NO_FLOW
    submitter = concurrency_key = fairness_key = ""
    selector: tuple[tuple[str, str], ...] = ()
    prefer: tuple[tuple[str, str], ...] = ()
    token: None = None
    assigned_ts: None = None
    started_ts: None = None
    assigned_at: None = None
    started_at: None = None

    def __init__(self, task_id: str, kind: str, agent_id: str | None, requires: list[str],
                 payload: Any, result: Any, error: str | None, numbers: bytes) -> None:
        self.task_id = task_id
        self.kind = kind
        self.agent_id = agent_id
        self.requires = requires
        self.payload = payload
        self.result = result
        self.error = error
        self._numbers = numbers

    @classmethod
    def of(cls, view: TaskView) -> FinishedTask | None:
        """The view packed, or None when it cannot be: not finished, holding what only
        an open task holds, or a number not of the type or range packed."""
        code = _CODES.get(view.status)
        values = _NUMBER_VALUES(view)
        if (code is None or view.token is not None or view.assigned_ts is not None
                or view.started_ts is not None or tuple(map(type, values)) != _NUMBER_TYPES):
            return None
        try:
            numbers = _NUMBERS.pack(code, *values)
        except struct.error:  # out of range
            return None
        return cls(view.task_id, view.kind, view.agent_id, view.requires, view.payload,
                   view.result, view.error, numbers)

    @property
    def status(self) -> str:
        return STATUSES[self._numbers[0]]

    @property
    def submitted_at(self) -> datetime:
        return datetime.fromtimestamp(self.submitted_ts, UTC)

    @property
    def updated_at(self) -> datetime:
        return datetime.fromtimestamp(self.updated_ts, UTC)

    @property
    def finished_at(self) -> datetime:
        return datetime.fromtimestamp(self.finished_ts, UTC)

    def row(self) -> tuple[Any, ...]:
        """The values in TaskView's field order (FIELDS), all unpacked at once."""
        (status, timeout_s, submitted_position, position, submitted_ts, updated_ts,
         finished_ts, retry_at, progress, incarnation, priority, max_attempts, attempt,
         failures) = _NUMBERS.unpack(self._numbers)
        return (self.task_id, self.kind, self.payload, self.requires, priority, max_attempts,
                timeout_s, submitted_position, submitted_ts, updated_ts, STATUSES[status],
                self.agent_id, incarnation, attempt, None, None, None, failures, retry_at,
                progress, self.result, self.error, position, finished_ts, NO_FLOW)

    def thaw(self) -> TaskView:
        return TaskView(*self.row())

    def to_json(self) -> dict[str, Any]:
        return self.thaw().to_json()  # the view's own rendering: the same document

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FinishedTask | TaskView):
            return self.row() == row_of(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal by value, like the view

    def __repr__(self) -> str:
        return f"FinishedTask{self.row()!r}"


def row_of(task: TaskView | FinishedTask) -> tuple[Any, ...]:
    """A task's values in TaskView's field order, whichever way the board holds it."""
    return task.row() if type(task) is FinishedTask else _VIEW_ROW(task)


# The order `row` writes must be the view's: a field added to TaskView needs a place here.
if FIELDS != ("task_id", "kind", "payload", "requires", "priority", "max_attempts",
              "timeout_s", "submitted_position", "submitted_ts", "updated_ts", "status",
              "agent_id", "incarnation", "attempt", "token", "assigned_ts", "started_ts",
              "failures", "retry_at", "progress", "result", "error", "position",
              "finished_ts", "flow"):
    raise TypeError("TaskView's fields changed: update FinishedTask.row and _LAYOUT")
