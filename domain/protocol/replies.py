"""The shapes of the orchestrator's replies, for the protocol's JSON Schemas.

The handlers build their replies as plain dicts; these models describe them (and a unit
test checks that what the handlers build fits). `position` is left out of a reply when the
command wrote nothing, so in the schemas it is an optional integer, never null.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from domain.fields import STRICT, Identifier, StorableJson
from domain.tasks import task
from domain.tasks.commands import Assignment

AgentStatus = Literal["healthy", "suspect", "unresponsive", "dead", "draining", "left"]
# domain.tasks.task.TaskStatus's values, as the Literal the schemas list (an enum would be a
# `$ref` of its own) and the read API's status filter takes its choices from (get_args).
if TYPE_CHECKING:
    TaskStatus: TypeAlias = task.TaskStatus
else:
    TaskStatus = Literal[tuple(status.value for status in task.TaskStatus)]
ErrorCodeName = Literal[
    "invalid_request", "not_found", "conflict", "stale_token", "payload_too_large",
    "unauthorized", "unavailable", "overloaded", "internal",
]
Position = Annotated[int, Field(ge=1)]


def _absent_when_not_written(schema: dict[str, Any]) -> None:
    """The reply leaves `position` out rather than sending null: no default to show."""
    schema.pop("default", None)


class AgentStatusReply(BaseModel):
    """The reply of `agent.deregister` and `agent.drain`."""

    model_config = STRICT

    ok: Literal[True]
    agent_id: Identifier
    status: AgentStatus
    position: Position | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_absent_when_not_written)


class TaskReply(BaseModel):
    """The reply of every task command: the task's status after the command."""

    model_config = STRICT

    ok: Literal[True]
    task_id: Identifier
    status: TaskStatus
    position: Position | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_absent_when_not_written)
    # A submit's: why the task will not be placed soon, though it was accepted (no agent
    # runs its kind yet).
    warning: str | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_absent_when_not_written)


class TaskOutcome(BaseModel):
    """A task's state as its submitter reads it: published on
    `_INBOX.<submitter>.task.<task_id>` when it finishes, and in `task.results` replies.
    `result` is a completed task's; `error` a dead-lettered one's last error, or a
    cancelled one's reason."""

    model_config = STRICT

    task_id: Identifier
    status: TaskStatus
    attempt: int
    result: StorableJson = None
    error: str | None = None
    position: Position


class TaskResultsReply(BaseModel):
    """The reply of `task.results`: the asked tasks' outcomes (finished or not), and the
    ids that name no task of the sender's."""

    model_config = STRICT

    ok: Literal[True]
    tasks: list[TaskOutcome]
    unknown: list[Identifier]


class AssignmentsReply(BaseModel):
    """The reply of `agent.assignments`: the agent's open (assigned or running) tasks."""

    model_config = STRICT

    ok: Literal[True]
    agent_id: Identifier
    assignments: list[Assignment]


class ErrorDetail(BaseModel):
    """One validation problem of an `invalid_request`."""

    model_config = STRICT

    field: str
    problem: str
    type: str


class ErrorBody(BaseModel):
    model_config = STRICT

    code: ErrorCodeName
    message: str
    details: Annotated[list[ErrorDetail], Field(max_length=20)]
    # `overloaded`: seconds to wait before submitting again.
    retry_after_s: float | None = None


class ErrorReply(BaseModel):
    """Every refusal: nothing was written (except a late report's StaleResultRefused)."""

    model_config = STRICT

    ok: Literal[False]
    error: ErrorBody


class Instance(BaseModel):
    """One service instance, with its agent's labels and status."""

    model_config = STRICT

    service: Identifier
    agent_id: Identifier
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    labels: dict[str, str]
    status: AgentStatus
    healthy: bool


class CatalogReply(BaseModel):
    """The reply of `catalog.query`: the matching instances, at a log position."""

    model_config = STRICT

    ok: Literal[True]
    service: Identifier | None
    position: int
    instances: list[Instance]


class CatalogChange(BaseModel):
    """Published on `<prefix>.catalog.changes.<service>` when its instances change."""

    model_config = STRICT

    service: Identifier
    position: int
    event: str
    agent_id: Identifier
    instances: list[Instance]
