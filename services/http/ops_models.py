"""Shapes of the read API's flow-control and schedule responses, for the OpenAPI document
(the rest are in services/http/models.py; the actions reply with the NATS commands'
replies, domain/protocol/replies.py).

A key the handler leaves out rather than sending null is optional here and never null
(`_absent`), as in domain/protocol/replies.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from domain.schedules.commands import TaskTemplate

_CLOSED = ConfigDict(extra="forbid")


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _absent(description: str) -> Any:
    return Field(default=None, description=description, json_schema_extra=_no_default)


class LimitRow(BaseModel):
    """One limit an operator set (projections/limits.py `listing`), with a concurrency
    key's use now. Only the values set are present."""

    model_config = _CLOSED

    scope: Literal["key", "default", "fairness", "submitter"]
    name: str = Field(description="the concurrency or fairness key, `key` for the "
                                  "default, the submitter's identity")
    concurrency: int | SkipJsonSchema[None] = _absent("tasks of the key assigned or "
                                                      "running at once (key, default)")
    rate_per_s: float | SkipJsonSchema[None] = _absent("placements per second (key)")
    burst: int | SkipJsonSchema[None] = _absent("the rate's bucket size (key)")
    weight: float | SkipJsonSchema[None] = _absent("the fairness key's weight")
    max_unfinished: int | SkipJsonSchema[None] = _absent("the submitter's most "
                                                         "unfinished tasks")
    running: int | SkipJsonSchema[None] = _absent("scope key: its tasks assigned or running")
    waiting: int | SkipJsonSchema[None] = _absent("scope key: its tasks waiting for a place")


class Admission(BaseModel):
    model_config = _CLOSED

    max_unfinished_per_submitter: int = Field(description="the setting's bound; 0: none")
    max_unfinished_tasks: int = Field(description="the bound on all; 0: none")
    unfinished_tasks: int


class LimitsOut(BaseModel):
    """`GET /v1/limits`."""

    model_config = _CLOSED

    position: int
    limits: list[LimitRow] = Field(description="by scope, then name")
    admission: Admission


class WhatIfWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_position: int
    to_position: int
    from_: str | None = Field(alias="from", description="ISO time of the window's first "
                                                       "event; null: no event in it")
    to: str | None
    seconds: float


class LimitChange(BaseModel):
    model_config = _CLOSED

    limit: str = Field(description="key:<name> or fairness:<name>")
    values: dict[str, float] = Field(description="as admin.limits.set records them: "
                                                 "concurrency, rate_per_s, burst, weight")


class Figures(BaseModel):
    """One concurrency key's tasks submitted in the window."""

    model_config = _CLOSED

    submitted: int
    placed: int
    finished: int
    p50_wait_s: float | None = Field(description="wait for an agent; null: none placed")
    p99_wait_s: float | None
    longest_wait_s: float | None = Field(description="counting those still waiting")
    throughput_per_s: float | None = Field(description="null: a window of no length")


class KeyFigures(BaseModel):
    model_config = _CLOSED

    actual: Figures
    what_if: Figures


# A placement: task id, agent id, the log position its dispatch round decided at (null:
# with its submit).
Placement = tuple[str, str, int | None]


class Placements(BaseModel):
    model_config = _CLOSED

    actual: list[Placement]
    what_if: list[Placement]
    same: bool


class WhatIfLimits(BaseModel):
    """`GET /v1/what-if/limits` (services/audit/what_if_limits.py)."""

    model_config = _CLOSED

    window: WhatIfWindow
    changes: list[LimitChange]
    keys: dict[str, KeyFigures] = Field(description="by concurrency key; (none) for tasks "
                                                    "without one")
    placements: Placements


class ScheduleOut(BaseModel):
    """A schedule as the read API shows it (projections/schedules.py `to_json`)."""

    model_config = _CLOSED

    name: str
    owner: str
    cron: str | None = Field(description="five fields, UTC; null: every_s")
    every_s: int | None = Field(description="seconds; null: cron")
    task: TaskTemplate = Field(description="what each due slot submits")
    overlap: Literal["skip", "allow"]
    catch_up: Literal["once", "skip"]
    grace_s: float
    status: Literal["active", "paused"]
    next_due: float | None = Field(description="epoch seconds of the next slot; null: paused")
    last_due: float | None = Field(description="the latest slot decided (fired or skipped)")
    last_task_id: str | None = Field(description="the task the latest fired slot submitted")
    fired: int
    skipped: int
    last_skip: str | None = Field(description="why the latest skipped slot was skipped")
    created_at: str = Field(description="ISO time; empty when restored from a carried-"
                                        "forward state")
    position: int = Field(description="log position of its latest event")


class ScheduleOne(ScheduleOut):
    """`GET /v1/schedules/{name}`."""

    index: int = Field(description="the schedule projection's position: the ?index= of a "
                                   "blocking query for the next change")


class ScheduleList(BaseModel):
    """`GET /v1/schedules`."""

    model_config = _CLOSED

    schedules: list[ScheduleOut]
    next_after: str | None = Field(description="the `after` of the next page; null on the "
                                               "last")
    index: int = Field(description="the schedule projection's position")
