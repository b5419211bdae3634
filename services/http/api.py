"""The read API: agents, history, events, stats, metrics and the OpenAPI document.

The routes that read the log itself (histories, why, events, what-if) are in
services/http/log_routes.py; what every route shares, in services/http/query.py."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from aiohttp import web
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from domain.agents.health import DetectorSettings
from domain.errors import ErrorCode
from domain.protocol.replies import AgentStatus, TaskStatus
from infra.log.port import EventLog
from infra.log.recorded import StoreUnavailable
from infra.names import Names
from projections.access import Access
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.fleet.catalog import Catalog
from projections.limits import Limits
from projections.runner import ProjectionRunner
from projections.schedules import ScheduleBook
from services.auth.http import bearer_auth
from services.commands.catalog import catalog_at
from services.commands.service import Command
from services.http.actions import add_action_routes
from services.http.blocking import (
    RETRY_AFTER_S,
    BlockingQueries,
    TooManyBlocking,
    release_on_shutdown,
    wait_past,
)
from services.http.fleet_view import agent_json
from services.http.limits import enforce_limits
from services.http.log_routes import (
    agent_history,
    agent_why,
    list_events,
    task_history,
    task_why,
    what_if_limits_route,
    what_if_points,
)
from services.http.openapi import openapi_document
from services.http.query import (
    READ_MODEL,
    BadQuery,
    agent_path_id,
    error_response,
    float_param,
    int_param,
    json_reply,
    path_id,
)
from services.http.schedule_routes import add_schedule_routes
from services.http.task_pages import newest_first
from services.http.ui import add_ui_routes
from services.metrics import Metrics

INDEX_HEADER = "X-Orch-Index"
MAX_WAIT_S = 600.0
DEFAULT_WAIT_S = 60.0
# List routes answer a page at a time: no request serializes the whole fleet.
DEFAULT_AGENTS_LIMIT = 500
MAX_AGENTS_LIMIT = 10_000
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
    # The failure detector in force (the live monitor's own settings).
    detector: DetectorSettings | None = None
    # The schedules (services/http/schedule_routes.py).
    schedules: ScheduleBook | None = None
    # Flow control's limits in force (GET /v1/limits).
    limits: Limits | None = None


BLOCKING = web.AppKey("blocking", BlockingQueries)


async def _block(request: web.Request) -> None:
    """A blocking query: wait until the projection passes ?index=, for at most ?wait=."""
    if "index" not in request.query:
        return
    index = int_param(request, "index", 0, 0, 2**63)
    wait = float_param(request, "wait", DEFAULT_WAIT_S, 0, MAX_WAIT_S)
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
    return json_reply({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    model = request.app[READ_MODEL]
    checks = {"nats": model.is_connected(), "projections": model.runner.ready}
    ready = all(checks.values())
    return json_reply({"ok": ready, "checks": checks}, 200 if ready else 503)


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
    limit = int_param(request, "limit", DEFAULT_AGENTS_LIMIT, 1, MAX_AGENTS_LIMIT)
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
    board = request.app[READ_MODEL].tasks
    return json_reply({"agents": [agent_json(a, board) for a in agents], "next_after": cursor})



async def get_agent(request: web.Request) -> web.Response:
    agent_id = agent_path_id(request)
    await _block(request)
    view = request.app[READ_MODEL].agents.get(agent_id)
    if view is None:
        return error_response(404, ErrorCode.NOT_FOUND, f"agent {agent_id} is not registered")
    return json_reply(agent_json(view, request.app[READ_MODEL].tasks))



async def list_tasks(request: web.Request) -> web.Response:
    status = _one_of(request, "status", TASK_STATUSES)
    await _block(request)
    limit = int_param(request, "limit", 100, 1, 1000)
    if _one_of(request, "order", ("oldest", "newest")) == "newest":
        before = int_param(request, "before", 0, 1, 2**63) if "before" in request.query else None
        tasks = newest_first(request.app[READ_MODEL].tasks, status, request.query.get("agent"),
                             request.query.get("kind"), before, limit)
    else:
        after = int_param(request, "after", 0, 0, 2**63)
        tasks = request.app[READ_MODEL].tasks.query(
            status=status, agent_id=request.query.get("agent"),
            kind=request.query.get("kind"), after=after, limit=limit,
        )
    cursor = tasks[-1].submitted_position if len(tasks) == limit else None
    return json_reply({"tasks": [t.to_json() for t in tasks], "next_after": cursor})


async def get_task(request: web.Request) -> web.Response:
    task_id = path_id(request, "task_id")
    await _block(request)
    view = request.app[READ_MODEL].tasks.get(task_id)
    if view is None:
        return error_response(
            404, ErrorCode.NOT_FOUND, f"task {task_id} is not on the board: unknown, or "
            f"finished longer ago than the retention or past the limit of finished tasks held "
            f"(its history stays in the log)")
    return json_reply(view.to_json())



async def list_services(request: web.Request) -> web.Response:
    await _block(request)
    return json_reply({"services": request.app[READ_MODEL].catalog.services()})


def _bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadQuery(f"{name} must be true or false")
    return raw in ("true", "1")


async def get_service(request: web.Request) -> web.Response:
    """Instances of a service; `?at=N` answers from the log as it was at position N."""
    name = path_id(request, "name")
    # Paged by agent id like /v1/agents: a service every agent offers is the fleet.
    limit = int_param(request, "limit", DEFAULT_AGENTS_LIMIT, 1, MAX_AGENTS_LIMIT)
    labels, healthy = _label_filter(request), _bool(request, "healthy")
    model = request.app[READ_MODEL]
    catalog = model.catalog
    if "at" in request.query:
        catalog = await catalog_at(model.store, model.names, int_param(request, "at", 0, 0, 2**63))
    else:
        await _block(request)
    if name not in catalog.by_service:
        return error_response(404, ErrorCode.NOT_FOUND, f"no service {name}")
    instances, cursor = catalog.instances_page(name, request.query.get("after"), limit,
                                               request.query.getall("tag", []), labels,
                                               healthy)
    return json_reply({"service": name, "position": catalog.position if "at" in request.query
                  else model.runner.position.value, "instances": instances,
                  "next_after": cursor})



async def stats(request: web.Request) -> web.Response:
    model = request.app[READ_MODEL]
    return json_reply({
        "position": model.runner.position.value,
        "log_last_position": await model.store.last_position(),
        "started_from": model.runner.started_from,
        "ready": model.runner.ready,
        "agents": {"total": len(model.agents.agents), "by_status": model.agents.counts()},
        "tasks": {"total": len(model.tasks.tasks), "by_status": model.tasks.counts()},
        "leader": model.is_leader(),
    })



async def list_limits(request: web.Request) -> web.Response:
    """Every limit an operator set, with what its key uses now; the admission bounds."""
    model = request.app[READ_MODEL]
    limits, use = model.limits or Limits(), model.tasks.flow
    rows = limits.listing()
    for row in rows:
        if row["scope"] == "key":
            row["running"] = use.open.get(row["name"], 0)
            row["waiting"] = use.waiting.get(row["name"], 0)
    return json_reply({
        "position": model.runner.position.value,
        "limits": rows,
        "admission": {"max_unfinished_per_submitter": limits.max_unfinished_per_submitter,
                      "max_unfinished_tasks": limits.max_unfinished_total,
                      "unfinished_tasks": use.total_unfinished},
    })


async def metrics(request: web.Request) -> web.Response:
    model = request.app[READ_MODEL]
    await model.metrics.before_scrape()
    model.metrics.read_projections(model.agents, model.tasks)
    if model.limits is not None:
        model.metrics.flow.read(model.limits, model.tasks.flow)
    model.metrics.leader.set(1 if model.is_leader() else 0)
    model.metrics.position.set(model.runner.position.value)
    body = generate_latest(model.metrics.registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def openapi(request: web.Request) -> web.Response:
    return json_reply(openapi_document())


def create_app(model: ReadModel, commands: Sequence[Command] = ()) -> web.Application:
    """The read API, and the dashboard's actions run by these command handlers (the
    NATS endpoints' own; services/http/actions.py)."""
    # Outermost first: limits and coded errors apply to refused requests too.
    middlewares: list[Any] = [_envelope, enforce_limits]
    if model.access is not None:
        middlewares.append(bearer_auth(model.access))
    app = web.Application(middlewares=middlewares)
    app[READ_MODEL] = model
    app[BLOCKING] = BlockingQueries()
    release_on_shutdown(app)
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
    app.router.add_get("/v1/what-if/limits", what_if_limits_route)
    app.router.add_get("/v1/limits", list_limits)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    add_action_routes(app, commands)
    add_schedule_routes(app)
    add_ui_routes(app, auth=model.access is not None)
    return app
