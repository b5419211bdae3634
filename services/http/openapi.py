"""The OpenAPI 3.1 document of the read API, with schemas from the response models."""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from domain.protocol.replies import AgentStatus, AgentStatusReply, TaskReply, TaskStatus
from domain.tasks.commands import CancelTask
from services.http import models as m
from services.http import ops_models as o
from services.http.actions import MAX_ACTION_BYTES
from services.http.limits import LIMIT_STATUSES
from services.http.log_routes import MAX_LIMIT_CHANGES

_BLOCKING = [
    {"name": "index", "in": "query", "required": False,
     "description": "blocking query: return once the log position passes this index",
     "schema": {"type": "integer", "minimum": 0}},
    {"name": "wait", "in": "query", "required": False,
     "description": "longest wait of a blocking query, in seconds (default 60, max 600)",
     "schema": {"type": "number", "minimum": 0, "maximum": 600}},
]
_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
_AGENT_ID = {"name": "agent_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": _ID_PATTERN}}
# One `set` of /v1/what-if/limits that reads (services/audit/what_if_limits.parse_change).
_RATE = r"rate=[1-9][0-9]{0,5}/(s|min|h)(,burst=[1-9][0-9]{0,5})?"
_SET_PATTERN = (rf"^((key:)?[A-Za-z0-9_-]{{1,64}}:(concurrency=[0-9]{{1,6}}(,{_RATE})?|{_RATE})"
                r"|fairness:[A-Za-z0-9_-]{1,64}:weight=[1-9][0-9]{0,2})$")
_CHALLENGE = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
_INDEX_HEADER = {"X-Orch-Index": {"description": "log position the projections have applied",
                                  "schema": {"type": "integer"}}}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "headers": _INDEX_HEADER,
            "content": {"application/json": {"schema": _ref(model)}}}


def _get(summary: str, ok: type[BaseModel], params: list[dict[str, Any]],
         errors: tuple[int, ...] = ()) -> dict[str, Any]:
    responses = {"200": _json(ok, "success")}
    for status in errors:
        responses[str(status)] = _json(m.ErrorOut, "coded error")
    if any(p is _BLOCKING[0] for p in params):  # the schedules' waits are not capped
        responses["429"] = _json(m.ErrorOut, "too many blocking queries waiting (of this "
                                             "token, or in all); retry after Retry-After")
    return {"get": {"summary": summary, "parameters": params,
                    "responses": _with_limits(responses)}}


def _action(summary: str, ok: type[BaseModel], path_param: dict[str, Any],
            body: dict[str, Any]) -> dict[str, Any]:
    """A dashboard action (services/http/actions.py): the NATS command's handler and reply;
    admin scope with auth on (a read token's 403 says so)."""
    responses = {"200": _json(ok, "the command's reply; without `position` when it wrote "
                                  "nothing (drained, undrained or cancelled already)")}
    for status, why in (
            (400, "bad id, body or Content-Type (not application/json): nothing written"),
            (403, "a read token may not act; or the command refused this caller"),
            (404, "unknown agent or task"),
            (409, "conflict: a dead or departed agent; a completed or dead-lettered task"),
            (413, f"body over {MAX_ACTION_BYTES} bytes"),
            (503, "actions not served here, or the log unavailable")):
        responses[str(status)] = _json(m.ErrorOut, why)
    request_body = {"required": True, "description": (
        f"a JSON object of at most {MAX_ACTION_BYTES} bytes; an empty body is taken as {{}}, "
        "but Content-Type: application/json is required whatever the body (else a 400)"),
        "content": {"application/json": {"schema": body}}}
    return {"post": {"summary": summary, "parameters": [path_param],
                     "requestBody": request_body, "responses": _with_limits(responses)}}


def _with_limits(responses: dict[str, Any]) -> dict[str, Any]:
    """Every operation may refuse a malformed or over-long request (services/http_limits),
    and, with auth on, a request without a token (401) or of a scope that does not reach
    it (403; services/auth/http)."""
    for status in LIMIT_STATUSES:
        responses.setdefault(str(status), _json(m.ErrorOut, "malformed or over-long request"))
    responses.setdefault("401", {**_json(m.ErrorOut, "no valid bearer token (auth on)"),
                                 "headers": {**_INDEX_HEADER, **_CHALLENGE}})
    responses.setdefault("403", _json(m.ErrorOut, "the token's scope does not reach this"))
    return responses


def _open(item: dict[str, Any]) -> dict[str, Any]:
    """A route that needs no token, even with auth on."""
    item["get"]["security"] = []
    for status in ("401", "403"):
        item["get"]["responses"].pop(status, None)
    return item


@cache
def openapi_document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        m.ErrorOut, m.Ok, m.Ready, m.AgentOut, m.AgentList, m.EventOut, m.History,
        m.EventList, m.Stats, m.TaskOut, m.TaskList, m.TaskHistory, m.ServiceList,
        m.InstanceOut, m.ServiceInstances, m.TaskWhy, m.AgentWhy, m.WhatIf,
        o.LimitsOut, o.WhatIfLimits, o.ScheduleList, o.ScheduleOne,
        AgentStatusReply, TaskReply,
    ]
    _, schemas = models_json_schema(
        [(model, "serialization") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    agent_filters = [
        {"name": "status", "in": "query", "required": False,
         "description": "other values are refused (400)",
         "schema": {"type": "string", "enum": list(get_args(AgentStatus))}},
        {"name": "capability", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "label", "in": "query", "required": False, "description": "key=value",
         "schema": {"type": "string"}},
        {"name": "after", "in": "query", "required": False,
         "description": "next_after of the previous page: agents whose id sorts after it",
         "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": False,
         "description": "page size: 500 without it, at most 10000; next_after is set "
                        "while more agents match",
         "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 500}},
    ]
    events_params = [
        {"name": "after", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
        {"name": "subject", "in": "query", "required": False,
         "description": "subject filter such as agent.a1.> or agent.*.DeclaredDead",
         "schema": {"type": "string"}},
    ]
    task_filters = [
        {"name": "status", "in": "query", "required": False,
         "description": "other values are refused (400)",
         "schema": {"type": "string", "enum": list(get_args(TaskStatus))}},
        {"name": "agent", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "kind", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "after", "in": "query", "required": False,
         "description": "next_after of the previous page",
         "schema": {"type": "integer", "minimum": 0}},
        {"name": "order", "in": "query", "required": False,
         "description": "oldest (submission order, the default) or newest first",
         "schema": {"type": "string", "enum": ["oldest", "newest"]}},
        {"name": "before", "in": "query", "required": False,
         "description": "with order=newest: next_after of the previous page (tasks "
                        "submitted before it)",
         "schema": {"type": "integer", "minimum": 1}},
        {"name": "limit", "in": "query", "required": False,
         "description": "page size: 100 without it, at most 1000",
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
    ]
    task_id = {"name": "task_id", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}
    service_params = [
        {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}},
        {"name": "healthy", "in": "query", "required": False,
         "description": "only instances whose agent is healthy or draining",
         "schema": {"type": "boolean"}},
        {"name": "tag", "in": "query", "required": False, "description": "repeatable",
         "schema": {"type": "string"}},
        {"name": "label", "in": "query", "required": False, "description": "key=value",
         "schema": {"type": "string"}},
        {"name": "at", "in": "query", "required": False,
         "description": "the catalog as it was at this log position",
         "schema": {"type": "integer", "minimum": 0}},
        {"name": "after", "in": "query", "required": False,
         "description": "next_after of the previous page: instances of agents whose id "
                        "sorts after it",
         "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": False,
         "description": "page size in agents (an agent's instances are never split): 500 "
                        "without it, at most 10000; next_after is set while more match",
         "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 500}},
    ]
    what_if_params = [
        {"name": "dead_after", "in": "query", "required": False,
         "description": "comma-separated seconds to replay under, at most 10, each in "
                        "(0, 3600]; without it, multiples 0.25 to 3 of the dead_after in force",
         "style": "form", "explode": False,
         "schema": {"type": "array", "minItems": 1, "maxItems": 10,
                    "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600}}},
        {"name": "suspect_after", "in": "query", "required": False,
         "description": "reported with the points; default the one in force",
         "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600}},
    ]
    what_if_limits_params = [
        {"name": "from", "in": "query", "required": False,
         "description": "the window's first log position (default 1)",
         "schema": {"type": "integer", "minimum": 1}},
        {"name": "to", "in": "query", "required": False,
         "description": "the window's last log position; 0 or none: the log's end",
         "schema": {"type": "integer", "minimum": 0}},
        {"name": "set", "in": "query", "required": False, "style": "form", "explode": True,
         "description": "repeatable: a limit in force in the replay, [key:]KEY:"
                        "concurrency=N,rate=R/s|min|h,burst=B or fairness:F:weight=W "
                        "(burst only with a rate); one that does not read is a 400",
         "schema": {"type": "array", "maxItems": MAX_LIMIT_CHANGES, "items": {
             "type": "string", "pattern": _SET_PATTERN}}},
    ]
    schedule_blocking = [
        {"name": "index", "in": "query", "required": False,
         "description": "blocking query: return once a schedule event past this index is "
                        "applied (the `index` of the previous answer)",
         "schema": {"type": "integer", "minimum": 0}},
        {**_BLOCKING[1]},
    ]
    schedule_params = [
        {"name": "owner", "in": "query", "required": False,
         "description": "only this identity's schedules",
         "schema": {"type": "string", "pattern": _ID_PATTERN}},
        {"name": "after", "in": "query", "required": False,
         "description": "next_after of the previous page: schedules whose name sorts after it",
         "schema": {"type": "string", "pattern": _ID_PATTERN}},
        {"name": "limit", "in": "query", "required": False,
         "description": "page size: 100 without it, at most 1000",
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
    ]
    no_body = {"type": "object", "additionalProperties": False, "maxProperties": 0}
    reason = CancelTask.model_json_schema()["properties"]["reason"]  # the command's own
    cancel_body = {"type": "object", "additionalProperties": False, "properties": {
        "reason": {**reason, "description": "recorded with the cancel"}}}
    metrics = {"get": {"summary": "Prometheus metrics", "responses": _with_limits({"200": {
        "description": "text exposition format", "headers": _INDEX_HEADER,
        "content": {"text/plain": {"schema": {"type": "string"}}}}})}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Orchestrator read API", "version": "0.1.0"},
        "paths": {
            "/healthz": _open(_get("the process is up", m.Ok, [])),
            "/readyz": _open(_get("connected and projections rebuilt", m.Ready, [], (503,))),
            "/v1/agents": _get("agents, filtered", m.AgentList, agent_filters + _BLOCKING,
                               (400,)),
            "/v1/agents/{agent_id}": _get("one agent", m.AgentOut, [_AGENT_ID, *_BLOCKING],
                                          (400, 404)),
            "/v1/agents/{agent_id}/history": _get("an agent's events", m.History,
                                                  [_AGENT_ID], (400, 404, 503)),
            "/v1/services": _get("services with instance counts", m.ServiceList, _BLOCKING,
                                 (400,)),
            "/v1/services/{name}": _get("a service's instances", m.ServiceInstances,
                                        service_params + _BLOCKING, (400, 404, 503)),
            "/v1/tasks": _get("tasks, filtered and paginated", m.TaskList,
                              task_filters + _BLOCKING, (400,)),
            "/v1/tasks/{task_id}": _get("one task", m.TaskOut, [task_id, *_BLOCKING],
                                        (400, 404)),
            "/v1/tasks/{task_id}/history": _get(
                "a task's events, with the agent events that moved it", m.TaskHistory,
                [task_id], (400, 404, 503)),
            "/v1/tasks/{task_id}/why": _get(
                "the causal chain: each step with its reason, what caused each move, the "
                "detector reading and the placement; for a waiting task, why it waits",
                m.TaskWhy, [task_id], (400, 404, 503)),
            "/v1/agents/{agent_id}/why": _get(
                "an agent's health decisions with the detector readings, and the tasks "
                "moved off it", m.AgentWhy, [_AGENT_ID], (400, 404, 503)),
            "/v1/events": _get("the log, a page at a time", m.EventList, events_params,
                               (400, 503)),
            "/v1/stats": _get("counts and positions", m.Stats, [], (503,)),
            "/v1/what-if": _get(
                "the recorded heartbeats replayed under other dead_after settings: the "
                "false deaths each would avoid or add (admin scope)", m.WhatIf,
                what_if_params, (400, 503)),
            "/v1/what-if/limits": _get(
                "a recorded window replayed under other limits: per concurrency key the "
                "waits and throughput beside what happened, and the placements (admin "
                "scope)", o.WhatIfLimits, what_if_limits_params, (400, 503)),
            "/v1/limits": _get("every limit set, with a concurrency key's use now; the "
                               "admission bounds", o.LimitsOut, []),
            "/v1/schedules": _get("schedules by name, a page at a time", o.ScheduleList,
                                  schedule_params + schedule_blocking, (400, 404)),
            "/v1/schedules/{name}": _get(
                "one schedule", o.ScheduleOne,
                [{"name": "name", "in": "path", "required": True,
                  "schema": {"type": "string", "pattern": _ID_PATTERN}}, *schedule_blocking],
                (400, 404)),
            "/v1/agents/{agent_id}/drain": _action(
                "drain an agent: no new work (admin.agent.drain; admin scope)",
                AgentStatusReply, _AGENT_ID, no_body),
            "/v1/agents/{agent_id}/undrain": _action(
                "end an agent's drain (admin.agent.undrain; admin scope)", AgentStatusReply,
                _AGENT_ID, no_body),
            "/v1/tasks/{task_id}/cancel": _action(
                "cancel a task (task.cancel; admin scope)", TaskReply, task_id, cancel_body),
            "/metrics": metrics,
            "/openapi.json": {"get": {"summary": "this document", "responses": _with_limits({
                "200": {"description": "OpenAPI 3.1", "headers": _INDEX_HEADER,
                        "content": {"application/json": {"schema": {"type": "object"}}}}})}},
        },
        "components": {"schemas": schemas["$defs"], "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "orchestrator token create --scope read|admin; "
                                      "/healthz and /readyz need none; /v1/events, "
                                      "/v1/what-if, /v1/what-if/limits and every "
                                      "POST (the dashboard's actions) need admin"}}},
        "security": [{"bearer": []}],
    }
