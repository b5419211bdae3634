"""What the leader writes on tasks: placements, moves off agents, run timeouts; and what
it tells agents of them (the assignment, a revoke). The dispatcher and the failover
reactor call these through TaskService, which has them from this class."""

from __future__ import annotations

import heapq
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from domain.agents.commands import ControlMessage
from domain.errors import CommandRefused, ErrorCode
from domain.tasks.commands import Assignment
from domain.tasks.placement import Candidate
from domain.tasks.task import Task, TaskStatus
from infra.log.repository import Repository
from infra.names import Names
from services.execute import Outcome, execute

Publish = Callable[[str, bytes], Awaitable[None]]


def new_token() -> str:
    return secrets.token_hex(8)


def existing_task(task: Task | None, task_id: str) -> Task:
    if task is None:
        raise CommandRefused(ErrorCode.NOT_FOUND, f"task {task_id} does not exist")
    return task


def considered(candidates: list[Candidate], limit: int = 8) -> list[dict[str, Any]]:
    """What placement looked at, kept in the event so `why` can be answered later."""
    return [
        {"agent_id": c.agent_id, "load": c.load, "capacity": c.capacity, "status": c.status}
        for c in heapq.nsmallest(limit, candidates, key=lambda c: (c.load, c.agent_id))
    ]


def assignment_message(task: Task) -> bytes:
    return Assignment(
        task_id=task.id, kind=task.kind, payload=task.payload, requires=task.requires,
        attempt=task.attempt, token=task.token or "", timeout_s=task.timeout_s,
    ).model_dump_json().encode()


class TaskMoves:
    """The leader's writes on tasks; TaskService's attributes are theirs."""

    repository: Repository
    names: Names
    publish: Publish
    backoff_base: float
    backoff_cap: float

    async def assign(self, task_id: str, agent: Candidate, strategy: str,
                     seen: list[Candidate], causation_id: str | None) -> Outcome:
        def decide(task: Task | None) -> Task:
            task = existing_task(task, task_id)
            task.assign(agent.agent_id, agent.incarnation, new_token(), strategy,
                        considered(seen), time.time())
            return task

        outcome = await execute(self.repository, task_id, decide, causation_id)
        await self._deliver(outcome)
        return outcome

    async def reassign(self, task_id: str, from_agent: str, agent: Candidate, reason: str,
                       strategy: str, seen: list[Candidate], causation_id: str | None,
                       unaccepted_token: str | None = None) -> Outcome:
        """Move an open task; with `unaccepted_token`, only if that assignment is still
        unaccepted (an accept that lands as the timeout fires wins)."""
        moved: list[str | None] = [None]

        def decide(task: Task | None) -> Task:
            task = existing_task(task, task_id)
            task.check_move(from_agent, unaccepted_token)
            moved[0] = task.token
            task.reassign(agent.agent_id, agent.incarnation, new_token(), reason, strategy,
                          considered(seen))
            return task

        outcome = await execute(self.repository, task_id, decide, causation_id)
        await self._deliver(outcome)
        # To itself, the work goes on under the new token. Off an assignment it never
        # accepted, it may still have begun the work (its accept lost on the way, or a
        # gray failure): it is told too.
        if agent.agent_id != from_agent:
            await self._stop_moved(outcome, task_id, from_agent, moved[0], reason)
        return outcome

    async def requeue(self, task_id: str, from_agent: str, reason: str,
                      causation_id: str | None, unaccepted_token: str | None = None) -> Outcome:
        moved: list[str | None] = [None]

        def decide(task: Task | None) -> Task:
            task = existing_task(task, task_id)
            task.check_move(from_agent, unaccepted_token)
            moved[0] = task.token
            task.requeue(reason)
            return task

        outcome = await execute(self.repository, task_id, decide, causation_id)
        # Back in the queue off an assignment never accepted, it most likely comes back to
        # the same agent (none other could take it), which then goes on with the work
        # under the newer token: not stopped (its accept may have been lost). Any other
        # move, and an end, stops it.
        if unaccepted_token is None or outcome.aggregate.status != TaskStatus.PENDING:
            await self._stop_moved(outcome, task_id, from_agent, moved[0], reason)
        return outcome

    async def _stop_moved(self, outcome: Outcome, task_id: str, from_agent: str,
                          token: str | None, reason: str) -> None:
        """The agent a task moved off is told to stop it (it may be alive: a gray
        failure, an accept too late, a death declared wrongly), so that running twice
        lasts no longer than this notice takes to arrive. The moved assignment's token
        goes with it: an agent given the task again keeps the newer one's work."""
        if not outcome.positions or not token:
            return
        control = ControlMessage(type="revoke", reason=f"moved: {reason}", task_id=task_id,
                                 token=token)
        await self.publish(self.names.agent_control(from_agent),
                           control.model_dump_json().encode())

    async def time_out(self, task_id: str, token: str, causation_id: str | None) -> Outcome:
        """A task ran past its timeout_s: a retryable failure of that attempt; its agent
        is told to stop."""
        holder: list[str | None] = [None]

        def decide(task: Task | None) -> Task:
            task = existing_task(task, task_id)
            holder[0] = task.agent_id
            task.fail(token, f"timed out after {task.timeout_s}s", True, time.time(),
                      self.backoff_base, self.backoff_cap)
            return task

        outcome = await execute(self.repository, task_id, decide, causation_id)
        if outcome.positions and holder[0]:
            control = ControlMessage(type="revoke", reason="timed out", task_id=task_id)
            await self.publish(self.names.agent_control(holder[0]),
                               control.model_dump_json().encode())
        return outcome

    async def _deliver(self, outcome: Outcome) -> None:
        task: Task = outcome.aggregate
        # A move can end the task instead (its last attempt left unaccepted): no delivery.
        if outcome.positions and task.agent_id and task.status == TaskStatus.ASSIGNED:
            await self.publish(self.names.agent_tasks(task.agent_id), assignment_message(task))
