"""How a task's submitter learns its outcome: pushed on `<prefix>.result.<submitter>.
<task_id>` when the task finishes (`OutcomeNotice`), and asked for with `task.results`
after a reconnect (`TaskResultsQuery`). Neither writes to the log, and no one but the
submitter (or an operator) can read an outcome: NATS lets only the submitter subscribe
to its result subjects, and the query answers another's task as unknown.

Every orchestrator that applies the finishing event live sends the outcome, so it is
sent at least once across leader changes; a client keeps the first of each task's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import orjson

from domain.tasks.commands import TaskResults
from domain.tasks.task import TERMINAL, Task, TaskStatus
from infra.caller import current_identity
from infra.log.recorded import StoreUnavailable
from infra.log.repository import Repository
from infra.names import TASK, Names
from projections.board.submitters import Submitters
from projections.board.tasks import TaskBoard
from projections.log_event import LogEvent

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]


def outcome(task_id: str, status: str, attempt: int, result: Any, error: str | None,
            position: int) -> dict[str, Any]:
    """A TaskOutcome (domain.protocol.replies) as sent."""
    return {"task_id": task_id, "status": str(status), "attempt": attempt,
            "result": result if status == TaskStatus.COMPLETED else None,
            "error": error if status != TaskStatus.COMPLETED else None, "position": position}


class OutcomeNotice:
    """The reaction to a finishing event: its outcome, in log order, to the submitter."""

    def __init__(self, submitters: Submitters, board: TaskBoard, names: Names,
                 publish: Publish, live: Callable[[], bool],
                 submitter_in_log: Callable[[str], Awaitable[str]]) -> None:
        self.submitters = submitters
        self.board = board
        self.names = names
        self.publish = publish
        self.live = live
        self.submitter_in_log = submitter_in_log
        self.sent = 0
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._sending: asyncio.Task[None] | None = None

    def finished(self, event: LogEvent) -> None:
        """Called for each finishing event applied (cheap in a replay: nothing is sent)."""
        finished = self.submitters.finished
        if not self.live() or finished is None:
            return
        task_id, submitter = finished
        view = self.board.get(task_id)
        data = event.data()
        error = data.get("error") or data.get("reason")
        attempt = view.attempt if view is not None else int(data.get("attempt") or 0)
        self._queue.append((submitter, outcome(task_id, _STATUS[event.name], attempt,
                                               data.get("result"), error, event.position)))
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._queue:
            submitter, body = self._queue.popleft()
            try:
                # Unknown after a restore from a snapshot: the task's own history says.
                submitter = submitter or await self.submitter_in_log(body["task_id"])
                if submitter:
                    await self.publish(self.names.task_outcome(submitter, body["task_id"]),
                                       orjson.dumps(body))
                    self.sent += 1
            except (StoreUnavailable, nats.errors.Error) as exc:
                # The submitter asks with task.results once connected again.
                log.info("task outcome not sent task=%s: %r", body["task_id"], exc)

    async def close(self) -> None:
        if self._sending is not None:
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)


_STATUS = {"Completed": TaskStatus.COMPLETED, "DeadLettered": TaskStatus.DEAD_LETTERED,
           "Cancelled": TaskStatus.CANCELLED}


def submitter_in(repository: Repository) -> Callable[[str], Awaitable[str]]:
    async def submitter_of(task_id: str) -> str:
        task, _ = await repository.store.load(TASK, task_id)
        return str(task.submitted_by) if task is not None else ""

    return submitter_of


class TaskResultsQuery:
    """`task.results`: the asked tasks' outcomes, each from the log (the aggregate holds
    who submitted it, and its result or error)."""

    def __init__(self, repository: Repository,
                 is_operator: Callable[[str], bool] = lambda identity: True) -> None:
        self.repository = repository
        self.is_operator = is_operator

    async def results(self, cmd: TaskResults, causation_id: str | None = None) -> dict[str, Any]:
        sender = current_identity.get()
        operator = self.is_operator(sender)
        tasks: list[dict[str, Any]] = []
        unknown: list[str] = []
        for task_id in dict.fromkeys(cmd.task_ids):  # each once, in the order asked
            task, position = await self.repository.get(task_id, fresh=True)
            if not isinstance(task, Task) or not (
                    operator or (task.submitted_by and task.submitted_by == sender)):
                unknown.append(task_id)  # another's is as if it did not exist
                continue
            finished = task.status in TERMINAL
            tasks.append(outcome(task_id, task.status, task.attempt,
                                 task.result if finished else None,
                                 task.error if finished else None, position))
        return {"ok": True, "tasks": tasks, "unknown": unknown}
