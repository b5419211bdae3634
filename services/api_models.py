"""Shapes of the read API's responses, for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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
    agent_id: str
    status: str
    incarnation: int
    capabilities: list[str]
    capacity: int
    labels: dict[str, str]
    services: list[dict[str, Any]]
    registered_at: str
    updated_at: str
    last_heartbeat_at: str | None
    load: float
    running: list[str]
    position: int


class AgentList(BaseModel):
    agents: list[AgentOut]


class EventOut(BaseModel):
    position: int
    subject: str
    aggregate: str
    aggregate_id: str
    type: str
    event_id: str
    causation_id: str | None
    correlation_id: str | None
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


class TaskWhy(BaseModel):
    task_id: str
    status: str
    attempts: int
    position: int
    chain: list[dict[str, Any]]
    stale_results_refused: list[dict[str, Any]]


class AgentWhy(BaseModel):
    agent_id: str
    chain: list[dict[str, Any]]
    tasks_moved: list[dict[str, Any]]
