"""What a client gets back for a task: its outcome (and the errors of one that did not
complete), its handle, and the feed of a running task (progress, partial output)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdk.client import Client

FINISHED = ("completed", "dead_lettered", "cancelled")


class TaskError(Exception):
    """A task did not complete; `outcome` is how it ended."""

    def __init__(self, outcome: TaskOutcome) -> None:
        super().__init__(f"task {outcome.task_id} {outcome.status}: {outcome.error}")
        self.outcome = outcome


class TaskDeadLettered(TaskError):
    """Failed for good: its attempts ran out, or a failure said it must not be retried."""


class TaskCancelled(TaskError):
    """Cancelled before it finished (`outcome.error` is the reason)."""


@dataclass(frozen=True)
class TaskOutcome:
    """A task's state as its submitter sees it (schema: domain.protocol.replies.TaskOutcome)."""

    task_id: str
    status: str
    attempt: int
    result: Any
    error: str | None
    position: int

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> TaskOutcome:
        return cls(str(body["task_id"]), str(body["status"]), int(body.get("attempt", 0)),
                   body.get("result"), body.get("error"), int(body.get("position", 0)))

    def value(self) -> Any:
        """The result of a completed task; TaskDeadLettered or TaskCancelled otherwise."""
        if self.status == "completed":
            return self.result
        if self.status == "cancelled":
            raise TaskCancelled(self)
        raise TaskDeadLettered(self)


class Feed:
    """What a running task's agent sends its submitter: progress, and partial output
    numbered from 1 (kept until taken in order)."""

    def __init__(self) -> None:
        self.progress: float | None = None
        self.chunks: dict[int, bytes] = {}
        self.next = 1
        self.changed = asyncio.Event()


class TaskHandle:
    """A submitted task: its id, its progress and partial output while it runs, and its
    result when it finishes."""

    def __init__(self, client: Client, task_id: str, future: asyncio.Future[TaskOutcome],
                 feed: Feed) -> None:
        self.client = client
        self.task_id = task_id
        self._future = future
        self._feed = feed

    @property
    def progress(self) -> float | None:
        """The latest progress its agent reported (None before any)."""
        return self._feed.progress

    async def stream(self) -> AsyncIterator[bytes]:
        """The partial output its agent streams (`ctx.stream`), in the order sent, until
        the task finishes. Not kept anywhere: a chunk sent while this client was away,
        or arriving after the task's outcome, is not seen."""
        feed = self._feed
        while True:
            while feed.next in feed.chunks:
                chunk = feed.chunks.pop(feed.next)
                feed.next += 1
                yield chunk
            if self._future.done():
                for seq in sorted(feed.chunks):  # after a gap (a chunk lost): in order
                    yield feed.chunks.pop(seq)
                return
            feed.changed.clear()
            changed = asyncio.ensure_future(feed.changed.wait())
            either: set[asyncio.Future[Any]] = {changed, self._future}
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()

    def done(self) -> bool:
        return self._future.done()

    async def outcome(self, timeout: float | None = None) -> TaskOutcome:
        """How the task ended, once it has (TimeoutError after `timeout` seconds)."""
        return await asyncio.wait_for(asyncio.shield(self._future), timeout)

    async def result(self, timeout: float | None = None) -> Any:
        """The task's result; TaskDeadLettered or TaskCancelled if it did not complete,
        TimeoutError if it has not finished within `timeout` seconds."""
        return (await self.outcome(timeout)).value()

    def __repr__(self) -> str:
        return f"TaskHandle({self.task_id!r})"
