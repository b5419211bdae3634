"""The read API refuses unknown filter values by name, and answers a bug in coded JSON."""

from __future__ import annotations

import logging
from typing import get_args

import pytest

from domain.protocol.replies import AgentStatus, TaskStatus
from services.audit.explain import Explainer
from tests.support import get_json, registration, request, subject


def url(orch, path: str) -> str:
    return f"http://127.0.0.1:{orch.http_port}{path}"


class TestUnknownFilterValues:
    @pytest.mark.parametrize(("path", "allowed"), [
        ("/v1/agents?status=bogus", get_args(AgentStatus)),
        ("/v1/tasks?status=bogus", get_args(TaskStatus)),
        ("/v1/tasks?status=Pending", get_args(TaskStatus)),
        ("/v1/agents?status=&capability=gpu", get_args(AgentStatus)),
    ])
    async def test_are_a_400_naming_the_allowed_values(self, orchestrator, path, allowed):
        status, headers, body = await get_json(url(orchestrator, path))

        assert status == 400 and "X-Orch-Index" in headers
        assert body["ok"] is False and body["error"]["code"] == "invalid_request"
        assert body["error"]["message"] == f"status must be one of {', '.join(allowed)}"

    async def test_known_values_still_filter(self, orchestrator, nc, names):
        await request(nc, subject(names, "register", "a1"), registration("a1"))
        reply = await request(nc, subject(names, "task.submit"),
                              {"task_id": "t1", "kind": "k", "requires": ["nobody"]})
        await orchestrator.runner.position.wait_for(reply["position"], 10)

        _, _, agents = await get_json(url(orchestrator, "/v1/agents?status=healthy"))
        _, _, tasks = await get_json(url(orchestrator, "/v1/tasks?status=pending"))
        _, _, none = await get_json(url(orchestrator, "/v1/tasks?status=cancelled"))

        assert [a["agent_id"] for a in agents["agents"]] == ["a1"]
        assert [t["task_id"] for t in tasks["tasks"]] == ["t1"] and none["tasks"] == []


async def test_a_handler_that_fails_answers_a_coded_json_500_and_logs_why(
    orchestrator, monkeypatch, caplog
):
    async def broken(self, task_id):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Explainer, "task", broken)
    with caplog.at_level(logging.ERROR, logger="services.http.api"):
        status, headers, body = await get_json(url(orchestrator, "/v1/tasks/t1/why"))

    assert status == 500 and headers["Content-Type"] == "application/json"
    assert "X-Orch-Index" in headers
    assert body["ok"] is False and body["error"]["code"] == "internal"
    failed = [r for r in caplog.records if r.name == "services.http.api"]
    assert failed and failed[0].exc_info is not None
    assert "path=/v1/tasks/t1/why" in failed[0].getMessage()
