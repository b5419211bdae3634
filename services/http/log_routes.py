"""The read API's routes that read the log itself rather than the projections: an
agent's or a task's history, why it is as it is, the events by position, and what-if
replays of the recorded silences. create_app (services/http/api.py) serves them."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from domain.errors import ErrorCode
from infra.names import AGENT, TASK, Names
from services.audit.explain import Explainer
from services.audit.waiting import waiting
from services.audit.what_if import heartbeat_interval_of, recording, sweep
from services.audit.what_if_limits import parse_change, what_if_limits
from services.http.query import (
    READ_MODEL,
    BadQuery,
    agent_path_id,
    error_response,
    int_param,
    json_reply,
    path_id,
)
from services.http.redact import event_json, redacted

if TYPE_CHECKING:
    from services.http.api import ReadModel

MAX_EVENTS_LIMIT = 10_000
MAX_WHAT_IF_POINTS = 10
MAX_DETECTOR_S = 3600.0
# Without ?dead_after=: these multiples of the dead_after in force.
WHAT_IF_AROUND = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
_SUBJECT_TOKEN = re.compile(r"^([A-Za-z0-9_-]+|\*|>)$")


async def agent_history(request: web.Request) -> web.Response:
    agent_id = agent_path_id(request)
    events = await request.app[READ_MODEL].store.history(AGENT, agent_id)
    if not events:
        return error_response(404, ErrorCode.NOT_FOUND, f"agent {agent_id} has no history")
    return json_reply({"agent_id": agent_id, "events": [event_json(e) for e in events]})


async def task_history(request: web.Request) -> web.Response:
    task_id = path_id(request, "task_id")
    model = request.app[READ_MODEL]
    events = await model.store.history(TASK, task_id)
    if not events:
        return error_response(404, ErrorCode.NOT_FOUND, f"task {task_id} does not exist")
    # The agent events that caused a move (a death, a leave) belong to the story too.
    causes = {e.causation_id for e in events if e.name in ("Reassigned", "Requeued")}
    related = await _agent_events_by_id(model, events, causes)
    story = sorted(events + related, key=lambda e: e.position)
    return json_reply({"task_id": task_id, "events": [event_json(e) for e in story]})


async def _agent_events_by_id(model: ReadModel, events: list[Any],
                              wanted: set[str | None]) -> list[Any]:
    agents = {e.data().get("from_agent") for e in events if e.name in ("Reassigned", "Requeued")}
    found = []
    for agent_id in sorted(a for a in agents if a):
        for event in await model.store.history(AGENT, agent_id):
            if event.event_id in wanted:
                found.append(event)
    return found


async def task_why(request: web.Request) -> web.Response:
    task_id = path_id(request, "task_id")
    model = request.app[READ_MODEL]
    found = await Explainer(model.store, model.js, model.names).task(task_id)
    if found is None:
        return error_response(404, ErrorCode.NOT_FOUND, f"task {task_id} does not exist")
    found["waiting"] = waiting(found, model.agents, model.tasks, time.time(), model.limits)
    return json_reply(redacted(found))


async def agent_why(request: web.Request) -> web.Response:
    agent_id = agent_path_id(request)
    model = request.app[READ_MODEL]
    found = await Explainer(model.store, model.js, model.names).agent(agent_id)
    if found is None:
        return error_response(404, ErrorCode.NOT_FOUND, f"agent {agent_id} has no history")
    return json_reply(redacted(found))


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
    after = int_param(request, "after", 0, 0, 2**63)
    limit = int_param(request, "limit", 100, 1, MAX_EVENTS_LIMIT)
    subject = _subject_filter(model.names, request.query.get("subject"))
    page = await model.store.read_page(after, limit, subject)
    return json_reply({"events": [event_json(e) for e in page.events],
                  "next_after": page.last})


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


# Limits a what-if request may change at once.
MAX_LIMIT_CHANGES = 20


async def what_if_limits_route(request: web.Request) -> web.Response:
    """A recorded window replayed under other limits (services/audit/what_if_limits.py):
    `?from=POS&to=POS&set=gpu:concurrency=4&set=...`, per key the waits and throughput
    beside what happened, and whether the placements are the same."""
    model = request.app[READ_MODEL]
    start = int_param(request, "from", 1, 1, 2**63)
    end = int_param(request, "to", 0, 0, 2**63) or None
    raw = request.query.getall("set", [])
    if len(raw) > MAX_LIMIT_CHANGES:
        raise BadQuery(f"set takes at most {MAX_LIMIT_CHANGES} limits")
    try:
        changes = [parse_change(text) for text in raw]
    except ValueError as exc:
        raise BadQuery(f"set: {exc}") from None
    return json_reply(await what_if_limits(model.store, start, end, changes))


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
    suspect_after = suspect[0] if suspect else (in_force.suspect_after if in_force else 0.0)
    if wanted is None:
        if in_force is None:
            raise BadQuery("dead_after is required: the detector setting is unknown here")
        wanted = _around(in_force.dead_after)
    found = await recording(model.store, model.js, model.names, time.time())
    body = sweep(found, [suspect_after], wanted, [1], heartbeat_interval_of(found))
    return json_reply({
        "settings": None if in_force is None else {"suspect_after": in_force.suspect_after,
                                                   "dead_after": in_force.dead_after},
        "suspect_after": suspect_after,
        "recorded_dead_after": body["recorded_dead_after"],
        "window": body["window"],
        "unknown_agents": body["unknown_agents"],
        "points": [{k: v for k, v in p.items()
                    if k not in ("suspect_after", "failures_before_critical")}
                   for p in body["points"]],
    })
