"""The task board: every task's status, the open tasks of each agent, and the queue."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Generator
from operator import attrgetter
from typing import cast

from domain import shared_values
from domain.tasks.task import ACCEPT_TIMEOUT, NO_PROGRESS, TERMINAL, TaskStatus
from projections.board.deadlines import StepDeadlines, step_of
from projections.board.finished_task import FinishedTask
from projections.board.flow_use import FlowUse
from projections.board.task_view import NO_FLOW, Flow, TaskView
from projections.board.unaccepted import Streaks
from projections.board.waiting import Round, WaitingTasks
from projections.limits import Limits
from projections.log_event import LogEvent
from projections.status_counts import StatusCounts

# A view holds its status's plain value, as the log does: the board's counts by status
# are served as JSON, and orjson writes no enum member as an object's key.
STATUS_BY_EVENT: dict[str, str] = {
    "Submitted": TaskStatus.PENDING.value,
    "Assigned": TaskStatus.ASSIGNED.value,
    "Reassigned": TaskStatus.ASSIGNED.value,
    "Requeued": TaskStatus.PENDING.value,
    "Accepted": TaskStatus.RUNNING.value,
    "Progressed": TaskStatus.RUNNING.value,
    "Completed": TaskStatus.COMPLETED.value,
    "Failed": TaskStatus.RETRY_WAIT.value,
    "DeadLettered": TaskStatus.DEAD_LETTERED.value,
    "Cancelled": TaskStatus.CANCELLED.value,
}
FINISHED = TERMINAL
# The events that take a task off its agent for a reason (a cancel's is the canceller's).
_MOVES_OFF = frozenset({"Reassigned", "Requeued", "DeadLettered"})
# Waiting for an agent: at once, or (DELAYED) once their retry_at has passed.
DELAYED = frozenset({TaskStatus.RETRY_WAIT.value, TaskStatus.SCHEDULED.value})
WAITING = frozenset({TaskStatus.PENDING.value, *DELAYED})
# How the board holds a task: a view while it is open or waiting, packed once finished.
HeldTask = TaskView | FinishedTask
# Timeouts repeat from task to task; one float object each, not one per task.
_shared_floats: dict[float, float] = {}
_MAX_SHARED_FLOATS = 1_000


def _shared_float(value: float) -> float:
    return shared_values.one_of(_shared_floats, value, _MAX_SHARED_FLOATS)


_shared_flows: dict[Flow, Flow] = {}
_MAX_SHARED_FLOWS = 10_000


def shared_flow(flow: Flow) -> Flow:
    """One tuple for the tasks of a submitter with the same flow control fields."""
    return NO_FLOW if flow == NO_FLOW else shared_values.one_of(_shared_flows, flow,
                                                                _MAX_SHARED_FLOWS)


def flow_of(data: dict[str, object]) -> Flow:
    """A Submitted event's flow control fields (domain/limits/limit.py), as a view holds them."""
    selector, prefer = data.get("selector") or {}, data.get("prefer") or {}
    return shared_flow((
        sys.intern(str(data.get("submitted_by") or "")),
        str(data.get("concurrency_key") or ""), str(data.get("fairness_key") or ""),
        tuple(sorted(selector.items())) if isinstance(selector, dict) else (),
        tuple(sorted(prefer.items())) if isinstance(prefer, dict) else ()))


class TaskBoard:
    """The task board projection. `apply` is pure state change; no I/O.

    A finished task leaves the board `retention_s` after it finished, by the log's clock
    (the time of the latest event applied), or when more than `finished_limit` finished
    tasks are held, whichever comes first (0: no such bound); the ones that finished
    first leave first. Both follow the log alone, so a board rebuilt later, or restored
    from a snapshot (which keeps the order of `finished`), holds the same tasks. The log
    keeps them: their history can still be read.
    """

    def __init__(self, retention_s: float = 0.0, finished_limit: int = 0) -> None:
        self.retention_s = retention_s
        self.finished_limit = finished_limit
        self.tasks: dict[str, HeldTask] = {}
        self.open_by_agent: dict[str, set[str]] = {}
        self.queued: set[str] = set()
        self.flow = FlowUse()  # what the tasks use of their limits
        # The queued tasks again, in serving order; a fairness key's weight is set by
        # bootstrap from the limits (projections/limits.py).
        self.waiting = WaitingTasks()
        self.position = 0
        # The finished tasks held, in the order they finished in the log: 8 bytes each,
        # where a heap by time took a tuple and a float. The log's clock is the stream's,
        # which moves forward, so this is also their order by finishing time.
        self.finished: deque[str] = deque()
        self.deadlines = StepDeadlines()
        # Told each agent whose open tasks (its load) changed: the placement index.
        self.on_load_change: Callable[[str], None] | None = None
        self._counts = StatusCounts(_status)
        # Work agents left undone in a row, by kind (the leader's gray-failure evidence).
        self.unaccepted = Streaks(ACCEPT_TIMEOUT)
        self.quiet = Streaks(NO_PROGRESS)
        self._streaks = {ACCEPT_TIMEOUT: self.unaccepted, NO_PROGRESS: self.quiet}
        self.counts()  # counted from the start: events move the counts from here on

    def apply(self, event: LogEvent) -> None:
        if event.kind == "task":
            tasks = self.tasks
            found = tasks.get(event.aggregate_id)
            before = found.status if found is not None else None
            self._apply_task_event(event)
            found = tasks.get(event.aggregate_id)
            self._counts.moved(tasks, before, found.status if found is not None else None)
        if self.finished and (self.retention_s or self.finished_limit):
            self.forget_finished(event.recorded_at.timestamp())
        self.position = event.position

    def forget_finished(self, now: float | None = None) -> None:
        """Drop finished tasks past the count bound, and (given the log's time `now`)
        those that finished longer than the retention before it."""
        finished, tasks = self.finished, self.tasks
        limit = self.finished_limit
        while limit and len(finished) > limit:
            self._forget(finished.popleft())
        if now is None or not self.retention_s:
            return
        cutoff = now - self.retention_s
        while finished:
            view = tasks.get(finished[0])
            if view is not None and view.finished_ts is not None and view.finished_ts >= cutoff:
                return
            self._forget(finished.popleft())

    def _forget(self, task_id: str) -> None:
        view = self.tasks.get(task_id)
        if view is not None and view.status in FINISHED:
            del self.tasks[task_id]
            self._counts.moved(self.tasks, view.status, None)

    def follow(self, limits: Limits) -> None:
        """Place under these limits (its keys' rates, its fairness keys' weights)."""
        self.flow.limit_of = limits.key_limit
        self.waiting.weight = limits.weight
        limits.on_change = self.waiting.unpark_all

    def enter(self, view: TaskView) -> None:
        """Take a view as it is (from a snapshot) with everything derived from it; the
        caller puts `finished` in its order (the snapshot's)."""
        self.tasks[view.task_id] = _held(view)
        self.index(view)
        self.deadlines.started(view, self.tasks)

    def note_finished(self, view: TaskView) -> None:
        # Kept without a bound too: a snapshot carries the order to a board that has one.
        self.finished.append(view.task_id)

    def _apply_task_event(self, event: LogEvent) -> None:
        data = event.data()
        name = event.name
        step = None
        at = event.recorded_at.timestamp()
        if name == "Submitted":
            view = TaskView(
                task_id=event.aggregate_id, kind=sys.intern(data["kind"]),
                payload=data["payload"], requires=shared_values.capabilities(data["requires"]),
                priority=data["priority"], max_attempts=data["max_attempts"],
                timeout_s=_shared_float(data["timeout_s"]),
                submitted_position=event.position, submitted_ts=at, updated_ts=at,
                flow=flow_of(data),
            )
            # Scheduled: waits, as a retry does, until its time (domain.tasks.task).
            view.retry_at = data.get("not_before") or 0.0
            self.tasks[view.task_id] = view
        else:
            found = self.tasks.get(event.aggregate_id)
            if found is None:
                return
            # An event after the end (a late report) changes the view: unpacked for it.
            view = found.thaw() if type(found) is FinishedTask else cast(TaskView, found)
            step = step_of(view)
        self._leave_indexes(view)
        if name in _MOVES_OFF and view.agent_id is not None:
            streaks = self._streaks.get(data.get("reason") or "")
            if streaks is not None:
                streaks.left_undone(view.agent_id, view.incarnation, view.task_id,
                                    event.event_id)
        if data.get("failures") is not None and name in ("Reassigned", "Requeued"):
            view.failures = data["failures"]  # an unaccepted assignment counts as failed
        if name in ("Assigned", "Reassigned"):
            view.agent_id = sys.intern(data["agent_id"])  # one string per agent, not task
            view.incarnation = data["incarnation"]
            view.attempt = data["attempt"]
            view.token = data["token"]
            view.assigned_ts = at
            view.started_ts = None
            view.progress = 0.0
            if name == "Assigned":  # a placement: the key's token, the fairness turn
                if view.concurrency_key:
                    self.flow.placed(view.concurrency_key, at)
                self.waiting.charge(view.fairness_key)
        elif name == "Requeued":
            view.agent_id = None
            view.token = None
        elif name == "Accepted":
            view.started_ts = at
            if view.agent_id is not None:
                self.unaccepted.worked(view.agent_id)
        elif name == "Progressed":
            if view.agent_id is not None:
                self.unaccepted.worked(view.agent_id)
                self.quiet.worked(view.agent_id)
            view.progress = data["progress"]
            # Progress without an accept starts the run too, and its timeout with it.
            view.started_ts = view.started_ts or at
        elif name == "Completed":
            if view.agent_id is not None:
                self.unaccepted.worked(view.agent_id)
                self.quiet.worked(view.agent_id)
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
        if name == "Submitted" and view.retry_at:
            view.status = TaskStatus.SCHEDULED.value
        view.updated_ts = at
        view.position = event.position
        if view.status in FINISHED and not was_finished:
            view.finished_ts = at
            # Only an open task is reported on with its token or timed by its step.
            view.token = view.assigned_ts = view.started_ts = None
            self.note_finished(view)
        self.index(view)
        if step_of(view) != step:
            self.deadlines.started(view, self.tasks)
        self.tasks[view.task_id] = _held(view)

    def _leave_indexes(self, view: TaskView) -> None:
        if view.task_id in self.queued:
            self.queued.discard(view.task_id)
            self.waiting.discard(view.task_id)
            self.flow.left(view, waiting=True)
        if view.agent_id is not None:
            open_tasks = self.open_by_agent.get(view.agent_id)
            if open_tasks is not None:
                if view.task_id in open_tasks:
                    self.flow.left(view, waiting=False)
                    if view.concurrency_key:
                        self.waiting.unpark(view.concurrency_key)
                open_tasks.discard(view.task_id)
                if not open_tasks:  # an agent that held tasks once costs nothing after
                    del self.open_by_agent[view.agent_id]
                if self.on_load_change is not None:
                    self.on_load_change(view.agent_id)

    def index(self, view: TaskView) -> None:
        """Enter a task in the queue or its agent's open tasks, as its status says."""
        if view.status in WAITING:
            self.queued.add(view.task_id)
            self.waiting.add(view.task_id, view.priority, view.submitted_position,
                             view.retry_at if view.status in DELAYED else 0.0,
                             view.fairness_key, view.concurrency_key)
            self.flow.entered(view, waiting=True)
        elif view.is_open and view.agent_id is not None:
            self.open_by_agent.setdefault(view.agent_id, set()).add(view.task_id)
            self.flow.entered(view, waiting=False)
            if self.on_load_change is not None:
                self.on_load_change(view.agent_id)

    # --- reads ------------------------------------------------------------------

    def get(self, task_id: str) -> HeldTask | None:
        return self.tasks.get(task_id)

    def load(self, agent_id: str) -> int:
        return len(self.open_by_agent.get(agent_id, ()))

    def open_tasks_of(self, agent_id: str) -> list[TaskView]:
        return [_open(self.tasks[t]) for t in sorted(self.open_by_agent.get(agent_id, ()))]

    def round(self, now: float) -> Round:
        """A walk of the tasks ready at `now`, in serving order (waiting.Round)."""
        return self.waiting.round(now)

    def due(self, now: float) -> Generator[TaskView, None, None]:
        """Tasks waiting for an agent, in the order they are served, as consumed; close
        it when done (WaitingTasks.due)."""
        waiting = self.waiting.due(now)
        try:
            for task_id in waiting:
                yield _open(self.tasks[task_id])
        finally:
            waiting.close()

    def next_retry_at(self) -> float | None:
        return self.waiting.next_retry_at()

    def query(self, status: str | None = None, agent_id: str | None = None,
              kind: str | None = None, after: int = 0, limit: int = 100) -> list[HeldTask]:
        """Tasks matching the filters, by submission order, after a submission position."""
        # The position last: a finished task unpacks it, where the others are references.
        found = [
            v for v in self.tasks.values()
            if (status is None or v.status == status)
            and (agent_id is None or v.agent_id == agent_id)
            and (kind is None or v.kind == kind)
            and v.submitted_position > after
        ]
        found.sort(key=_submitted_position)
        return found[:limit]

    def counts(self) -> dict[str, int]:
        return self._counts.totals(self.tasks)


_submitted_position = attrgetter("submitted_position")


def _status(view: HeldTask) -> str:
    return view.status


def _held(view: TaskView) -> HeldTask:
    """How the board keeps a task: packed once finished, if it can be."""
    if view.status in FINISHED:
        return FinishedTask.of(view) or view
    return view


def _open(held: HeldTask) -> TaskView:
    """A queued or open task's view: only finished tasks are packed."""
    return cast(TaskView, held)
