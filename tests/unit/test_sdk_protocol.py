"""The SDK's own copy of the protocol (sdk/protocol.py) says what the server's does: the
same subjects, and messages that the server's models and docs/schemas accept as they are,
byte for byte where the SDK writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest

from domain.agents import commands as server
from domain.protocol.replies import CatalogChange as ServerCatalogChange
from domain.tasks.commands import Assignment as ServerAssignment
from infra import names as server_names
from infra.names import Names
from sdk import protocol
from sdk.protocol import (
    Assignment,
    CatalogChange,
    ControlMessage,
    Heartbeat,
    RegisterAgent,
    Subjects,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def schema_check(name: str, message: Any) -> None:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    jsonschema_rs.validate(schema, message)


class TestSubjects:
    @pytest.mark.parametrize("prefix", ["orch", "t0a1b2c3", "my-orch"])
    def test_every_subject_is_the_servers(self, prefix: str) -> None:
        ours, theirs = Subjects(prefix), Names(prefix)

        assert ours.heartbeat("a1") == theirs.heartbeat("a1")
        assert ours.agent_tasks("a1") == theirs.agent_tasks("a1")
        assert ours.agent_control("a1") == theirs.agent_control("a1")
        assert ours.catalog_changes("web") == theirs.catalog_changes("web")
        assert ours.inbox_prefix("a1") == theirs.inbox_prefix("a1")
        assert ours.command(protocol.CATALOG_QUERY) == theirs.command(server_names.CATALOG_QUERY)
        for command in server_names.AGENT_COMMANDS:
            assert ours.agent_command("a1", command) == theirs.agent_command("a1", command)

    def test_the_command_names_are_the_servers(self) -> None:
        ours = (protocol.REGISTER, protocol.DEREGISTER, protocol.ASSIGNMENTS, protocol.SERVICES,
                protocol.TASK_ACCEPT, protocol.TASK_PROGRESS, protocol.TASK_COMPLETE,
                protocol.TASK_FAIL)

        assert ours == server_names.AGENT_COMMANDS
        assert protocol.CATALOG_QUERY == server_names.CATALOG_QUERY
        assert protocol.INBOX_ROOT == server_names.INBOX_ROOT


SERVICE = {"name": "web", "address": "10.0.0.1", "port": 80}


class TestWhatTheSdkSends:
    @pytest.mark.parametrize("registration", [
        RegisterAgent("a1"),
        RegisterAgent("a1", ["gpu", "cpu"], 3, {"zone": "eu"},
                      [SERVICE, {**SERVICE, "name": "db", "tags": ["primary"],
                                 "meta": {"v": "2"}}],
                      ["resize"], replace=True, instance_id="0123abcd",
                      progress_every_s=2.5),
    ])
    def test_a_registration_is_what_the_server_model_makes_of_it(
        self, registration: RegisterAgent
    ) -> None:
        body = registration.to_dict()

        assert server.RegisterAgent.model_validate(body).model_dump() == body
        assert list(body) == list(server.RegisterAgent.model_fields)  # same order on the wire
        schema_check("agent.register.request", body)

    @pytest.mark.parametrize("beat", [
        Heartbeat(1, 0), Heartbeat(7, 42, 0.5, ["t1", "t2"]), Heartbeat(2, 3, 1),
        Heartbeat(2, 3, 0.5, [], registered_at=17),
    ])
    def test_a_heartbeat_is_byte_for_byte_the_server_models(self, beat: Heartbeat) -> None:
        wire = beat.to_json()

        expected = server.Heartbeat(incarnation=beat.incarnation, seq=beat.seq,
                                    load=beat.load, running=beat.running,
                                    registered_at=beat.registered_at)
        # Without a registration position the field is left out, as before it existed.
        assert wire == expected.model_dump_json(exclude_none=True).encode()
        assert server.Heartbeat.model_validate_json(wire) == expected
        schema_check("heartbeat", orjson.loads(wire))

    @pytest.mark.parametrize("agent_id", ["a.b", "a*", "", "x" * 65, "a b"])
    def test_an_agent_id_that_is_no_subject_token_is_refused_at_once(self, agent_id) -> None:
        with pytest.raises(ValueError, match="agent_id"):
            RegisterAgent(agent_id)

    @pytest.mark.parametrize("load", [-0.1, 1.5, float("nan")])
    def test_a_load_outside_zero_to_one_is_refused(self, load: float) -> None:
        with pytest.raises(ValueError, match="load"):
            Heartbeat(1, 1, load)

    def test_a_service_without_an_address_is_refused(self) -> None:
        with pytest.raises(ValueError, match="address"):
            RegisterAgent("a1", services=[{"name": "web", "port": 80}])


class TestWhatTheSdkReads:
    def test_an_assignment_as_the_server_writes_it(self) -> None:
        sent = ServerAssignment(task_id="t1", kind="resize", payload={"image": "cat.png"},
                                requires=["gpu"], attempt=2, token="tok-1", timeout_s=30.0)
        wire = sent.model_dump_json().encode()
        schema_check("assignment", orjson.loads(wire))

        read = Assignment.parse(wire)

        assert read == Assignment(task_id="t1", kind="resize", requires=["gpu"], attempt=2,
                                  token="tok-1", timeout_s=30.0,
                                  payload={"image": "cat.png"})
        assert Assignment.parse(orjson.loads(wire)) == read  # as `assignments` replies list it

    @pytest.mark.parametrize("sent", [
        server.ControlMessage(type="reregister", reason="unknown incarnation", incarnation=3),
        server.ControlMessage(type="cancel", reason="cancelled", task_id="t1"),
        server.ControlMessage(type="revoke", reason="reassigned", task_id="t2"),
        server.ControlMessage(type="revoke", reason="moved: agent declared dead",
                              task_id="t3", token="0123456789abcdef"),
        server.ControlMessage(type="deregistered", reason="removed by operator",
                              incarnation=2),
    ])
    def test_a_control_message_as_the_server_writes_it(
        self, sent: server.ControlMessage
    ) -> None:
        read = ControlMessage.parse(sent.model_dump_json().encode())

        assert (read.type, read.reason, read.incarnation, read.task_id, read.token) == (
            sent.type, sent.reason, sent.incarnation, sent.task_id, sent.token)

    def test_a_catalog_change_as_the_server_writes_it(self) -> None:
        instance = {"service": "web", "agent_id": "a1", "address": "h", "port": 80,
                    "tags": [], "meta": {}, "labels": {}, "status": "healthy",
                    "healthy": True}
        body = {"service": "web", "position": 9, "event": "Registered", "agent_id": "a1",
                "instances": [instance]}
        ServerCatalogChange.model_validate(body)
        schema_check("catalog.change", body)

        read = CatalogChange.parse(orjson.dumps(body))

        assert (read.service, read.position, read.instances) == ("web", 9, [instance])

    @pytest.mark.parametrize("wire", [
        b"not json", b"[]", b"{}",
        b'{"task_id": "t1", "kind": "k", "requires": [], "attempt": "1", "token": "x",'
        b' "timeout_s": 1}',
        b'{"task_id": "t1", "kind": "k", "requires": [1], "attempt": 1, "token": "x",'
        b' "timeout_s": 1}',
        b'{"task_id": "t1", "kind": "k", "requires": [], "attempt": true, "token": "x",'
        b' "timeout_s": 1}',
    ])
    def test_an_unreadable_assignment_is_a_value_error(self, wire: bytes) -> None:
        with pytest.raises(ValueError):
            Assignment.parse(wire)

    @pytest.mark.parametrize("wire", [
        b'{"type": "explode", "reason": "r"}', b'{"type": "cancel"}',
        b'{"type": "cancel", "reason": "r", "incarnation": "2"}',
    ])
    def test_an_unreadable_control_message_is_a_value_error(self, wire: bytes) -> None:
        with pytest.raises(ValueError):
            ControlMessage.parse(wire)

    def test_a_field_it_does_not_know_is_ignored(self) -> None:
        read = ControlMessage.parse(b'{"type": "cancel", "reason": "r", "task_id": "t1",'
                                    b' "since": 3}')

        assert read.task_id == "t1"
