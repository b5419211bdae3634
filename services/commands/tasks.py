"""Task commands: submit, accept, progress, complete, fail, cancel; the placements and
moves the leader decides are TaskMoves' (services/commands/task_moves.py)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from domain.agents.commands import ControlMessage
from domain.errors import CommandRefused, ErrorCode, Overloaded
from domain.tasks.commands import (
    FLOW_FIELDS,
    MAX_DELAY_S,
    AgentAssignments,
    Assignment,
    CancelTask,
    CompleteTask,
    FailTask,
    ReportProgress,
    SubmitTask,
    TaskToken,
)
from domain.tasks.placement import Candidate
from domain.tasks.task import StaleToken, Task, TaskStatus, fingerprint
from infra.caller import current_identity, decided_by_orchestrator, decision_causes
from infra.log.repository import Repository
from infra.names import Names
from projections.board.tasks import TaskBoard
from projections.limits import Limits
from services.commands.admission import Admission
from services.commands.task_moves import (
    Publish,
    TaskMoves,
    considered,
    existing_task,
    new_token,
)
from services.execute import Outcome, execute

log = logging.getLogger(__name__)
PLACEMENTS = frozenset({"Assigned"})
# A running task's progress is written to the log at most this often: the log keeps what
# an audit needs (how far it got, now and then), while every report still reaches the
# submitter at once (services/commands/stream.py). A task's first report is written only
# if it was not running yet, or has run this long.
PROGRESS_RECORD_EVERY_S = 5.0
MAX_PROGRESS_TRACKED = 10_000  # past it, finished tasks' entries are dropped


class Claim(Protocol):
    """An agent set aside for a new task by the leader's dispatcher (Dispatcher.claim)."""

    agent: Candidate
    seen: list[Candidate]
    strategy: str
    cause: str  # its placement's causation id: the decision (placing.dispatch_cause)

    def settle(self, position: int) -> None: ...
    def release(self) -> None: ...


class Placer(Protocol):
    """The leader's offer of an agent for a task just submitted, when one has room, no
    task waits before it and its limits allow; None otherwise (and on every orchestrator
    but the leader)."""

    def __call__(self, task_id: str, cmd: SubmitTask) -> Claim | None: ...




class TaskService(TaskMoves):
    """Command handlers of the Task aggregate: thin load-decide-save wrappers."""

    def __init__(self, repository: Repository, names: Names, board: TaskBoard,
                 publish: Publish, backoff_base: float, backoff_cap: float,
                 is_operator: Callable[[str], bool] = lambda identity: True,
                 on_progress: Callable[[str, float], Awaitable[None]] | None = None,
                 limits: Limits | None = None,
                 on_refused: Callable[[str], None] = lambda reason: None,
                 kind_runs: Callable[[str], bool] = lambda kind: True) -> None:
        # How often a task's progress is written to the log at most (tests shorten it).
        self.progress_record_every_s = PROGRESS_RECORD_EVERY_S
        # Whether some agent runs a kind: a submit of one nobody runs is told so.
        self.kind_runs = kind_runs
        self.repository = repository
        self.admission = Admission(board, limits or Limits(0, 0), on_refused)
        # Told of every accepted progress report, written or not (the submitter's feed).
        self.on_progress = on_progress
        self._progress_written: dict[str, float] = {}  # task id -> when, while it runs
        # Whether an identity may act on every task (an operator), not only its own.
        self.is_operator = is_operator
        self.names = names
        self.board = board
        self.publish = publish
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.placer: Placer | None = None  # set while this orchestrator leads

    # --- clients ------------------------------------------------------------------

    async def submit(self, cmd: SubmitTask, causation_id: str | None = None) -> dict[str, Any]:
        """Record the task; on the leader, when an agent has room and nothing waits
        before it, place it in the same append (Submitted and Assigned in one atomic
        batch: one sync where a submit and its placement took two, and no dispatcher
        round between them)."""
        task_id = cmd.task_id or f"t-{uuid.uuid4().hex}"
        # Fields added later count only when given: a retry of a submission made before
        # they existed is still the same submission.
        body = cmd.model_dump(exclude={"task_id", "delay_s", "not_before", *FLOW_FIELDS})
        body.update(cmd.model_dump(include={"delay_s", "not_before", *FLOW_FIELDS},
                                   exclude_none=True))
        digest = fingerprint(body)
        submitter = current_identity.get()
        operator = self.is_operator(submitter)
        admitted = [False]  # a new task was let in: counted until the board has it
        written: int | None = None
        try:
            reply = await self._submit(cmd, task_id, digest, submitter, operator,
                                       causation_id, admitted)
            written = reply.get("position")
            return reply
        except Overloaded as refused:  # once, though decided twice (execute re-reads)
            self.admission.on_refused(refused.bound)
            raise
        finally:
            if admitted[0]:
                self.admission.settled(submitter, written)

    async def _submit(self, cmd: SubmitTask, task_id: str, digest: str, submitter: str,
                      operator: bool, causation_id: str | None,
                      admitted: list[bool]) -> dict[str, Any]:
        not_before = _not_before(cmd, time.time())  # decided now: the event records it
        claim = self.placer(task_id, cmd) if self.placer and not not_before else None

        def decide(task: Task | None) -> Task:
            if task is None:
                # Only a new task is held to the bounds: a retried submission is
                # answered (a refusal is decided again on the log's state, so a task not
                # cached is found there).
                if not admitted[0]:
                    self.admission.let_in(submitter)
                    admitted[0] = True
                task = Task(task_id, cmd.kind, cmd.payload, list(cmd.requires), cmd.priority,
                            cmd.max_attempts, cmd.timeout_s, digest, submitter, not_before,
                            cmd.concurrency_key or "", cmd.fairness_key or "",
                            cmd.selector or None, cmd.prefer or None)
                if claim is not None:
                    task.assign(claim.agent.agent_id, claim.agent.incarnation, new_token(),
                                claim.strategy, considered(claim.seen), time.time())
                return task
            if task.submitted_by != submitter and not operator:
                # Another's task, or one from before tasks had owners: the same answer
                # whatever its body, so that nothing of it can be learnt or confirmed.
                raise CommandRefused(
                    ErrorCode.CONFLICT, f"task id {task_id} is taken; choose another")
            if task.fingerprint != digest:
                raise CommandRefused(
                    ErrorCode.CONFLICT, f"task {task_id} exists with a different body")
            return task  # the same submission again: answered, not repeated

        # The placement is the orchestrator's decision, not the submitter's: its event
        # says so.
        own = decided_by_orchestrator.set(PLACEMENTS)
        caused = decision_causes.set({"Assigned": claim.cause} if claim is not None else {})
        try:
            outcome = await execute(self.repository, task_id, decide, causation_id,
                                    causation_id)
        except BaseException:
            if claim is not None:
                claim.release()
            raise
        finally:
            decided_by_orchestrator.reset(own)
            decision_causes.reset(caused)
        if claim is not None:
            placed = outcome.aggregate.agent_id == claim.agent.agent_id
            if placed and len(outcome.positions) > 1 and outcome.position is not None:
                claim.settle(outcome.position)
                await self._deliver(outcome)
            else:  # the task existed already: the claim was not used
                claim.release()
        reply = _reply(outcome, status=outcome.aggregate.status)
        if outcome.aggregate.agent_id is None and not self.kind_runs(cmd.kind):
            reply["warning"] = (f"no agent runs kind {cmd.kind}: the task waits until one "
                                f"that declares it (or declares no kinds) registers")
        return reply

    async def cancel(self, cmd: CancelTask, causation_id: str | None = None) -> dict[str, Any]:
        holder: list[str | None] = [None]
        sender = current_identity.get()
        operator = self.is_operator(sender)

        def decide(task: Task | None) -> Task:
            task = existing_task(task, cmd.task_id)
            task.check_owner(sender, operator)
            holder[0] = task.agent_id if task.is_open else None
            task.cancel(cmd.reason)
            return task

        outcome = await execute(self.repository, cmd.task_id, decide, causation_id)
        agent_id = holder[0]
        if outcome.positions and agent_id:
            control = ControlMessage(type="cancel", reason=cmd.reason, task_id=cmd.task_id)
            await self.publish(self.names.agent_control(agent_id),
                               control.model_dump_json().encode())
        return _reply(outcome, status=outcome.aggregate.status)

    # --- agents -------------------------------------------------------------------

    async def accept(self, cmd: TaskToken, causation_id: str | None = None) -> dict[str, Any]:
        return await self._report(cmd, "accept", causation_id,
                                  lambda task: task.accept(cmd.token))

    async def progress(self, cmd: ReportProgress,
                       causation_id: str | None = None) -> dict[str, Any]:
        now = time.time()
        view = self.board.get(cmd.task_id)
        since = max(getattr(view, "started_ts", None) or 0.0,
                    self._progress_written.get(cmd.task_id, 0.0))
        due = now - since >= self.progress_record_every_s

        def report(task: Task) -> None:
            if due or task.status != TaskStatus.RUNNING:  # else checked, not written
                task.report_progress(cmd.token, cmd.progress)
            else:
                task.check_token(cmd.token)

        reply = await self._report(cmd, "progress", causation_id, report)
        if "position" in reply:
            self._progress_written[cmd.task_id] = now
            if len(self._progress_written) > MAX_PROGRESS_TRACKED:
                self._forget_finished_progress()
        if self.on_progress is not None:
            await self.on_progress(cmd.task_id, cmd.progress)
        return reply

    def _forget_finished_progress(self) -> None:
        for task_id in list(self._progress_written):
            view = self.board.get(task_id)
            if view is None or not view.is_open:
                del self._progress_written[task_id]

    async def complete(self, cmd: CompleteTask,
                       causation_id: str | None = None) -> dict[str, Any]:
        return await self._report(cmd, "complete", causation_id,
                                  lambda task: task.complete(cmd.token, cmd.result))

    async def fail(self, cmd: FailTask, causation_id: str | None = None) -> dict[str, Any]:
        return await self._report(
            cmd, "fail", causation_id,
            lambda task: task.fail(cmd.token, cmd.error, cmd.retryable, time.time(),
                                   self.backoff_base, self.backoff_cap))

    async def _report(self, cmd: TaskToken, action: str, causation_id: str | None,
                      act: Callable[[Task], Any]) -> dict[str, Any]:
        # The agent the command's subject names (services.commands.service): the
        # token's holder must be that agent, not one that learnt the token.
        reporter = current_identity.get()

        def decide(task: Task | None) -> Task:
            task = existing_task(task, cmd.task_id)
            task.check_reporter(reporter, cmd.token)
            act(task)
            return task

        try:
            outcome = await execute(self.repository, cmd.task_id, decide, causation_id)
        except StaleToken as stale:
            try:
                await self._record_stale(cmd, action, stale, causation_id)
            except CommandRefused as unrecorded:  # the refusal stands, recorded or not
                log.warning("stale report not recorded task=%s: %s", cmd.task_id,
                            unrecorded.message)
            raise
        return _reply(outcome, status=outcome.aggregate.status)

    async def _record_stale(self, cmd: TaskToken, action: str, stale: StaleToken,
                            causation_id: str | None) -> None:
        """A late report from an earlier attempt is kept in the history; a forgery is not."""

        def decide(task: Task | None) -> Task | None:
            if task is None or not task.was_issued(cmd.token):
                return None
            task.record_stale(cmd.token, action, stale.message)
            return task

        await execute(self.repository, cmd.task_id, decide, causation_id)

    async def assignments(self, cmd: AgentAssignments,
                          causation_id: str | None = None) -> dict[str, Any]:
        tasks = self.board.open_tasks_of(cmd.agent_id)
        return {"ok": True, "agent_id": cmd.agent_id, "assignments": [
            Assignment(task_id=t.task_id, kind=t.kind, payload=t.payload, requires=t.requires,
                       attempt=t.attempt, token=t.token or "", timeout_s=t.timeout_s
                       ).model_dump()
            for t in tasks
        ]}


def _not_before(cmd: SubmitTask, now: float) -> float:
    """When a submitted task may be placed (epoch seconds); 0.0 for at once, as for a
    time already past. CommandRefused for one further ahead than MAX_DELAY_S."""
    due = cmd.not_before if cmd.not_before is not None else now + (cmd.delay_s or 0.0)
    if due - now > MAX_DELAY_S:
        raise CommandRefused(ErrorCode.INVALID_REQUEST,
                             f"not_before is more than {MAX_DELAY_S // 86400} days ahead")
    return due if due > now else 0.0


def _reply(outcome: Outcome, **fields: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": True, "task_id": outcome.aggregate.id, **fields}
    if outcome.position is not None:
        reply["position"] = outcome.position
    return reply
