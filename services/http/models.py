"""Shapes of the read API's responses, for the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.protocol.replies import AgentStatus


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = []


class ErrorOut(BaseModel):
    ok: bool
    error: ErrorBody


class Ok(BaseModel):
    ok: bool


class Ready(BaseModel):
    ok: bool
    checks: dict[str, bool]


class AgentOut(BaseModel):
    """An agent as the read API, the dashboard and the CLI show it: the one shape of
    `AgentView.to_json()` (projections/fleet/agents.py), which tests/unit/test_agent_shape.py
    holds to this model, key for key."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str
    status: AgentStatus
    incarnation: int
    capabilities: list[str]
    kinds: list[str] = Field(description="the task kinds it runs; empty: any")
    capacity: int
    labels: dict[str, str]
    services: list[dict[str, Any]]
    registered_at: str
    updated_at: str
    last_heartbeat_at: str | None
    load: float
    running: list[str]
    position: int
    unresponsive_until: str | None = Field(
        description="out of placement until then for leaving its work undone; null: not")
    progress_every_s: float | None = Field(
        description="its promise to report progress on a running task at least this often "
                    "(seconds); null: none")


class AgentList(BaseModel):
    agents: list[AgentOut]
    next_after: str | None  # the `after` of the next page; null on the last


class EventOut(BaseModel):
    position: int
    subject: str
    aggregate: str
    aggregate_id: str
    type: str
    event_id: str
    causation_id: str | None
    correlation_id: str | None
    identity: str | None = Field(
        description="who sent the command that caused it; orchestrator for its own decisions")
    recorded_at: str
    data: dict[str, Any]


class History(BaseModel):
    agent_id: str
    events: list[EventOut]


class EventList(BaseModel):
    events: list[EventOut]
    next_after: int


class Counts(BaseModel):
    total: int
    by_status: dict[str, int]


class Stats(BaseModel):
    position: int
    log_last_position: int
    started_from: int = Field(
        description="the snapshot position the projections were restored from at start-up; "
                    "0 when they were rebuilt from the log's beginning")
    ready: bool
    agents: Counts
    tasks: Counts
    leader: bool


class TaskOut(BaseModel):
    task_id: str
    kind: str
    status: str
    payload: Any
    requires: list[str]
    priority: int
    max_attempts: int
    timeout_s: float
    agent_id: str | None
    attempt: int
    failures: int
    retry_at: float | None
    progress: float
    result: Any
    error: str | None
    submitted_at: str
    updated_at: str
    position: int


class TaskList(BaseModel):
    tasks: list[TaskOut]
    next_after: int | None


class TaskHistory(BaseModel):
    task_id: str
    events: list[EventOut]


class ServiceSummary(BaseModel):
    instances: int
    healthy: int
    tags: list[str]


class ServiceList(BaseModel):
    services: dict[str, ServiceSummary]


class InstanceOut(BaseModel):
    service: str
    agent_id: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    labels: dict[str, str]
    status: str
    healthy: bool


class ServiceInstances(BaseModel):
    service: str
    position: int
    instances: list[InstanceOut]
    next_after: str | None  # the `after` of the next page; null on the last


class Step(BaseModel):
    """One event of a causal chain, with a short human reason."""

    position: int
    at: str
    type: str
    aggregate_id: str
    event_id: str
    causation_id: str | None
    identity: str | None = Field(
        default=None, description="who sent the command behind it; orchestrator for its own")
    data: dict[str, Any]
    reason: str | None = None
    cause: dict[str, Any] | None = Field(
        default=None, description="for a move: the agent event or timeout that caused it")
    placement: dict[str, Any] | None = Field(
        default=None, description="for an assignment or a move: why this agent")
    detector: dict[str, Any] | None = Field(
        default=None, description="for a health decision: the failure detector's reading")


class WaitReason(BaseModel):
    code: Literal["no_agents", "no_capability", "kind_not_run", "not_healthy", "draining",
                  "at_capacity", "placeable"]
    message: str
    count: int = Field(description="agents this reason rules out; for placeable, the agents "
                                   "that could take the task now")


class Waiting(BaseModel):
    """Why a pending or retry_wait task waits, from the projections when asked."""

    summary: str
    reasons: list[WaitReason]
    retry_at: str | None = Field(description="when a retry falls due (retry_wait only)")
    retry_in_s: float | None = Field(description="seconds until then; 0 once due")


class TaskWhy(BaseModel):
    task_id: str
    status: str
    kind: str
    requires: list[str]
    attempts: int
    retry_at: float | None = Field(description="epoch seconds a retry falls due, in retry_wait")
    position: int
    chain: list[Step]
    stale_results_refused: list[Step]
    waiting: Waiting | None = Field(
        default=None, description="present while the task is pending or in retry_wait")


class MovedTask(Step):
    task_id: str
    to_agent: str | None = Field(description="null when the task went back to the queue")


class AgentWhy(BaseModel):
    agent_id: str
    chain: list[Step]
    tasks_moved: list[MovedTask]


class Detector(BaseModel):
    suspect_after: float
    dead_after: float


class WhatIfPoint(BaseModel):
    dead_after: float
    recorded_deaths: int
    false_deaths_recorded: int = Field(
        description="recorded deaths of agents that came back: the false ones")
    avoided: int = Field(description="recorded false deaths this dead_after would not declare")
    added: int = Field(description="deaths this dead_after would declare that were not recorded")
    later: int
    earlier: int
    same: int = Field(description="recorded deaths this dead_after declares within 0.25 s")
    pending: int = Field(description="agents still silent at the window's end whose replayed "
                                     "deadline lies after it")
    false_deaths: int = Field(description="deaths this dead_after declares of agents that "
                                          "came back")
    real_deaths: int = Field(description="deaths this dead_after declares of agents that "
                                         "never came back")
    suspicions: int
    false_suspicions: int
    move_mean_s: float | None = Field(description="mean time from last heartbeat to work "
                                                  "moved, under this dead_after")
    move_p99_s: float | None
    below_resolution: bool = Field(description="the setting is finer than the record can "
                                               "tell apart (silences shorter than two "
                                               "heartbeat intervals are not recorded)")


class WhatIf(BaseModel):
    settings: Detector | None = Field(description="the detector in force on this orchestrator")
    suspect_after: float
    recorded_dead_after: list[float] = Field(
        description="the dead_after each recorded death was declared under")
    window: dict[str, float]
    unknown_agents: int = Field(description="agents with stretches no watch of the liveness "
                                            "record covers (never read as silence)")
    points: list[WhatIfPoint]
