"""schemathesis against the live read API and its own /openapi.json.

One test per operation of the document (tests/integration/test_openapi_routes.py holds
the document to every route the app serves), with the fuzz world present (agents, a
service, tasks in every state) so that the gets find data: schemathesis generates requests that
fit the schema (positive) and requests that do not (negative); every response must be
no 5xx, a documented status code, the documented content type and headers, and a body
that matches the documented schema.

The document's POSTs, the dashboard's actions (drain, undrain, cancel), are fuzzed too:
they write, but the world is the test's own (a per-test orchestrator on a fresh prefix,
tests/conftest.py), so a drain or a cancel changes only the world of that operation's
test, and every later request of it must still answer within the schema (a 409 for a task
that finished otherwise; a reply without `position` for one cancelled already). Auth is
off there: no token is needed, and the actions record `anonymous`; their 401 and 403 are
covered with auth on by tests/security/test_dashboard_actions.py.

schemathesis is synchronous (requests); like the command fuzz, hypothesis runs in a
worker thread while the event loop serves the orchestrator's HTTP API.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.http.openapi import openapi_document
from tests.fuzz.checks import HTTP_STATUSES, run_hypothesis
from tests.fuzz.world import KIND, LIVE_SERVICES, World
from tests.support import eventually

EXAMPLES = int(os.environ.get("FUZZ_API_EXAMPLES", "40"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
if os.environ.get("FUZZ_API_STRICT"):
    from schemathesis.checks import negative_data_rejection, positive_data_acceptance
    CHECKS += [negative_data_rejection, positive_data_acceptance]
# A blocking query (?index= past the log's end) waits up to ?wait= seconds, 60 by
# default and up to 600: schemathesis would spend minutes waiting for nothing. Waits are
# capped at this; the blocking itself is covered by tests/integration/test_read_api.py.
MAX_WAIT_S = 0.01
SCHEDULE = "fz-schedule"

OPERATIONS = [(method.upper(), path) for path, item in openapi_document()["paths"].items()
              for method in item]


def cap_wait(query: dict[str, Any] | None) -> dict[str, Any] | None:
    """Cap a well-formed wait of a blocking query; leave a malformed one as generated."""
    if not query or "index" not in query:
        return query
    wait = query.get("wait")
    if wait is None or (isinstance(wait, int | float) and not isinstance(wait, bool)
                        and wait > MAX_WAIT_S):
        return {**query, "wait": MAX_WAIT_S}
    return query


def _get_json(url: str) -> dict[str, Any]:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def world_ids(world: World, path: str) -> dict[str, Any]:
    """Path parameters naming what the world holds, so that gets return data."""
    if "{agent_id}" in path:
        return {"agent_id": st.sampled_from([World.live, World.worker, World.left,
                                             World.victim, World.doomed, World.phoenix])}
    if "{task_id}" in path:
        return {"task_id": st.sampled_from(sorted({t.task_id for t in world.tasks.values()}))}
    if path == "/v1/schedules/{name}":
        return {"name": st.sampled_from([SCHEDULE, "fz-no-schedule"])}
    if "{name}" in path:
        return {"name": st.just(LIVE_SERVICES[0]["name"])}
    return {}


async def add_schedule(world: World) -> None:
    """A schedule for the schedule routes to find (the world has none of its own, the
    command fuzz wanting the log quiet): due at most once a year, it does not fire."""
    await world.ok("schedule.create", {"name": SCHEDULE, "every_s": 366 * 24 * 3600,
                                       "task": {"kind": KIND, "payload": {"n": 1}}})
    assert world.orch.system is not None
    book = world.orch.system.read_model.schedules
    assert book is not None
    await eventually(lambda: book.get(SCHEDULE), what="the schedule in the read model")


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_read_api_answers_within_its_schema(world: World, method: str, path: str) -> None:
    base_url = f"http://127.0.0.1:{world.orch.http_port}"
    if path.startswith("/v1/schedules"):
        await add_schedule(world)
    # The document as served. (Loaded with from_url, schemathesis would leave out the
    # operation that serves the document itself, GET /openapi.json.)
    document = await asyncio.to_thread(_get_json, f"{base_url}/openapi.json")
    schema = schemathesis.openapi.from_dict(document)
    operation = schema[path][method]
    known = world_ids(world, path)
    strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
    if known:
        strategies.append(st.fixed_dictionaries(known).flatmap(
            lambda ids: operation.as_strategy(path_parameters=ids)))
    session = requests.Session()

    @settings(max_examples=EXAMPLES * len(strategies), deadline=None, database=None,
              print_blob=True, suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def fuzz(case: Any) -> None:
        case.query = cap_wait(case.query)
        response = case.call_and_validate(base_url=base_url, session=session, checks=CHECKS,
                                          timeout=10)
        HTTP_STATUSES[response.status_code] += 1

    try:
        await run_hypothesis(fuzz)
    finally:
        session.close()
