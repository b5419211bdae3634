"""JSON Schemas of the agent protocol, generated from the pydantic models."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel

from domain.agents.commands import (
    CatalogQuery,
    ControlMessage,
    DeclareServices,
    DeregisterAgent,
    DrainAgent,
    Heartbeat,
    RegisterAgent,
    RegisterReply,
    RemoveAgent,
    UndrainAgent,
)
from domain.identities.commands import CreateApiToken, CreateIdentity, EnrollAgent, RevokeIdentity
from domain.limits.commands import SetLimit
from domain.protocol.replies import (
    AgentStatusReply,
    AssignmentsReply,
    CatalogChange,
    CatalogReply,
    ErrorReply,
    TaskOutcome,
    TaskReply,
    TaskResultsReply,
)
from domain.schedules.commands import CreateSchedule, ListSchedules, ScheduleRef
from domain.tasks.commands import (
    AgentAssignments,
    Assignment,
    CancelTask,
    CompleteTask,
    FailTask,
    ReportProgress,
    SubmitTask,
    TaskResults,
    TaskToken,
)

PROTOCOL_MODELS: dict[str, type[BaseModel]] = {
    "agent.register.request": RegisterAgent,
    "agent.register.reply": RegisterReply,
    "agent.deregister.request": DeregisterAgent,
    "admin.agent.drain.request": DrainAgent,
    "admin.agent.undrain.request": UndrainAgent,
    "admin.agent.deregister.request": RemoveAgent,
    "admin.enroll.request": EnrollAgent,
    "admin.revoke.request": RevokeIdentity,
    "admin.identity.create.request": CreateIdentity,
    "admin.token.create.request": CreateApiToken,
    "admin.limits.set.request": SetLimit,
    "agent.status.reply": AgentStatusReply,
    "agent.assignments.request": AgentAssignments,
    "agent.assignments.reply": AssignmentsReply,
    "agent.services.request": DeclareServices,
    "catalog.query.request": CatalogQuery,
    "catalog.query.reply": CatalogReply,
    "catalog.change": CatalogChange,
    "task.submit.request": SubmitTask,
    "task.accept.request": TaskToken,
    "task.progress.request": ReportProgress,
    "task.complete.request": CompleteTask,
    "task.fail.request": FailTask,
    "task.cancel.request": CancelTask,
    "task.results.request": TaskResults,
    "task.results.reply": TaskResultsReply,
    "schedule.create.request": CreateSchedule,
    "schedule.pause.request": ScheduleRef,
    "schedule.resume.request": ScheduleRef,
    "schedule.delete.request": ScheduleRef,
    "schedule.list.request": ListSchedules,
    "task.outcome": TaskOutcome,
    "task.reply": TaskReply,
    "assignment": Assignment,
    "heartbeat": Heartbeat,
    "control": ControlMessage,
    "error.reply": ErrorReply,
}


def schema_documents() -> dict[str, bytes]:
    """File name -> schema document, as written to docs/schemas."""
    return {
        f"{name}.json": orjson.dumps(
            model.model_json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        ) + b"\n"
        for name, model in PROTOCOL_MODELS.items()
    }


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in schema_documents().items():
        path = out / name
        path.write_bytes(document)
        written.append(path)
    return written
