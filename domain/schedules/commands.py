"""Schedule commands: create (or replace), pause, resume, delete and list, and the task
template every firing submits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from domain.fields import STRICT, Capability, Kind, StorableJson
from domain.schedules.cron import Cron, CronError
from domain.tasks.commands import FlowKey, Labels

# Short enough that `<name>-<slot epoch>` is a task id (64 characters at most).
ScheduleName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,48}$")]
MAX_EVERY_S = 366 * 24 * 3600
MAX_GRACE_S = 24 * 3600.0


class TaskTemplate(BaseModel):
    """What each firing submits, as a submit would give it (domain.tasks.commands)."""

    model_config = STRICT

    kind: Kind
    payload: StorableJson = None
    requires: Annotated[list[Capability], Field(max_length=32)] = []
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = 300.0
    # Flow control's (docs/flow-control.md), as on a submit.
    concurrency_key: FlowKey | None = None
    fairness_key: FlowKey | None = None
    selector: Labels | None = None
    prefer: Labels | None = None


class CreateSchedule(BaseModel):
    """A schedule: `cron` (five fields, UTC) or `every_s` (seconds, slots on multiples
    of it since the epoch), and the task each due slot submits. The same definition
    again is answered without a change; another definition needs `replace`."""

    model_config = STRICT

    name: ScheduleName
    cron: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    every_s: Annotated[int, Field(ge=1, le=MAX_EVERY_S)] | None = None
    task: TaskTemplate
    # A slot that comes while the previous firing's task is not finished: skipped, or
    # submitted beside it.
    overlap: Literal["skip", "allow"] = "skip"
    # Slots that passed while no leader could fire them: the latest of them fired once,
    # or fired only if it is at most grace_s late.
    catch_up: Literal["once", "skip"] = "once"
    grace_s: Annotated[float, Field(gt=0, le=MAX_GRACE_S)] = 60.0
    replace: bool = False

    @field_validator("cron")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Cron.parse(value)
            except CronError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_timing(self) -> CreateSchedule:
        if (self.cron is None) == (self.every_s is None):
            raise ValueError("give cron or every_s, one of them")
        return self


class ScheduleRef(BaseModel):
    """Pause, resume or delete a schedule of the sender's (an operator's: anyone's)."""

    model_config = STRICT

    name: ScheduleName


class ListSchedules(BaseModel):
    """The sender's schedules (an operator's: every one), by name, a page at a time."""

    model_config = STRICT

    after: ScheduleName | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
