"""An agent's tasks: what a handler gets (TaskContext), and the running of each
assignment, from its accept to its result or failure, each report retried until the
orchestrator answers. AgentClient (sdk/agent.py) is built on TaskRunner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from nats.aio.msg import Msg

from sdk.errors import CommandError, TaskFailed
from sdk.protocol import (
    ASSIGNMENTS,
    TASK_ACCEPT,
    TASK_COMPLETE,
    TASK_FAIL,
    TASK_PROGRESS,
    Assignment,
)

# The number of a chunk of partial output, from 1: the client puts chunks in order.
STREAM_SEQ_HEADER = "Orch-Seq"

if TYPE_CHECKING:
    from sdk.agent import AgentClient

log = logging.getLogger("sdk.agent")  # the agent's log, as before


class TaskContext:
    """What a task handler gets: the assignment, and a way to report progress."""

    def __init__(self, client: AgentClient, assignment: Assignment) -> None:
        self.client = client
        self.assignment = assignment
        self.task_id = assignment.task_id
        self.kind = assignment.kind
        self.payload = assignment.payload
        self._streamed = 0  # chunks sent: each carries its number

    def token_body(self) -> dict[str, str]:
        """The task and its current fencing token, as every report carries them."""
        return {"task_id": self.task_id, "token": self.assignment.token}

    async def progress(self, value: float) -> None:
        """Report how far the task is (0..1): its submitter sees every report at once;
        the log keeps one now and then."""
        await self.client.request(TASK_PROGRESS, {**self.token_body(), "progress": value})

    async def stream(self, data: bytes | str) -> None:
        """Send a piece of partial output (tokens, a chunk of a file: at most 64 KiB) to
        the task's submitter, in order, over core NATS: nothing is written to the log,
        and nothing is sent again if the agent is disconnected meanwhile."""
        chunk = data.encode() if isinstance(data, str) else bytes(data)
        self._streamed += 1
        nc = self.client.nc
        if nc is None:
            raise CommandError("unavailable", "the agent is not connected")
        await nc.publish(self.client.names.agent_stream(self.client.agent_id, self.task_id),
                         chunk, headers={STREAM_SEQ_HEADER: str(self._streamed)})


TaskHandler = Callable[[TaskContext], Awaitable[Any]]


class TaskRunner:
    """Taking assignments and running their handlers, for AgentClient."""

    # Set by AgentClient.
    agent_id: str
    handlers: dict[str, TaskHandler]
    running: list[str]
    completed: deque[str]
    _tasks: list[asyncio.Task[None]]
    _stopping: bool
    _work: dict[str, asyncio.Task[None]]
    _contexts: dict[str, TaskContext]

    if TYPE_CHECKING:
        async def request(self, command: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def _on_assignment(self, msg: Msg) -> None:
        try:
            assignment = Assignment.parse(msg.data)
        except ValueError:
            log.warning("unreadable assignment agent=%s", self.agent_id)
            return
        self._take(assignment)

    def _take(self, assignment: Assignment) -> None:
        running = self._work.get(assignment.task_id)
        if running is not None and not running.done():
            current = self._contexts.get(assignment.task_id)
            if current is not None and current.assignment.token != assignment.token:
                # Given to us again (say after an accept timeout): the old token is
                # stale now, so the work goes on under the new one, accepted first.
                current.assignment = assignment
                self._tasks.append(asyncio.create_task(self._accept_again(current)))
            return  # else already at it (an assignment seen again after a reconnect)
        self._work[assignment.task_id] = asyncio.create_task(self._run(assignment))

    async def _accept_again(self, context: TaskContext) -> None:
        with contextlib.suppress(CommandError, asyncio.CancelledError):
            await self._report(TASK_ACCEPT, context.token_body())

    async def _run(self, assignment: Assignment) -> None:
        context = TaskContext(cast("AgentClient", self), assignment)  # it is one
        handler = self.handlers.get(assignment.kind) or self.handlers.get("*")
        try:
            await self._report(TASK_ACCEPT, context.token_body())
        except CommandError as refused:
            log.info("assignment refused task=%s: %s", assignment.task_id, refused)
            return
        self.running.append(assignment.task_id)
        self._contexts[assignment.task_id] = context
        try:
            if handler is None:
                raise TaskFailed(f"no handler for kind {assignment.kind}", retryable=False)
            result = await handler(context)
            await self._report(TASK_COMPLETE, {**context.token_body(), "result": result})
            self.completed.append(assignment.task_id)
        except TaskFailed as failed:
            await self._report_failure(context.token_body(), str(failed), failed.retryable)
        except CommandError as refused:
            log.info("result refused task=%s: %s", assignment.task_id, refused)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._report_failure(context.token_body(), repr(exc), True)
        finally:
            with contextlib.suppress(ValueError):
                self.running.remove(assignment.task_id)
            self._work.pop(assignment.task_id, None)
            self._contexts.pop(assignment.task_id, None)

    async def _report_failure(self, token: dict[str, str], error: str, retryable: bool) -> None:
        with contextlib.suppress(CommandError):
            await self._report(TASK_FAIL, {**token, "error": error[:4096],
                                           "retryable": retryable})

    async def _report(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a result until the orchestrator answers: reports are idempotent, and a
        result must outlive an orchestrator restart or a NATS outage."""
        delay = 0.1
        while True:
            if self._stopping:
                raise asyncio.CancelledError
            try:
                return await self.request(command, body)
            except CommandError as refused:
                if refused.code != "unavailable":  # a refusal to retry, by the protocol
                    raise
                log.info("report refused as unavailable agent=%s command=%s; retrying",
                         self.agent_id, command)
            except Exception as exc:  # no responders, timeouts, reconnecting
                log.info("report pending agent=%s command=%s: %r", self.agent_id, command, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _on_reconnected(self) -> None:
        """Assignments published while we were away are fetched, not lost."""
        self._tasks.append(asyncio.create_task(self._recover_quietly()))

    async def _recover_quietly(self) -> None:
        await self.recover_assignments()

    async def recover_assignments(self) -> list[str]:
        try:
            reply = await self.request(ASSIGNMENTS, {"agent_id": self.agent_id})
        except Exception as exc:
            log.debug("assignments unavailable agent=%s: %r", self.agent_id, exc)
            return []
        recovered = [Assignment.parse(a) for a in reply["assignments"]]
        for assignment in recovered:
            self._take(assignment)
        return [a.task_id for a in recovered]
