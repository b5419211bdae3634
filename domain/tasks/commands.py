"""Task commands sent by clients and agents, and the assignment message agents receive."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator

from domain.fields import (
    STRICT,
    Capability,
    Identifier,
    Kind,
    LabelKey,
    LabelValue,
    StorableJson,
)
from domain.limits.limit import KEY_PATTERN

# How far ahead a task may be scheduled.
MAX_DELAY_S = 366 * 24 * 3600
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Text = Annotated[str, StringConstraints(max_length=4096)]
FlowKey = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=16)]
# The fields of a submission that flow control reads (domain/limits/limit.py); left out of its
# fingerprint when not given, so that a submission from before they existed, retried,
# is still the same one.
FLOW_FIELDS = ("concurrency_key", "fairness_key", "selector", "prefer")


class SubmitTask(BaseModel):
    """Submit a task; `task_id`, when given, makes the submission idempotent."""

    model_config = STRICT

    task_id: Identifier | None = None
    kind: Kind
    payload: StorableJson = None
    requires: Annotated[list[Capability], Field(max_length=32)] = []
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = 300.0
    # Run later: after `delay_s` seconds, or not before `not_before` (epoch seconds,
    # UTC); one or the other. A time already past runs at once.
    delay_s: Annotated[float, Field(gt=0, le=MAX_DELAY_S)] | None = None
    not_before: Annotated[float, Field(gt=0)] | None = None
    # At most the key's limit of such tasks run at once, placed at most at its rate.
    concurrency_key: FlowKey | None = None
    # Served in turn with the other fairness keys of its priority (default: its
    # submitter).
    fairness_key: FlowKey | None = None
    # Labels the agent must have (exact values), and labels that rank agents having
    # them first without excluding the others.
    selector: Labels | None = None
    prefer: Labels | None = None

    @model_validator(mode="after")
    def _one_delay(self) -> SubmitTask:
        if self.delay_s is not None and self.not_before is not None:
            raise ValueError("give delay_s or not_before, not both")
        return self


class TaskToken(BaseModel):
    """What an agent holding an assignment says about it: accept."""

    model_config = STRICT

    task_id: Identifier
    token: Token


class ReportProgress(TaskToken):
    progress: Annotated[float, Field(ge=0.0, le=1.0)]


class CompleteTask(TaskToken):
    result: StorableJson = None


class FailTask(TaskToken):
    error: Text
    retryable: bool = True


class CancelTask(BaseModel):
    model_config = STRICT

    task_id: Identifier
    reason: Text = "cancelled by request"


# Tasks a `task.results` request may name: each is read from the log when the board no
# longer holds it, so the bound keeps a request's cost bounded.
MAX_RESULTS_ASKED = 100


class TaskResults(BaseModel):
    """A submitter asks how its tasks ended (after a reconnect, or for a task it did not
    submit in this process); another's task, or an unknown one, is only said unknown."""

    model_config = STRICT

    task_ids: Annotated[list[Identifier], Field(min_length=1, max_length=MAX_RESULTS_ASKED)]


class AgentAssignments(BaseModel):
    model_config = STRICT

    agent_id: Identifier


class Assignment(BaseModel):
    """Published on `<prefix>.agent.<agent_id>.tasks`."""

    model_config = STRICT

    task_id: Identifier
    kind: Kind
    payload: Any = None
    requires: list[str]
    attempt: int
    token: Token
    timeout_s: float
