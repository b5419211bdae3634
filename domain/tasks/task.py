"""The Task aggregate: submission, fenced assignments, results, retries and their end."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

from eventsourcing.domain import event

from domain.base import StrIdAggregate, named_in_the_log
from domain.errors import CommandRefused, ErrorCode


class TaskStatus(StrEnum):
    """Where a task is in its life: the one definition of each status. Members are
    strings, equal to their values: the log, the replies and the read API carry the
    values as they always have."""

    PENDING = "pending"
    SCHEDULED = "scheduled"  # submitted to run later: placed once its not_before passes
    ASSIGNED = "assigned"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    COMPLETED = "completed"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"


OPEN = frozenset({TaskStatus.ASSIGNED, TaskStatus.RUNNING})
# The reason of a move off an assignment its agent did not accept in time. Such a move
# counts as a failed attempt: a task no agent will accept must end, not loop forever.
ACCEPT_TIMEOUT = "accept_timeout"
# The reason of a move off a running task whose agent promised progress and went quiet
# past its promise (services/leader/unresponsive.py): a failed attempt too.
NO_PROGRESS = "no_progress"
COUNTED_MOVES = frozenset({ACCEPT_TIMEOUT, NO_PROGRESS})
_WHY_ENDED = {ACCEPT_TIMEOUT: "not accepted within the accept timeout",
              NO_PROGRESS: "no progress reported as promised"}
TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.DEAD_LETTERED, TaskStatus.CANCELLED})


def fingerprint(body: dict[str, Any]) -> str:
    """A digest of a submission, to tell a retried submit from a different one."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def retry_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff: base, 2*base, 4*base, ... at most cap."""
    return float(min(cap, base * 2 ** (failures - 1)))


class StaleToken(CommandRefused):
    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(ErrorCode.STALE_TOKEN, f"task {task_id}: {reason}")


class Task(StrIdAggregate):
    """One task over all its attempts. Every (re)assignment gets a new fencing token."""

    @staticmethod
    def create_id(task_id: str) -> str:
        return task_id

    @event("Submitted")
    def __init__(
        self, task_id: str, kind: str, payload: Any, requires: list[str], priority: int,
        max_attempts: int, timeout_s: float, fingerprint: str, submitted_by: str = "",
        not_before: float = 0.0, concurrency_key: str = "", fairness_key: str = "",
        selector: dict[str, str] | None = None, prefer: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        # Its owner: the only submitter that may act on it ("" before tasks had owners).
        self.submitted_by = submitted_by
        self.payload = payload
        self.requires = list(requires)
        self.priority = priority
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.fingerprint = fingerprint
        # When it may be placed (epoch seconds), decided at its submit; 0: at once.
        self.not_before = not_before
        self.status = TaskStatus.SCHEDULED if not_before else TaskStatus.PENDING
        # Flow control (domain/limits/limit.py): "" and {} when not given.
        self.concurrency_key = concurrency_key
        self.fairness_key = fairness_key
        self.selector = dict(selector or {})
        self.prefer = dict(prefer or {})
        self.attempt = 0
        self.failures = 0
        self.agent_id: str | None = None
        self.incarnation = 0
        self.token: str | None = None
        self.retry_at = 0.0
        self.progress = 0.0
        self.result: Any = None
        self.error: str | None = None
        self.past_tokens: list[str] = []

    # --- guards -----------------------------------------------------------------

    def check_reporter(self, agent_id: str, token: str) -> None:
        """A report on the current assignment comes from the agent it was given to: the
        token alone proves nothing once others have seen it (another agent holding it
        must not complete this task as if it ran it)."""
        if token == self.token and agent_id != self.agent_id:
            raise CommandRefused(
                ErrorCode.UNAUTHORIZED,
                f"task {self.id} is not assigned to agent {agent_id}; only its holder may "
                f"report on it")

    def check_owner(self, identity: str, operator: bool) -> None:
        """Only its submitter, or an operator, may act on a task; to anyone else it is
        as if it did not exist (the reply tells nothing of another's task)."""
        if operator or (self.submitted_by and identity == self.submitted_by):
            return
        raise CommandRefused(ErrorCode.NOT_FOUND, f"task {self.id} does not exist")

    def check_token(self, token: str) -> None:
        if token != self.token:
            raise StaleToken(self.id, "the token is not the current assignment's")
        if self.status not in OPEN:
            raise StaleToken(self.id, f"the task is {self.status}")

    def check_move(self, from_agent: str, unaccepted_token: str | None = None) -> None:
        """A move (reassign, requeue) decided on what the projections showed holds only
        if the task is still on `from_agent` and, given `unaccepted_token`, that is still
        its assignment and unaccepted (an accept that lands as the timeout fires wins)."""
        if self.agent_id != from_agent:
            raise CommandRefused(ErrorCode.CONFLICT, f"task {self.id} has moved already")
        if unaccepted_token is not None and (
                unaccepted_token != self.token or self.status != TaskStatus.ASSIGNED):
            raise CommandRefused(ErrorCode.CONFLICT, f"task {self.id} was accepted")

    def check_placeable(self, now: float) -> None:
        if self.status == TaskStatus.RETRY_WAIT and now >= self.retry_at:
            return
        if self.status == TaskStatus.SCHEDULED and now >= self.not_before:
            return
        if self.status != TaskStatus.PENDING:
            raise CommandRefused(ErrorCode.CONFLICT, f"task {self.id} is {self.status}")

    def check_open(self) -> None:
        if self.status not in OPEN:
            raise CommandRefused(ErrorCode.CONFLICT, f"task {self.id} is {self.status}")

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    # --- placement --------------------------------------------------------------

    def assign(self, agent_id: str, incarnation: int, token: str, strategy: str,
               considered: list[dict[str, Any]], now: float) -> None:
        """A pending (or due) task goes to an agent."""
        self.check_placeable(now)
        self._assigned(agent_id=agent_id, incarnation=incarnation, attempt=self.attempt + 1,
                       token=token, strategy=strategy, considered=considered)

    @event("Assigned")
    def _assigned(self, agent_id: str, incarnation: int, attempt: int, token: str,
                  strategy: str, considered: list[dict[str, Any]]) -> None:
        self._hand_to(agent_id, incarnation, attempt, token)

    def _hand_to(self, agent_id: str, incarnation: int, attempt: int, token: str) -> None:
        if self.token:
            self.past_tokens.append(self.token)
        self.status = TaskStatus.ASSIGNED
        self.agent_id = agent_id
        self.incarnation = incarnation
        self.attempt = attempt
        self.token = token
        self.progress = 0.0

    def reassign(self, agent_id: str, incarnation: int, token: str, reason: str,
                 strategy: str, considered: list[dict[str, Any]]) -> None:
        """Move an open task off its agent (dead, gone, or too slow to accept)."""
        self.check_open()
        failures = self._counted_failures(reason)
        if failures is not None and self._dead_letter_undone(failures, reason):
            return
        self._reassigned(from_agent=self.agent_id or "", agent_id=agent_id,
                         incarnation=incarnation, attempt=self.attempt + 1, token=token,
                         reason=reason, strategy=strategy, considered=considered,
                         failures=failures)

    @event("Reassigned")
    def _reassigned(self, from_agent: str, agent_id: str, incarnation: int, attempt: int,
                    token: str, reason: str, strategy: str,
                    considered: list[dict[str, Any]], failures: int | None = None) -> None:
        if failures is not None:  # absent: a move that is not the task's failure
            self.failures = failures
        self._hand_to(agent_id, incarnation, attempt, token)

    def requeue(self, reason: str) -> None:
        """Take an open task off its agent when no other agent can have it yet."""
        self.check_open()
        failures = self._counted_failures(reason)
        if failures is not None and self._dead_letter_undone(failures, reason):
            return
        self._requeued(from_agent=self.agent_id or "", reason=reason, failures=failures)

    @event("Requeued")
    def _requeued(self, from_agent: str, reason: str, failures: int | None = None) -> None:
        if failures is not None:
            self.failures = failures
        self._retire_token()
        self.status = TaskStatus.PENDING
        self.agent_id = None

    def _counted_failures(self, reason: str) -> int | None:
        """The failures counted once this move is made: one more for an assignment left
        unaccepted or without the progress promised; None for a move that is no fault of
        the task's (its agent died)."""
        return self.failures + 1 if reason in COUNTED_MOVES else None

    def _dead_letter_undone(self, failures: int, reason: str) -> bool:
        """End the task instead of moving it when this undone assignment was its last
        allowed attempt; True if it ended."""
        if failures < self.max_attempts:
            return False
        self._dead_lettered(
            token=self.token or "", attempt=self.attempt, agent_id=self.agent_id or "",
            error=f"{_WHY_ENDED[reason]} by agent {self.agent_id} "
                  f"({failures} failed attempt(s) of at most {self.max_attempts})",
            retryable=False, failures=failures, reason=reason)
        return True

    def _retire_token(self) -> None:
        if self.token:
            self.past_tokens.append(self.token)
        self.token = None

    # --- what the agent reports ----------------------------------------------------

    def accept(self, token: str) -> bool:
        """False when this assignment was already accepted (nothing to record)."""
        self.check_token(token)
        if self.status == TaskStatus.RUNNING:
            return False
        self._accepted(token=token, attempt=self.attempt)
        return True

    @event("Accepted")
    def _accepted(self, token: str, attempt: int) -> None:
        self.status = TaskStatus.RUNNING

    def report_progress(self, token: str, progress: float) -> None:
        self.check_token(token)
        self._progressed(token=token, progress=progress)

    @event("Progressed")
    def _progressed(self, token: str, progress: float) -> None:
        self.status = TaskStatus.RUNNING
        self.progress = progress

    def complete(self, token: str, result: Any) -> bool:
        """False when this attempt already completed (a retried report)."""
        if self.status == TaskStatus.COMPLETED and token == self.token:
            return False
        self.check_token(token)
        self._completed(token=token, attempt=self.attempt, agent_id=self.agent_id or "",
                        result=result)
        return True

    @event("Completed")
    def _completed(self, token: str, attempt: int, agent_id: str, result: Any) -> None:
        self.status = TaskStatus.COMPLETED
        self.result = result
        self.progress = 1.0

    def fail(self, token: str, error: str, retryable: bool, now: float, backoff_base: float,
             backoff_cap: float) -> bool:
        """A failed attempt is retried after a growing delay, until max_attempts failures.
        False when this attempt's failure was already recorded (a retried report)."""
        if token == self.token and self.status in (TaskStatus.RETRY_WAIT,
                                                   TaskStatus.DEAD_LETTERED):
            return False
        self.check_token(token)
        failures = self.failures + 1
        if retryable and failures < self.max_attempts:
            delay = retry_delay(failures, backoff_base, backoff_cap)
            self._failed(token=token, attempt=self.attempt, agent_id=self.agent_id or "",
                         error=error, retryable=retryable, failures=failures,
                         retry_in_s=delay, retry_at=now + delay)
        else:
            self._dead_lettered(token=token, attempt=self.attempt,
                                agent_id=self.agent_id or "", error=error,
                                retryable=retryable, failures=failures)
        return True

    @event("Failed")
    def _failed(self, token: str, attempt: int, agent_id: str, error: str, retryable: bool,
                failures: int, retry_in_s: float, retry_at: float) -> None:
        self.status = TaskStatus.RETRY_WAIT
        self.failures = failures
        self.error = error
        self.retry_at = retry_at
        self.agent_id = None

    @event("DeadLettered")
    def _dead_lettered(self, token: str, attempt: int, agent_id: str, error: str,
                       retryable: bool, failures: int, reason: str | None = None) -> None:
        # reason: why it ended when its agent did not report a failure (ACCEPT_TIMEOUT)
        self.status = TaskStatus.DEAD_LETTERED
        self.failures = failures
        self.error = error

    def cancel(self, reason: str) -> bool:
        """False when already cancelled; a finished task cannot be cancelled."""
        if self.status == TaskStatus.CANCELLED:
            return False
        if self.status in TERMINAL:
            raise CommandRefused(ErrorCode.CONFLICT, f"task {self.id} is {self.status}")
        self._cancelled(reason=reason, agent_id=self.agent_id or "", was=self.status)
        return True

    @event("Cancelled")
    def _cancelled(self, reason: str, agent_id: str, was: str) -> None:
        self.status = TaskStatus.CANCELLED
        self.error = reason  # what its submitter is told (services/commands/results.py)

    def was_issued(self, token: str) -> bool:
        """True for a token this task really handed out (a late report, not a forgery)."""
        return token == self.token or token in self.past_tokens

    def record_stale(self, token: str, action: str, reason: str) -> None:
        """Keep the refusal of a late report from an earlier attempt in the history."""
        self._stale_refused(token=token, action=action, reason=reason,
                            current_attempt=self.attempt)

    @event("StaleResultRefused")
    def _stale_refused(self, token: str, action: str, reason: str, current_attempt: int) -> None:
        pass


named_in_the_log(Task, "domain.task:Task")
