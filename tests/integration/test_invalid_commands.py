"""Bad input: a coded error reply, and the log does not move."""

from __future__ import annotations

import orjson
import pytest

from tests.support import request, subject

TOO_LONG = "x" * 200

INVALID_REGISTRATIONS = [
    pytest.param(b"{not json", id="malformed-json"),
    pytest.param(b"[]", id="not-an-object"),
    pytest.param({"agent_id": "a1", "capacity": "5"}, id="capacity-as-string"),
    pytest.param({"agent_id": "a1", "capacity": 1.5}, id="capacity-as-float"),
    pytest.param({"agent_id": "a1", "colour": "red"}, id="unknown-field"),
    pytest.param({"agent_id": "a1", "kinds": ["a b"]}, id="kind-with-space"),
    pytest.param({"agent_id": "a1", "capacity": -1}, id="negative-capacity"),
    pytest.param({"agent_id": "a1", "progress_every_s": 0}, id="progress-promise-zero"),
    pytest.param({"agent_id": "a1", "progress_every_s": 3601}, id="progress-promise-too-long"),
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
        await assert_refused(orchestrator, nc, subject(names, "register", "a1"), body,
                             "invalid_request")

    async def test_refusal_names_the_offending_field(self, orchestrator, nc, names):
        reply = await assert_refused(
            orchestrator, nc, subject(names, "register", "a1"),
            {"agent_id": "a1", "capacity": "5"}, "invalid_request")
        assert [d["field"] for d in reply["error"]["details"]] == ["capacity"]

    async def test_oversized_payload_is_refused(self, orchestrator, nc, names):
        body = orjson.dumps({"agent_id": "a1", "labels": {"k": "v" * 100_000}})
        await assert_refused(orchestrator, nc, subject(names, "register", "a1"), body,
                             "payload_too_large")

    @pytest.mark.parametrize("agent_id", ["a*", "a>", TOO_LONG, "a$b"])
    async def test_a_subject_naming_no_valid_agent_is_refused(self, orchestrator, nc, names,
                                                              agent_id):
        # Ids with dots cannot even be one subject token; these are tokens, but not ids.
        await assert_refused(orchestrator, nc, names.agent_command(agent_id, "register"),
                             {}, "invalid_request")

    async def test_no_client_may_send_as_the_orchestrator(self, orchestrator, nc, names):
        # Its own decisions record the identity `orchestrator`: nobody else may claim it.
        await assert_refused(orchestrator, nc, names.client_command("task.submit", "orchestrator"),
                             {"kind": "k"}, "invalid_request")
        await assert_refused(orchestrator, nc, names.agent_command("orchestrator", "register"),
                             {}, "invalid_request")

    @pytest.mark.parametrize("command", ["register", "deregister", "services", "assignments"])
    async def test_a_body_naming_another_agent_is_unauthorized(self, orchestrator, nc, names,
                                                               command):
        body = {"agent_id": "a2", "incarnation": 1, "services": []}
        body = {k: v for k, v in body.items() if k == "agent_id" or (
            k == "incarnation" and command == "deregister") or (
            k == "services" and command == "services")}
        await assert_refused(orchestrator, nc, names.agent_command("a1", command), body,
                             "unauthorized")

    @pytest.mark.parametrize("command", ["admin.agent.deregister", "admin.agent.drain"])
    async def test_other_commands_refuse_bad_ids(self, orchestrator, nc, names, command):
        await assert_refused(orchestrator, nc, subject(names, command), {"agent_id": "a.b"},
                             "invalid_request")

    async def test_errors_carry_micro_service_error_headers(self, orchestrator, nc, names):
        msg = await nc.request(subject(names, "admin.agent.drain"), b"{}", timeout=5)
        assert msg.headers is not None
        assert msg.headers["Nats-Service-Error-Code"] == "400"


INVALID_TASK_COMMANDS = [
    pytest.param("task.submit", {"kind": "a b"}, id="submit-kind-with-space"),
    pytest.param("task.submit", {"kind": "k", "task_id": "a.b"}, id="submit-id-with-dot"),
    pytest.param("task.submit", {"kind": "k", "task_id": "x" * 65}, id="submit-id-too-long"),
    pytest.param("task.submit", {"kind": "k", "priority": "high"}, id="submit-priority-text"),
    pytest.param("task.submit", {"kind": "k", "max_attempts": 0}, id="submit-zero-attempts"),
    pytest.param("task.submit", {"kind": "k", "timeout_s": -1}, id="submit-negative-timeout"),
    pytest.param("task.submit", {"kind": "k", "requires": "gpu"}, id="submit-requires-string"),
    pytest.param("task.submit", {"kind": "k", "extra": 1}, id="submit-unknown-field"),
    pytest.param("task.submit", {}, id="submit-missing-kind"),
    pytest.param("task.accept", {"task_id": "t1"}, id="accept-missing-token"),
    pytest.param("task.accept", {"task_id": "t1", "token": "a*b"}, id="accept-token-wildcard"),
    pytest.param("task.progress", {"task_id": "t1", "token": "x", "progress": 2},
                 id="progress-above-one"),
    pytest.param("task.complete", {"task_id": "t>", "token": "x"}, id="complete-id-gt"),
    pytest.param("task.fail", {"task_id": "t1", "token": "x"}, id="fail-missing-error"),
    pytest.param("task.fail", {"task_id": "t1", "token": "x", "error": "e", "retryable": "no"},
                 id="fail-retryable-text"),
    pytest.param("task.cancel", {"task_id": 5}, id="cancel-id-number"),
    pytest.param("assignments", {"agent_id": "a1", "colour": "red"},
                 id="assignments-unknown-field"),
]


class TestInvalidTaskCommands:
    @pytest.mark.parametrize(("command", "body"), INVALID_TASK_COMMANDS)
    async def test_is_refused_and_writes_nothing(self, orchestrator, nc, names, command, body):
        await assert_refused(orchestrator, nc, subject(names, command), body, "invalid_request")

    @pytest.mark.parametrize("command", ["task.accept", "task.complete", "task.cancel"])
    async def test_unknown_task_is_not_found(self, orchestrator, nc, names, command):
        body = {"task_id": "nobody"} if command == "task.cancel" else {
            "task_id": "nobody", "token": "abc"}
        await assert_refused(orchestrator, nc, subject(names, command), body, "not_found")

    async def test_cancelling_a_completed_task_is_a_conflict(self, orchestrator, nc, names):
        await request(nc, subject(names, "register", "a1"),
                      {"agent_id": "a1", "capabilities": [], "capacity": 1})
        offers = await nc.subscribe(names.agent_tasks("a1"))
        await request(nc, subject(names, "task.submit"), {"task_id": "t1", "kind": "k"})
        offer = orjson.loads((await offers.next_msg(timeout=10)).data)
        done = await request(nc, subject(names, "task.complete", "a1"),
                             {"task_id": "t1", "token": offer["token"], "result": 1})
        assert done["ok"] and done["status"] == "completed"
        await assert_refused(orchestrator, nc, subject(names, "task.cancel"), {"task_id": "t1"},
                             "conflict")
