"""Bad input: a coded error reply, and the log does not move."""

from __future__ import annotations

import orjson
import pytest

from tests.support import request

TOO_LONG = "x" * 200

INVALID_REGISTRATIONS = [
    pytest.param(b"{not json", id="malformed-json"),
    pytest.param(b"[]", id="not-an-object"),
    pytest.param({"agent_id": "a1", "capacity": "5"}, id="capacity-as-string"),
    pytest.param({"agent_id": 7}, id="id-as-number"),
    pytest.param({"agent_id": "a1", "colour": "red"}, id="unknown-field"),
    pytest.param({"agent_id": "a.1"}, id="id-with-dot"),
    pytest.param({"agent_id": "a*"}, id="id-with-star"),
    pytest.param({"agent_id": "a>"}, id="id-with-gt"),
    pytest.param({"agent_id": TOO_LONG}, id="id-of-200-chars"),
    pytest.param({"capabilities": ["x"]}, id="missing-id"),
    pytest.param({"agent_id": "a1", "capacity": -1}, id="negative-capacity"),
    pytest.param({"agent_id": "a1", "services": [{"name": "web", "address": "h",
                                                   "port": 70000}]}, id="bad-port"),
]


async def assert_refused(orchestrator, nc, subject: str, body, code: str) -> dict:
    before = await orchestrator.store.last_position()
    reply = await request(nc, subject, body)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert reply["error"]["message"]
    assert await orchestrator.store.last_position() == before
    return reply


class TestInvalidCommands:
    @pytest.mark.parametrize("body", INVALID_REGISTRATIONS)
    async def test_invalid_registration_is_refused_and_writes_nothing(
        self, orchestrator, nc, names, body
    ):
        await assert_refused(orchestrator, nc, names.command("agent.register"), body,
                             "invalid_request")

    async def test_refusal_names_the_offending_field(self, orchestrator, nc, names):
        reply = await assert_refused(
            orchestrator, nc, names.command("agent.register"),
            {"agent_id": "a1", "capacity": "5"}, "invalid_request")
        assert [d["field"] for d in reply["error"]["details"]] == ["capacity"]

    async def test_oversized_payload_is_refused(self, orchestrator, nc, names):
        body = orjson.dumps({"agent_id": "a1", "labels": {"k": "v" * 100_000}})
        await assert_refused(orchestrator, nc, names.command("agent.register"), body,
                             "payload_too_large")

    @pytest.mark.parametrize("command", ["agent.deregister", "agent.drain"])
    async def test_other_commands_refuse_bad_ids(self, orchestrator, nc, names, command):
        body = {"agent_id": "a.b", "incarnation": 1} if command == "agent.deregister" else {
            "agent_id": "a.b"}
        await assert_refused(orchestrator, nc, names.command(command), body, "invalid_request")

    async def test_errors_carry_micro_service_error_headers(self, orchestrator, nc, names):
        msg = await nc.request(names.command("agent.drain"), b"{}", timeout=5)
        assert msg.headers is not None
        assert msg.headers["Nats-Service-Error-Code"] == "400"
