"""The read API: filters, coded errors, X-Orch-Index, blocking queries, events, metrics."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from services.app import Orchestrator
from tests.support import eventually, get_json, registration, request, subject


def url(orch, path: str) -> str:
    return f"http://127.0.0.1:{orch.http_port}{path}"


@pytest.fixture
def settings(settings):
    """The test fleet never heartbeats: suspicion is put out of reach, so that the
    agents' status and the log's index stay as the fixture left them (a 0.5 s blocking
    query outlasted the tests' 0.5 s suspect_after on a loaded machine)."""
    return replace(settings, suspect_after=600.0, dead_after=1200.0)


@pytest.fixture
async def fleet(orchestrator, nc, names):
    """Three agents: a1 (gpu, zone=eu), a2 (cpu, zone=us), a3 (gpu, zone=us, draining)."""
    for agent_id, capability, zone in (("a1", "gpu", "eu"), ("a2", "cpu", "us"),
                                       ("a3", "gpu", "us")):
        await request(nc, subject(names, "register", agent_id), registration(
            agent_id, capabilities=[capability], labels={"zone": zone}))
    reply = await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "a3"})
    await orchestrator.runner.position.wait_for(reply["position"], 10)
    return reply["position"]


def ids(body) -> list[str]:
    return [a["agent_id"] for a in body["agents"]]


class TestAgents:
    @pytest.mark.parametrize(("query", "expected"), [
        ("", ["a1", "a2", "a3"]),
        ("?capability=gpu", ["a1", "a3"]),
        ("?label=zone=us", ["a2", "a3"]),
        ("?status=draining", ["a3"]),
        ("?status=healthy&capability=gpu", ["a1"]),
        ("?label=zone=eu&capability=cpu", []),
    ])
    async def test_filters(self, orchestrator, fleet, query, expected):
        status, _, body = await get_json(url(orchestrator, "/v1/agents" + query))
        assert status == 200
        assert ids(body) == expected

    async def test_unknown_agent_is_a_json_404_with_the_index(self, orchestrator, fleet):
        status, headers, body = await get_json(url(orchestrator, "/v1/agents/nobody"))
        assert status == 404
        assert body["error"]["code"] == "not_found"
        assert headers["X-Orch-Index"] == str(fleet)

    async def test_unknown_history_and_route_are_json_404s(self, orchestrator, fleet):
        for path in ("/v1/agents/nobody/history", "/v1/nothing"):
            status, headers, body = await get_json(url(orchestrator, path))
            assert status == 404 and body["error"]["code"] == "not_found"
            assert "X-Orch-Index" in headers

    @pytest.mark.parametrize("query", ["?index=x", "?index=1&wait=-1", "?label=novalue"])
    async def test_bad_query_parameters_are_400(self, orchestrator, fleet, query):
        status, _, body = await get_json(url(orchestrator, "/v1/agents" + query))
        assert status == 400 and body["error"]["code"] == "invalid_request"


class TestBlockingQueries:
    async def test_returns_as_soon_as_a_change_is_applied(self, orchestrator, nc, names, fleet):
        query = asyncio.create_task(
            get_json(url(orchestrator, f"/v1/agents?index={fleet}&wait=30")))
        await asyncio.wait({query}, timeout=0.2)
        assert not query.done()  # blocked: nothing has changed yet
        started = time.monotonic()

        await request(nc, subject(names, "register", "a4"), registration("a4"))
        status, headers, body = await query

        assert time.monotonic() - started < 10  # far less than wait=30
        assert status == 200 and "a4" in ids(body)
        assert int(headers["X-Orch-Index"]) > fleet

    async def test_returns_after_wait_when_nothing_changes(self, orchestrator, fleet):
        started = time.monotonic()
        status, headers, body = await get_json(
            url(orchestrator, f"/v1/agents/a1?index={fleet}&wait=0.5"))

        assert time.monotonic() - started >= 0.5
        assert status == 200 and body["agent_id"] == "a1"
        assert headers["X-Orch-Index"] == str(fleet)

    async def test_an_old_index_returns_at_once(self, orchestrator, fleet):
        status, _, body = await get_json(url(orchestrator, "/v1/agents?index=0&wait=30"),
                                         timeout=10)
        assert status == 200 and len(body["agents"]) == 3


class TestEvents:
    async def test_pages_through_the_log(self, orchestrator, fleet):
        _, _, first = await get_json(url(orchestrator, "/v1/events?limit=2"))
        _, _, rest = await get_json(url(orchestrator, f"/v1/events?after={first['next_after']}"))

        positions = [e["position"] for e in first["events"] + rest["events"]]
        assert positions == list(range(1, fleet + 1))

    async def test_filters_by_subject(self, orchestrator, fleet):
        _, _, body = await get_json(url(orchestrator, "/v1/events?subject=agent.*.DrainStarted"))
        assert [(e["aggregate_id"], e["type"]) for e in body["events"]] == [
            ("a3", "DrainStarted")]

    @pytest.mark.parametrize("subject", ["agent.a b", "agent.>.x", "agent..x"])
    async def test_refuses_bad_subject_filters(self, orchestrator, fleet, subject):
        status, _, body = await get_json(url(orchestrator, f"/v1/events?subject={subject}"))
        assert status == 400 and body["error"]["code"] == "invalid_request"


class TestOperations:
    async def test_health_and_readiness(self, orchestrator):
        assert (await get_json(url(orchestrator, "/healthz")))[0] == 200
        status, _, body = await get_json(url(orchestrator, "/readyz"))
        assert status == 200 and body["checks"] == {"nats": True, "projections": True}

    async def test_stats_count_agents_by_status(self, orchestrator, fleet):
        _, _, body = await get_json(url(orchestrator, "/v1/stats"))
        assert body["agents"] == {"total": 3, "by_status": {"healthy": 2, "draining": 1}}
        assert body["position"] == body["log_last_position"] == fleet
        assert body["started_from"] == 0  # no snapshot: rebuilt from the beginning

    async def test_metrics_are_prometheus_text(self, orchestrator, fleet):
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(
            url(orchestrator, "/metrics")
        ) as response:
            text = await response.text()
            assert response.headers["X-Orch-Index"] == str(fleet)
        assert f"orch_projection_position {float(fleet)}" in text
        assert 'orch_commands_total{command="register",outcome="ok"} 3.0' in text

    async def test_openapi_describes_every_route(self, orchestrator):
        _, _, doc = await get_json(url(orchestrator, "/openapi.json"))
        assert doc["openapi"].startswith("3.")
        assert {"/v1/agents", "/v1/agents/{agent_id}", "/v1/agents/{agent_id}/history",
                "/v1/events", "/v1/stats", "/metrics", "/healthz", "/readyz"} <= set(doc["paths"])
        for ref in ("AgentOut", "EventOut", "ErrorOut"):
            assert ref in doc["components"]["schemas"]


async def test_a_stopping_orchestrator_answers_its_waiting_blocking_queries(settings):
    """Stopping does not wait out a blocking query (nor keep a dashboard on "Live" until
    it ends): the waiting query is answered as the server shuts down (issue 34, item 3)."""
    orch = Orchestrator(settings)
    await orch.start()
    try:
        await eventually(lambda: orch.runner.ready, what="projections ready")
        index = orch.runner.position.value
        waiting = asyncio.create_task(
            get_json(url(orch, f"/v1/agents?index={index}&wait=600"), timeout=600))
        # A reader waiting on the position makes its change event (an idle orchestrator
        # has no other).
        await eventually(lambda: orch.runner.position._changed is not None,
                         what="the query waiting")
    finally:
        await asyncio.wait_for(orch.stop(), 60)  # well inside the query's 600 s
    status, _, _ = await asyncio.wait_for(waiting, 10)
    assert status == 200
