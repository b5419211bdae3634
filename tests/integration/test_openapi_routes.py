"""/openapi.json against what the app serves: every route (method and path) the read API's
router holds is documented, and every documented one is served; and each route added to
the document for limits, what-if limits, schedules and the dashboard's actions answers,
on a real orchestrator, what its model says (strict: no key the model does not name)."""

from __future__ import annotations

from typing import Any, TypeVar

import aiohttp
import orjson
from pydantic import BaseModel

from domain.protocol.replies import AgentStatusReply, TaskReply
from services.http import ops_models as o
from services.http.api import create_app
from services.http.models import ErrorOut
from tests.support import get_json, registration, request, subject

# Served but not the API: the dashboard's static files (services/http/ui), HTML and
# scripts, not JSON; read-api.md lists them beside the API.
NOT_API = {("GET", "/ui"), ("GET", "/ui/"), ("GET", "/ui/{path}")}


def served(app: Any) -> set[tuple[str, str]]:
    """(method, path) of each route; aiohttp's implicit HEAD of a GET is the GET's."""
    routes = set()
    for resource in app.router.resources():
        for route in resource:
            if route.method != "HEAD":
                routes.add((route.method, resource.canonical))
    return routes


async def test_every_route_served_is_documented_and_every_documented_one_served(
        orchestrator) -> None:
    system = orchestrator.system
    app = create_app(system.read_model, system.commands())  # what the orchestrator serves
    status, _, document = await get_json(url(orchestrator, "/openapi.json"))
    assert status == 200
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item}
    routes = served(app) - NOT_API
    missing = sorted(routes - documented)
    assert not missing, f"served but not in /openapi.json: {missing}"
    unserved = sorted(documented - routes)
    assert not unserved, f"in /openapi.json but not served: {unserved}"


def url(orch, path: str) -> str:
    return f"http://127.0.0.1:{orch.http_port}{path}"


M = TypeVar("M", bound=BaseModel)


def strictly(model: type[M], body: Any) -> M:
    return model.model_validate_json(orjson.dumps(body), strict=True)


async def post(orch, path: str, body: bytes = b"") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
            url(orch, path), data=body, headers={"Content-Type": "application/json"}) as reply:
        return reply.status, orjson.loads(await reply.read())


async def ok(nc, names, command: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await request(nc, subject(names, command, body.get("agent_id", "a1")), body)
    assert reply["ok"], reply
    return reply


async def test_limits_and_what_if_limits_fit_their_models(orchestrator, nc, names) -> None:
    for body in ({"scope": "key", "name": "gpu", "concurrency": 1, "rate": "600/min"},
                 {"scope": "default", "name": "key", "concurrency": 5},
                 {"scope": "fairness", "name": "team-a", "weight": 2.5},
                 {"scope": "submitter", "name": "bob", "max_unfinished": 7}):
        await ok(nc, names, "admin.limits.set", body)
    await ok(nc, names, "register", registration("a1"))
    for task_id in ("t1", "t2"):  # one placed, one waiting for gpu's concurrency of 1
        await ok(nc, names, "task.submit", {"task_id": task_id, "kind": "k",
                                            "requires": ["cpu"], "concurrency_key": "gpu"})
    last = await orchestrator.store.last_position()
    await orchestrator.runner.position.wait_for(last, 10)

    status, _, body = await get_json(url(orchestrator, "/v1/limits"))
    assert status == 200, body
    limits = strictly(o.LimitsOut, body)
    assert [(r.scope, r.name) for r in limits.limits] == [
        ("default", "key"), ("fairness", "team-a"), ("key", "gpu"), ("submitter", "bob")]
    gpu = limits.limits[2]
    assert (gpu.concurrency, gpu.rate_per_s, gpu.burst, gpu.running, gpu.waiting) == (
        1, 10.0, 1, 1, 1)
    assert limits.admission.unfinished_tasks == 2

    status, _, body = await get_json(url(
        orchestrator, "/v1/what-if/limits?set=gpu:concurrency=2&set=fairness:team-a:weight=3"))
    assert status == 200, body
    replay = strictly(o.WhatIfLimits, body)
    assert replay.keys["gpu"].actual.submitted == 2
    assert [p[0] for p in replay.placements.actual] == ["t1"]
    assert replay.window.to_position == last
    status, _, body = await get_json(url(orchestrator, "/v1/what-if/limits?set=gpu:speed=9"))
    assert status == 400
    strictly(ErrorOut, body)


async def test_schedules_fit_their_models(orchestrator, nc, names) -> None:
    status, _, body = await get_json(url(orchestrator, "/v1/schedules"))
    assert status == 200, body
    assert strictly(o.ScheduleList, body).schedules == []
    for name, timing in (("every-hour", {"every_s": 3600}), ("nightly", {"cron": "0 3 * * *"})):
        await ok(nc, names, "schedule.create", {"name": name, **timing, "task": {
            "kind": "report", "payload": {"x": 1}, "concurrency_key": "gpu"}})
    await ok(nc, names, "schedule.pause", {"name": "nightly"})
    await orchestrator.runner.position.wait_for(await orchestrator.store.last_position(), 10)

    status, _, body = await get_json(url(orchestrator, "/v1/schedules?limit=1"))
    assert status == 200, body
    page = strictly(o.ScheduleList, body)
    assert [s.name for s in page.schedules] == ["every-hour"] and page.next_after == "every-hour"
    status, _, body = await get_json(url(orchestrator, "/v1/schedules/nightly"))
    assert status == 200, body
    one = strictly(o.ScheduleOne, body)
    assert (one.status, one.cron, one.every_s, one.next_due) == ("paused", "0 3 * * *", None,
                                                                 None)
    for path, expected in (("/v1/schedules/nobody", 404), ("/v1/schedules?limit=0", 400)):
        status, _, body = await get_json(url(orchestrator, path))
        assert status == expected, body
        strictly(ErrorOut, body)


async def test_actions_fit_their_models(orchestrator, nc, names) -> None:
    for agent_id in ("a1", "a2"):
        await ok(nc, names, "register", registration(agent_id))
    await ok(nc, names, "deregister", {"agent_id": "a2", "incarnation": 1})
    await ok(nc, names, "task.submit", {"task_id": "t1", "kind": "nobody-runs"})

    status, body = await post(orchestrator, "/v1/agents/a1/drain")
    assert status == 200, body
    assert strictly(AgentStatusReply, body).status == "draining"
    status, body = await post(orchestrator, "/v1/agents/a1/undrain", b"{}")
    assert status == 200, body
    assert strictly(AgentStatusReply, body).status == "healthy"
    status, body = await post(orchestrator, "/v1/tasks/t1/cancel", b'{"reason": "no need"}')
    assert status == 200, body
    assert strictly(TaskReply, body).status == "cancelled"
    for path, raw, expected in (("/v1/agents/ghost/drain", b"", 404),
                                ("/v1/agents/a2/drain", b"", 409),
                                ("/v1/tasks/t1/cancel", b'{"why": 1}', 400),
                                ("/v1/tasks/no%20such/cancel", b"", 400)):
        status, body = await post(orchestrator, path, raw)
        assert status == expected, (path, body)
        strictly(ErrorOut, body)
