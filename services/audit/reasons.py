"""Short human reasons for the steps of a task's or an agent's history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.tasks.task import OPEN, TaskStatus
from projections.board.tasks import STATUS_BY_EVENT

# The reasons the failover reactor and the dispatcher give for a move, as an operator
# reads them ({a}: the agent the task left). Unknown reasons are shown as recorded.
_MOVE_CAUSES = {
    "agent declared dead": "agent {a} dead",
    "agent_dead": "agent {a} dead",
    "agent deregistered": "agent {a} left",
    "agent_left": "agent {a} left",
    "agent restarted": "agent {a} restarted",
    "accept_timeout": "agent {a} did not accept it in time",
    "no_progress": "agent {a} reported no progress as it promised",
}
_CANCELLED_WHILE: dict[str, str] = {
    TaskStatus.PENDING: "while waiting in the queue",
    TaskStatus.RETRY_WAIT: "while waiting to retry",
    TaskStatus.ASSIGNED: "while assigned to {a}, not yet accepted",
    TaskStatus.RUNNING: "while running on {a}",
}


@dataclass
class TaskSoFar:
    """What the steps before this one say about the task."""

    max_attempts: int = 0
    status: str = TaskStatus.PENDING.value
    agent: str = ""
    incarnation: int = 0
    attempt: int = 0
    by_token: dict[str, tuple[int, str]] = field(default_factory=dict)

    def after(self, name: str, data: dict[str, Any]) -> None:
        """Take one more event into account."""
        if name == "Submitted":
            self.max_attempts = int(data.get("max_attempts") or 0)
        elif name in ("Assigned", "Reassigned"):
            self.agent = data.get("agent_id", "")
            self.incarnation = int(data.get("incarnation") or 0)
            self.attempt = int(data.get("attempt") or 0)
            self.by_token[data.get("token", "")] = (self.attempt, self.agent)
        elif name in ("Requeued", "Failed"):
            self.agent = ""
        self.status = STATUS_BY_EVENT.get(name, self.status)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def move_cause(reason: str, from_agent: str) -> str:
    """'agent a1 dead' for a move off a1 because it was declared dead."""
    template = _MOVE_CAUSES.get(reason)
    if template is not None:
        return template.format(a=from_agent)
    return f"{reason or 'moved'} (agent {from_agent})"


def _submitted(data: dict[str, Any], so_far: TaskSoFar) -> str:
    requires = data.get("requires") or []
    needs = f", requires {', '.join(requires)}" if requires else ""
    return (f"submitted: kind {data.get('kind')}{needs}, priority {data.get('priority')}, "
            f"at most {data.get('max_attempts')} attempt(s) of {data.get('timeout_s')}s")


def _assigned(data: dict[str, Any], so_far: TaskSoFar) -> str:
    after: dict[str, str] = {TaskStatus.RETRY_WAIT: "retry: ",
                             TaskStatus.PENDING: "" if so_far.attempt == 0 else "placed again: "}
    return (f"{after.get(so_far.status, '')}assigned to {data.get('agent_id')} (incarnation "
            f"{data.get('incarnation')}) for attempt {data.get('attempt')}")


def _counted(data: dict[str, Any], so_far: TaskSoFar) -> str:
    """A move counted as a failed attempt (an assignment left unaccepted) says so."""
    failures = data.get("failures")
    if failures is None:
        return ""
    return f"; failed attempt {failures} of at most {so_far.max_attempts or '?'}"


def _reassigned(data: dict[str, Any], so_far: TaskSoFar) -> str:
    cause = move_cause(data.get("reason", ""), data.get("from_agent", ""))
    return (f"moved from {data.get('from_agent')} to {data.get('agent_id')} (incarnation "
            f"{data.get('incarnation')}) for attempt {data.get('attempt')}: {cause}"
            f"{_counted(data, so_far)}")


def _requeued(data: dict[str, Any], so_far: TaskSoFar) -> str:
    cause = move_cause(data.get("reason", ""), data.get("from_agent", ""))
    return (f"returned to the queue: no other agent could take it ({cause})"
            f"{_counted(data, so_far)}")


def _accepted(data: dict[str, Any], so_far: TaskSoFar) -> str:
    return (f"accepted by {so_far.agent} (incarnation {so_far.incarnation}) on attempt "
            f"{data.get('attempt', so_far.attempt)}")


def _progressed(data: dict[str, Any], so_far: TaskSoFar) -> str:
    return f"{so_far.agent} reports {float(data.get('progress') or 0):.0%} done"


def _completed(data: dict[str, Any], so_far: TaskSoFar) -> str:
    return f"completed by {data.get('agent_id') or so_far.agent} on attempt {data.get('attempt')}"


def _attempt_failed(data: dict[str, Any], so_far: TaskSoFar) -> str:
    error = str(data.get("error", ""))
    where = f"attempt {data.get('attempt')} on {data.get('agent_id') or so_far.agent}"
    if error.startswith("timed out"):
        return f"{where} {error}"
    return f"{where} failed: {error}"


def _failed(data: dict[str, Any], so_far: TaskSoFar) -> str:
    retry_at = data.get("retry_at")
    when = f" at {iso(retry_at)}" if isinstance(retry_at, int | float) else ""
    return (f"{_attempt_failed(data, so_far)}; failure {data.get('failures')} of at most "
            f"{so_far.max_attempts or '?'}, retry in {data.get('retry_in_s')}s{when}")


def _dead_lettered(data: dict[str, Any], so_far: TaskSoFar) -> str:
    undone = _UNDONE.get(data.get("reason") or "")
    if undone is not None:
        return (f"dead-lettered: attempt {data.get('attempt')} on {data.get('agent_id')} "
                f"{undone}; {data.get('failures')} failed attempt(s) reached max_attempts")
    why = ("the failure is not retryable" if not data.get("retryable")
           else f"{data.get('failures')} failure(s) reached max_attempts")
    return f"dead-lettered: {_attempt_failed(data, so_far)}; {why}"


_UNDONE = {"accept_timeout": "was not accepted in time",
           "no_progress": "went without the progress its agent promised"}


def _cancelled(data: dict[str, Any], so_far: TaskSoFar) -> str:
    was = data.get("was", so_far.status)
    agent = data.get("agent_id") or so_far.agent
    where = _CANCELLED_WHILE.get(was, f"while {was}").format(a=agent)
    told = "; the agent was told to stop" if was in OPEN else ""
    return f"cancelled {where}: {data.get('reason')}{told}"


def _stale_refused(data: dict[str, Any], so_far: TaskSoFar) -> str:
    attempt, agent = so_far.by_token.get(data.get("token", ""), (None, ""))
    source = (f"attempt {attempt} ({agent})" if attempt is not None
              else "an earlier attempt")
    return (f"refused a late {data.get('action')} from {source}: the task is on attempt "
            f"{data.get('current_attempt')} and {so_far.status}")


_TASK_REASONS: dict[str, Callable[[dict[str, Any], TaskSoFar], str]] = {
    "Submitted": _submitted, "Assigned": _assigned, "Reassigned": _reassigned,
    "Requeued": _requeued, "Accepted": _accepted, "Progressed": _progressed,
    "Completed": _completed, "Failed": _failed, "DeadLettered": _dead_lettered,
    "Cancelled": _cancelled, "StaleResultRefused": _stale_refused,
}


def step_reason(name: str, data: dict[str, Any], so_far: TaskSoFar) -> str | None:
    """The reason of a task step, given the steps before it (None for unknown events)."""
    reason = _TASK_REASONS.get(name)
    return reason(data, so_far) if reason is not None else None


def detector_reading(data: dict[str, Any]) -> dict[str, Any]:
    """The detector's reading: silence, settings in force, the last heartbeat heard."""
    keys = ("silence_s", "suspect_after_s", "dead_after_s", "incarnation",
            "last_heartbeat_seq")
    return {k: data[k] for k in keys if data.get(k) is not None}


_STREAK_OF = {"accept_timeout": "assignment(s) unaccepted",
              "no_progress": "running task(s) without the progress it promised"}

# Reasons of agent steps, from the event's data.
REASONS: dict[str, Callable[[dict[str, Any]], str]] = {
    "Registered": lambda d: f"registered with capacity {d.get('capacity')}",
    "Reregistered": lambda d: f"restarted as incarnation {d.get('incarnation')}",
    "Suspected": lambda d: (f"suspected: silent {d.get('silence_s')}s "
                            f"(suspect_after {d.get('suspect_after_s')}s)"),
    "DeclaredDead": lambda d: (f"declared dead: silent {d.get('silence_s')}s "
                               f"(dead_after {d.get('dead_after_s')}s)"),
    "Recovered": lambda d: "heartbeating again: no longer suspect",
    "DrainStarted": lambda d: "draining: takes no new tasks",
    "Undrained": lambda d: "no longer draining: takes new tasks again",
    "Deregistered": lambda d: f"left ({d.get('reason')})",
    "ServicesChanged": lambda d: f"now offers {len(d.get('services') or [])} service(s)",
    "MarkedUnresponsive": lambda d: (
        f"unresponsive: left {d.get('streak')} "
        f"{_STREAK_OF.get(d.get('reason') or '', 'task(s) undone')} in a row "
        f"({', '.join(d.get('tasks') or [])}); out of placement for {d.get('hold_s')}s, "
        f"until {iso(d['until']) if isinstance(d.get('until'), int | float) else '?'}"),
    "Readmitted": lambda d: ("readmitted: its hold is over; tried again (one more "
                             "task left undone takes it out for twice as long)"),
}
