"""/v1/agents pages by id with `after` and `limit`, like /v1/tasks by position; without a
limit it answers a default page (services.http.api.DEFAULT_AGENTS_LIMIT), so no request
serializes the whole fleet."""

from __future__ import annotations

import services.http.api
from tests.support import eventually, get_json, registration, request, subject


def url(orchestrator, path: str) -> str:
    return f"http://127.0.0.1:{orchestrator.http_port}{path}"


async def test_agents_page_by_id_with_after_and_limit(orchestrator, nc, names):
    ids = [f"p{i:02d}" for i in range(7)]
    for agent_id in reversed(ids):
        reply = await request(nc, subject(names, "register", agent_id), registration(agent_id))
        assert reply["ok"], reply
    await eventually(lambda: len(orchestrator.agents.agents) == 7)

    seen, after = [], None
    for _ in range(4):
        path = "/v1/agents?limit=3" + (f"&after={after}" if after else "")
        status, _, body = await get_json(url(orchestrator, path))
        assert status == 200
        seen.append([a["agent_id"] for a in body["agents"]])
        after = body["next_after"]
        if after is None:
            break
    assert seen == [ids[0:3], ids[3:6], ids[6:7]]

    _, _, everything = await get_json(url(orchestrator, "/v1/agents"))  # within a page
    assert [a["agent_id"] for a in everything["agents"]] == ids
    assert everything["next_after"] is None
    _, _, exact = await get_json(url(orchestrator, "/v1/agents?limit=7"))
    assert len(exact["agents"]) == 7 and exact["next_after"] is None
    _, _, filtered = await get_json(url(orchestrator, "/v1/agents?status=left&limit=2"))
    assert filtered == {"agents": [], "next_after": None}


async def test_a_bad_limit_is_a_coded_400(orchestrator):
    for bad in ("0", "10001", "x"):
        status, _, body = await get_json(url(orchestrator, f"/v1/agents?limit={bad}"))
        assert status == 400 and body["error"]["code"] == "invalid_request", bad


async def test_without_a_limit_a_default_page_and_its_cursor(orchestrator, nc, names,
                                                              monkeypatch):
    monkeypatch.setattr(services.http.api, "DEFAULT_AGENTS_LIMIT", 2)
    ids = [f"d{i}" for i in range(5)]
    for agent_id in ids:
        await request(nc, subject(names, "register", agent_id), registration(agent_id))
    await eventually(lambda: len(orchestrator.agents.agents) == 5)
    seen, after = [], ""
    while after is not None:
        _, _, body = await get_json(url(orchestrator, "/v1/agents" + (
            f"?after={after}" if after else "")))
        seen.append([a["agent_id"] for a in body["agents"]])
        after = body["next_after"]
    assert seen == [ids[0:2], ids[2:4], ids[4:5]]
