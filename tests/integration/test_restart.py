"""kill -9 the orchestrator and start it again: the projection is rebuilt, equal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sdk.agent import AgentClient
from tests.processes import OrchestratorProcess
from tests.support import eventually, get_json, registration, request, subject

HEARTBEAT_FIELDS = ("last_heartbeat_at", "load", "running")


@pytest.fixture
def process(nats_server, prefix, tmp_path) -> Iterator[OrchestratorProcess]:
    proc = OrchestratorProcess(nats_server.url, prefix, tmp_path / "orchestrator.log")
    yield proc
    proc.stop()


def without_heartbeats(agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k not in HEARTBEAT_FIELDS} for a in agents]


async def test_kill_9_and_restart_rebuilds_an_equal_projection(process, nats_server, nc, names):
    process.start()
    await eventually(process.ready, timeout=30, what="orchestrator ready")
    live = AgentClient("live", ["cpu"], nats_url=nats_server.url, prefix=names.prefix)
    await live.start()
    try:
        await scenario(process, nc, names)
    finally:
        await live.stop(deregister=False)


async def scenario(process: OrchestratorProcess, nc, names) -> None:
    # A fleet in every state: re-registered, draining, left, and (silent) dead.
    for agent_id in ("a1", "a2", "a3", "a4"):
        await request(nc, names.agent_command(agent_id, "register"), registration(
            agent_id, labels={"n": agent_id}, services=[
            {"name": "web", "address": agent_id, "port": 80, "tags": [agent_id]},
            {"name": "db", "address": agent_id, "port": 5432}]))
    await request(nc, subject(names, "register", "a1"), registration("a1", replace=True))
    await request(nc, subject(names, "admin.agent.drain"), {"agent_id": "a2"})
    await request(nc, subject(names, "deregister", "a3"), {"agent_id": "a3", "incarnation": 1})

    async def settled() -> Any:
        _, headers, body = await get_json(process.url("/v1/agents"))
        statuses = {a["agent_id"]: a["status"] for a in body["agents"]}
        done = statuses == {"a1": "dead", "a2": "dead", "a3": "left", "a4": "dead",
                            "live": "healthy"}
        return (headers["X-Orch-Index"], body) if done else None

    index_before, before = await eventually(settled, timeout=30, what="fleet settled")
    catalog_before = await catalog(process)

    process.kill9()
    process.start()
    await eventually(process.ready, timeout=30, what="orchestrator ready again")

    _, headers, after = await get_json(process.url("/v1/agents"))
    assert headers["X-Orch-Index"] == index_before
    assert without_heartbeats(after["agents"]) == without_heartbeats(before["agents"])
    assert [a["incarnation"] for a in after["agents"]] == [2, 1, 1, 1, 1]
    assert await catalog(process) == catalog_before
    assert after["agents"][-1]["last_heartbeat_at"] is not None  # heartbeats re-read too


async def catalog(process: OrchestratorProcess) -> dict[str, Any]:
    _, _, listing = await get_json(process.url("/v1/services"))
    found: dict[str, Any] = {"services": listing["services"]}
    for name in listing["services"]:
        _, _, found[name] = await get_json(process.url(f"/v1/services/{name}"))
    return found
