"""The read API: agents, history, events, stats, metrics and the OpenAPI document."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, get_args

import orjson
from aiohttp import web
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from domain.errors import ErrorCode
from domain.fields import ID_PATTERN
from domain.replies import AgentStatus, TaskStatus
from infra.log.port import EventLog
from infra.log.recorded import StoreUnavailable
from infra.names import AGENT, TASK, Names
from projections.access import Access
from projections.agents import AgentHealth
from projections.catalog import Catalog
from projections.runner import ProjectionRunner
from projections.tasks import TaskBoard
from services.audit.explain import Explainer
from services.audit.waiting import waiting
from services.audit.what_if import heartbeat_interval_of, recording, sweep
from services.auth.http import bearer_auth
from services.commands.catalog import catalog_at
from services.http.blocking import RETRY_AFTER_S, BlockingQueries, TooManyBlocking, wait_past
from services.http.limits import enforce_limits
from services.http.openapi import openapi_document
from services.http.redact import event_json, redacted
from services.http.ui import add_ui_routes
from services.metrics import Metrics

INDEX_HEADER = "X-Orch-Index"
MAX_WAIT_S = 600.0
DEFAULT_WAIT_S = 60.0
MAX_EVENTS_LIMIT = 10_000
# List routes answer a page at a time: no request serializes the whole fleet.
DEFAULT_AGENTS_LIMIT = 500
MAX_AGENTS_LIMIT = 10_000
MAX_WHAT_IF_POINTS = 10
MAX_DETECTOR_S = 3600.0
# Without ?dead_after=: these multiples of the dead_after in force.
WHAT_IF_AROUND = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
_SUBJECT_TOKEN = re.compile(r"^([A-Za-z0-9_-]+|\*|>)$")
_ID = re.compile(ID_PATTERN)
AGENT_STATUSES: tuple[str, ...] = get_args(AgentStatus)
TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadModel:
    """What the read API serves from."""

    names: Names
    store: EventLog
    # The streams beside the log that explanations read (heartbeats, liveness).
    js: JetStreamContext
    runner: ProjectionRunner
    agents: AgentHealth
    tasks: TaskBoard
    catalog: Catalog
    metrics: Metrics
    is_connected: Callable[[], bool]
    is_leader: Callable[[], bool]
    # Who holds which API token; None when auth is off (every route open).
    access: Access | None = None
    # The failure detector in force: (suspect_after, dead_after) in seconds.
    detector: tuple[float, float] | None = None


READ_MODEL = web.AppKey("read_model", ReadModel)
BLOCKING = web.AppKey("blocking", BlockingQueries)


class BadQuery(Exception):
    pass


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: ErrorCode, message: str) -> web.Response:
    return _json({"ok": False, "error": {"code": str(code), "message": message}}, status)


def _float(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a number") from None
    if not low <= value <= high:
        raise BadQuery(f"{name} must be between {low} and {high}")
    return value


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    return int(_float(request, name, default, low, high))


async def _block(request: web.Request) -> None:
    """A blocking query: wait until the projection passes ?index=, for at most ?wait=."""
    if "index" not in request.query:
        return
    index = _int(request, "index", 0, 0, 2**63)
    wait = _float(request, "wait", DEFAULT_WAIT_S, 0, MAX_WAIT_S)
    model = request.app[READ_MODEL]
    with request.app[BLOCKING].slot(request, by_token=model.access is not None):
        await wait_past(request, model.runner.position, index, wait)


@web.middleware
async def _envelope(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Coded JSON errors for every failure, and X-Orch-Index on every response."""
    model = request.app[READ_MODEL]
    try:
        response = await handler(request)
    except BadQuery as exc:
        response = error_response(400, ErrorCode.INVALID_REQUEST, str(exc))
    except TooManyBlocking as exc:
        model.metrics.http_blocking_refused.labels(exc.cap).inc()
        response = error_response(429, ErrorCode.UNAVAILABLE, str(exc))
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    except StoreUnavailable:
        response = error_response(503, ErrorCode.UNAVAILABLE, "event log unavailable")
    except web.HTTPException as exc:
        code = ErrorCode.NOT_FOUND if exc.status == 404 else ErrorCode.INVALID_REQUEST
        response = error_response(exc.status, code, exc.reason)
    except Exception:
        # Defence in depth: a bug in a handler still answers in the API's coded JSON.
        log.exception("read API request failed method=%s path=%s", request.method,
                      request.path)
        response = error_response(500, ErrorCode.INTERNAL,
                                  "internal error; the orchestrator's log has the details")
    response.headers[INDEX_HEADER] = str(model.runner.position.value)
    return response


async def healthz(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    model = request.app[READ_MODEL]
    checks = {"nats": model.is_connected(), "projections": model.runner.ready}
    ready = all(checks.values())
    return _json({"ok": ready, "checks": checks}, 200 if ready else 503)


def _label_filter(request: web.Request) -> dict[str, str]:
    labels = {}
    for raw in request.query.getall("label", []):
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise BadQuery("label must be key=value")
        labels[key] = value
    return labels


def _one_of(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(allowed)}")
    return raw


async def list_agents(request: web.Request) -> web.Response:
    status = _one_of(request, "status", AGENT_STATUSES)
    await _block(request)
    # Paging by id, like /v1/tasks by position: `after` an id, at most `limit`
    # (DEFAULT_AGENTS_LIMIT without one); `next_after` is null on the last page.
    limit = _int(request, "limit", DEFAULT_AGENTS_LIMIT, 1, MAX_AGENTS_LIMIT)
    agents = request.app[READ_MODEL].agents.query(
        status=status,
        capability=request.query.get("capability"),
        labels=_label_filter(request),
        after=request.query.get("after"),
        limit=limit + 1,  # one more tells whether another page follows
    )
    cursor = None
    if len(agents) > limit:
        agents = agents[:limit]
        cursor = agents[-1].agent_id
    return _json({"agents": [a.to_json() for a in agents], "next_after": cursor})


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _ID.match(value):
        raise BadQuery(f"{name} must match {ID_PATTERN}")
    return value


def _agent_id(request: web.Request) -> str:
    return _path_id(request, "agent_id")


async def get_agent(request: web.Request) -> web.Response:
    agent_id = _agent_id(request)
    await _block(request)
    view = request.app[READ_MODEL].agents.get(agent_id)
    if view is None:
        return error_response(404, ErrorCode.NOT_FOUND, f"agent {agent_id} is not registered")
    return _json(view.to_json())


async def agent_history(request: web.Request) -> web.Response:
    agent_id = _agent_id(request)
    events = await request.app[READ_MODEL].store.history(AGENT, agent_id)
    if not events:
        return error_response(404, ErrorCode.NOT_FOUND, f"agent {agent_id} has no history")
    return _json({"agent_id": agent_id, "events": [event_json(e) for e in events]})


async def list_tasks(request: web.Request) -> web.Response:
    status = _one_of(request, "status", TASK_STATUSES)
    await _block(request)
    limit = _int(request, "limit", 100, 1, 1000)
    after = _int(request, "after", 0, 0, 2**63)
    tasks = request.app[READ_MODEL].tasks.query(
        status=status, agent_id=request.query.get("agent"),
        kind=request.query.get("kind"), after=after, limit=limit,
    )
    cursor = tasks[-1].submitted_position if len(tasks) == limit else None
    return _json({"tasks": [t.to_json() for t in tasks], "next_after": cursor})


async def get_task(request: web.Request) -> web.Response:
    task_id = _path_id(request, "task_id")
    await _block(request)
    view = request.app[READ_MODEL].tasks.get(task_id)
    if view is None:
        return error_response(
            404, ErrorCode.NOT_FOUND, f"task {task_id} is not on the board: unknown, or "
            f"finished longer ago than the retention or past the limit of finished tasks held "
            f"(its history stays in the log)")
    return _json(view.to_json())


async def task_history(request: web.Request) -> web.Response:
    task_id = _path_id(request, "task_id")
    model = request.app[READ_MODEL]
    events = await model.store.history(TASK, task_id)
    if not events:
        return error_response(404, ErrorCode.NOT_FOUND, f"task {task_id} does not exist")
    # The agent events that caused a move (a death, a leave) belong to the story too.
    causes = {e.causation_id for e in events if e.name in ("Reassigned", "Requeued")}
    related = await _agent_events_by_id(model, events, causes)
    story = sorted(events + related, key=lambda e: e.position)
    return _json({"task_id": task_id, "events": [event_json(e) for e in story]})


async def _agent_events_by_id(model: ReadModel, events: list[Any],
                              wanted: set[str | None]) -> list[Any]:
    agents = {e.data().get("from_agent") for e in events if e.name in ("Reassigned", "Requeued")}
    found = []
    for agent_id in sorted(a for a in agents if a):
        for event in await model.store.history(AGENT, agent_id):
            if event.event_id in wanted:
                found.append(event)
    return found


async def list_services(request: web.Request) -> web.Response:
    await _block(request)
    return _json({"services": request.app[READ_MODEL].catalog.services()})


def _bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadQuery(f"{name} must be true or false")
    return raw in ("true", "1")


async def get_service(request: web.Request) -> web.Response:
    """Instances of a service; `?at=N` answers from the log as it was at position N."""
    name = _path_id(request, "name")
    # Paged by agent id like /v1/agents: a service every agent offers is the fleet.
    limit = _int(request, "limit", DEFAULT_AGENTS_LIMIT, 1, MAX_AGENTS_LIMIT)
    labels, healthy = _label_filter(request), _bool(request, "healthy")
    model = request.app[READ_MODEL]
    catalog = model.catalog
    if "at" in request.query:
        catalog = await catalog_at(model.store, model.names, _int(request, "at", 0, 0, 2**63))
    else:
        await _block(request)
    if name not in catalog.by_service:
        return error_response(404, ErrorCode.NOT_FOUND, f"no service {name}")
    instances, cursor = catalog.instances_page(name, request.query.get("after"), limit,
                                               request.query.getall("tag", []), labels,
                                               healthy)
    return _json({"service": name, "position": catalog.position if "at" in request.query
                  else model.runner.position.value, "instances": instances,
                  "next_after": cursor})


async def task_why(request: web.Request) -> web.Response:
    task_id = _path_id(request, "task_id")
    model = request.app[READ_MODEL]
    found = await Explainer(model.store, model.js, model.names).task(task_id)
    if found is None:
        return error_response(404, ErrorCode.NOT_FOUND, f"task {task_id} does not exist")
    found["waiting"] = waiting(found, model.agents, model.tasks, time.time())
    return _json(redacted(found))


async def agent_why(request: web.Request) -> web.Response:
    agent_id = _agent_id(request)
    model = request.app[READ_MODEL]
    found = await Explainer(model.store, model.js, model.names).agent(agent_id)
    if found is None:
        return error_response(404, ErrorCode.NOT_FOUND, f"agent {agent_id} has no history")
    return _json(redacted(found))


def _subject_filter(names: Names, raw: str | None) -> str | None:
    """`agent.a1.>` or a full `<prefix>.evt.agent.a1.>`; tokens, `*` and `>` only."""
    if not raw:
        return None
    full_prefix = names.events_wildcard[:-1]  # "<prefix>.evt."
    relative = raw[len(full_prefix):] if raw.startswith(full_prefix) else raw
    tokens = relative.split(".")
    if not all(_SUBJECT_TOKEN.match(t) for t in tokens) or ">" in tokens[:-1]:
        raise BadQuery("subject must be dot-separated tokens, '*' or a final '>'")
    return full_prefix + relative


async def list_events(request: web.Request) -> web.Response:
    model = request.app[READ_MODEL]
    after = _int(request, "after", 0, 0, 2**63)
    limit = _int(request, "limit", 100, 1, MAX_EVENTS_LIMIT)
    subject = _subject_filter(model.names, request.query.get("subject"))
    page = await model.store.read_page(after, limit, subject)
    return _json({"events": [event_json(e) for e in page.events],
                  "next_after": page.last})


async def stats(request: web.Request) -> web.Response:
    model = request.app[READ_MODEL]
    return _json({
        "position": model.runner.position.value,
        "log_last_position": await model.store.last_position(),
        "started_from": model.runner.started_from,
        "ready": model.runner.ready,
        "agents": {"total": len(model.agents.agents), "by_status": model.agents.counts()},
        "tasks": {"total": len(model.tasks.tasks), "by_status": model.tasks.counts()},
        "leader": model.is_leader(),
    })


def _seconds_list(request: web.Request, name: str) -> list[float] | None:
    """`?name=2,4.5,8`: at most MAX_WHAT_IF_POINTS distinct seconds in (0, 3600], sorted."""
    raw = request.query.getall(name, [])
    if not raw:
        return None
    parts = [p.strip() for value in raw for p in value.split(",")]
    if len(parts) > MAX_WHAT_IF_POINTS:
        raise BadQuery(f"{name} takes at most {MAX_WHAT_IF_POINTS} values")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise BadQuery(f"{name} must be comma-separated numbers of seconds") from None
        if not 0 < value <= MAX_DETECTOR_S:  # also refuses nan and inf
            raise BadQuery(f"each {name} must be more than 0 and at most {MAX_DETECTOR_S:g}")
        values.append(value)
    return sorted(set(values))


def _around(dead_after: float) -> list[float]:
    found = {round(dead_after * k, 3) for k in WHAT_IF_AROUND}
    return sorted(v for v in found if 0 < v <= MAX_DETECTOR_S)


async def what_if_points(request: web.Request) -> web.Response:
    """The recorded silences replayed under each `dead_after` (a sweep of one
    suspect_after): per point the false deaths avoided or added, the deaths pending, and
    the time from last heartbeat to work moved (services/audit/what_if.py). Reads the
    whole agent log and the liveness record once."""
    model = request.app[READ_MODEL]
    in_force = model.detector
    wanted = _seconds_list(request, "dead_after")
    suspect = _seconds_list(request, "suspect_after")
    if suspect is not None and len(suspect) != 1:
        raise BadQuery("suspect_after takes one value")
    suspect_after = suspect[0] if suspect else (in_force[0] if in_force else 0.0)
    if wanted is None:
        if in_force is None:
            raise BadQuery("dead_after is required: the detector setting is unknown here")
        wanted = _around(in_force[1])
    found = await recording(model.store, model.js, model.names, time.time())
    body = sweep(found, [suspect_after], wanted, [1], heartbeat_interval_of(found))
    return _json({
        "settings": None if in_force is None else {"suspect_after": in_force[0],
                                                   "dead_after": in_force[1]},
        "suspect_after": suspect_after,
        "recorded_dead_after": body["recorded_dead_after"],
        "window": body["window"],
        "unknown_agents": body["unknown_agents"],
        "points": [{k: v for k, v in p.items()
                    if k not in ("suspect_after", "failures_before_critical")}
                   for p in body["points"]],
    })


async def metrics(request: web.Request) -> web.Response:
    model = request.app[READ_MODEL]
    await model.metrics.before_scrape()
    model.metrics.read_projections(model.agents, model.tasks)
    model.metrics.leader.set(1 if model.is_leader() else 0)
    model.metrics.position.set(model.runner.position.value)
    body = generate_latest(model.metrics.registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


def create_app(model: ReadModel) -> web.Application:
    # Outermost first: limits and coded errors apply to refused requests too.
    middlewares: list[Any] = [_envelope, enforce_limits]
    if model.access is not None:
        middlewares.append(bearer_auth(model.access))
    app = web.Application(middlewares=middlewares)
    app[READ_MODEL] = model
    app[BLOCKING] = BlockingQueries()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/agents", list_agents)
    app.router.add_get("/v1/agents/{agent_id}", get_agent)
    app.router.add_get("/v1/agents/{agent_id}/history", agent_history)
    app.router.add_get("/v1/agents/{agent_id}/why", agent_why)
    app.router.add_get("/v1/services", list_services)
    app.router.add_get("/v1/services/{name}", get_service)
    app.router.add_get("/v1/tasks", list_tasks)
    app.router.add_get("/v1/tasks/{task_id}", get_task)
    app.router.add_get("/v1/tasks/{task_id}/history", task_history)
    app.router.add_get("/v1/tasks/{task_id}/why", task_why)
    app.router.add_get("/v1/events", list_events)
    app.router.add_get("/v1/stats", stats)
    app.router.add_get("/v1/what-if", what_if_points)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    add_ui_routes(app)
    return app
