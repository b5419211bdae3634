"""Strict parsing of agent commands: every malformed payload is refused with a code."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from domain.agents.commands import (
    DeregisterAgent,
    DrainAgent,
    Heartbeat,
    RegisterAgent,
    ServiceDeclaration,
)
from domain.errors import CommandRefused, ErrorCode
from domain.fields import MAX_COMMAND_BYTES
from services.commands.service import parse


def payload(body: Any) -> bytes:
    return orjson.dumps(body)


def refusal(model: type[BaseModel], data: bytes) -> CommandRefused:
    with pytest.raises(CommandRefused) as excinfo:
        parse(model, data)
    return excinfo.value


def invalid(model: type[BaseModel], data: bytes) -> list[dict[str, Any]]:
    """Parse, expect INVALID_REQUEST, and return its details."""
    refused = refusal(model, data)
    assert refused.code is ErrorCode.INVALID_REQUEST
    assert refused.message == f"invalid {model.__name__}"
    assert refused.details, "a refusal should say what is wrong"
    return refused.details


def fields_of(details: list[dict[str, Any]]) -> set[str]:
    return {d["field"] for d in details}


BAD_AGENT_IDS = [
    pytest.param("a.b", id="dot"),
    pytest.param("a*", id="star"),
    pytest.param("a>", id="gt"),
    pytest.param(">", id="only-gt"),
    pytest.param("a b", id="space"),
    pytest.param(" a", id="leading-space"),
    pytest.param("", id="empty"),
    pytest.param("a\n", id="trailing-newline"),
    pytest.param("a/b", id="slash"),
    pytest.param("agént", id="non-ascii"),
    pytest.param("a" * 65, id="65-chars"),
    pytest.param("a" * 200, id="200-chars"),
]


class TestParse:
    def test_returns_the_validated_model(self) -> None:
        parsed = parse(RegisterAgent, payload({"agent_id": "agent-1", "capacity": 3}))

        assert isinstance(parsed, RegisterAgent)
        assert parsed.agent_id == "agent-1"
        assert parsed.capacity == 3

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(b"{", id="unterminated"),
            pytest.param(b"", id="empty"),
            pytest.param(b"not json", id="text"),
            pytest.param(b'{"agent_id": "a",}', id="trailing-comma"),
            pytest.param(b"\xff\xfe", id="not-utf8"),
            pytest.param(b'{"agent_id": "a", "x": NaN}', id="nan"),
            pytest.param(b'{"agent_id": "a", "x": -Infinity}', id="infinity"),
            pytest.param(b'{"agent_id": "a\xed\xa0\x80"}', id="lone-surrogate"),
        ],
    )
    def test_refuses_malformed_json(self, data: bytes) -> None:
        details = invalid(RegisterAgent, data)

        assert details[0]["type"] == "json_invalid"

    @pytest.mark.parametrize("data", [b"[]", b'"agent-1"', b"null", b"42"])
    def test_refuses_json_that_is_not_an_object(self, data: bytes) -> None:
        details = invalid(RegisterAgent, data)

        assert details[0]["type"] == "model_type"

    def test_details_name_the_field_the_problem_and_its_type(self) -> None:
        details = invalid(RegisterAgent, payload({"agent_id": "a", "capacity": "5"}))

        assert details == [
            {"field": "capacity", "problem": "Input should be a valid integer", "type": "int_type"}
        ]

    def test_details_list_every_problem(self) -> None:
        details = invalid(
            RegisterAgent, payload({"agent_id": "a.b", "capacity": -1, "colour": "red"})
        )

        assert fields_of(details) == {"agent_id", "capacity", "colour"}

    def test_details_are_capped_at_twenty(self) -> None:
        body = {"agent_id": "a", **{f"extra_{i}": i for i in range(30)}}

        details = invalid(RegisterAgent, payload(body))

        assert len(details) == 20

    def test_refusal_becomes_a_coded_reply(self) -> None:
        refused = refusal(DrainAgent, payload({}))

        reply = refused.to_reply()

        assert reply["ok"] is False
        assert reply["error"]["code"] == "invalid_request"
        assert reply["error"]["details"][0]["field"] == "agent_id"
        assert reply["error"]["details"][0]["type"] == "missing"


class TestPayloadSize:
    def test_refuses_a_payload_over_the_limit(self) -> None:
        data = payload({"agent_id": "a", "labels": {"k": "v" * MAX_COMMAND_BYTES}})
        assert len(data) > MAX_COMMAND_BYTES

        refused = refusal(RegisterAgent, data)

        assert refused.code is ErrorCode.PAYLOAD_TOO_LARGE
        assert str(MAX_COMMAND_BYTES) in refused.message

    def test_size_is_checked_before_the_json(self) -> None:
        refused = refusal(RegisterAgent, b"x" * (MAX_COMMAND_BYTES + 1))

        assert refused.code is ErrorCode.PAYLOAD_TOO_LARGE

    def test_a_payload_of_exactly_the_limit_is_parsed(self) -> None:
        body = payload({"agent_id": "agent-1"})
        data = body + b" " * (MAX_COMMAND_BYTES - len(body))
        assert len(data) == MAX_COMMAND_BYTES

        parsed = parse(RegisterAgent, data)

        assert isinstance(parsed, RegisterAgent)
        assert parsed.agent_id == "agent-1"


class TestRegisterAgent:
    def test_defaults_for_an_id_alone(self) -> None:
        parsed = parse(RegisterAgent, payload({"agent_id": "agent-1"}))

        assert isinstance(parsed, RegisterAgent)
        assert parsed.capabilities == []
        assert parsed.capacity == 1
        assert parsed.labels == {}
        assert parsed.services == []

    def test_accepts_a_full_declaration(self) -> None:
        body: dict[str, Any] = {
            "agent_id": "Agent_01-x",
            "capabilities": ["gpu:a100", "lang/python", "x.y"],
            "capacity": 100_000,
            "labels": {"team/name": "infra", "zone": ""},
            "services": [
                {"name": "web", "address": "10.0.0.1", "port": 0, "tags": ["http"],
                 "meta": {"version": "1"}},
                {"name": "grpc", "address": "host.example", "port": 65535},
            ],
            "kinds": ["resize", "image.thumbnail:v2"],
            "replace": True,
            "instance_id": "0f3c9a",
            "progress_every_s": 2.5,
        }

        parsed = parse(RegisterAgent, payload(body))

        assert isinstance(parsed, RegisterAgent)
        assert parsed.services[1] == ServiceDeclaration(
            name="grpc", address="host.example", port=65535
        )
        assert parsed.model_dump() == {
            **body,
            "services": [body["services"][0], {**body["services"][1], "tags": [], "meta": {}}],
        }

    def test_a_64_character_id_is_accepted(self) -> None:
        agent_id = "a" * 63 + "Z"

        parsed = parse(RegisterAgent, payload({"agent_id": agent_id}))

        assert isinstance(parsed, RegisterAgent)
        assert parsed.agent_id == agent_id

    @pytest.mark.parametrize("agent_id", BAD_AGENT_IDS)
    def test_refuses_an_id_that_is_not_one_subject_token(self, agent_id: str) -> None:
        details = invalid(RegisterAgent, payload({"agent_id": agent_id}))

        assert details[0]["field"] == "agent_id"
        assert details[0]["type"] == "string_pattern_mismatch"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            pytest.param("capacity", "5", id="capacity-as-string"),
            pytest.param("capacity", 5.0, id="capacity-as-float"),
            pytest.param("capacity", True, id="capacity-as-bool"),
            pytest.param("capacity", None, id="capacity-null"),
            pytest.param("agent_id", 7, id="id-as-number"),
            pytest.param("capabilities", "cpu", id="capabilities-as-string"),
            pytest.param("labels", [["k", "v"]], id="labels-as-pairs"),
            pytest.param("labels", {"k": 1}, id="label-value-as-number"),
            pytest.param("services", {"name": "web"}, id="services-as-object"),
        ],
    )
    def test_refuses_wrong_types_without_coercion(self, field: str, value: Any) -> None:
        details = invalid(RegisterAgent, payload({"agent_id": "agent-1", field: value}))

        assert fields_of(details) <= {field} | {f"{field}.{i}" for i in ("0", "k", "0.name")}
        assert all(d["field"].startswith(field) for d in details)

    def test_refuses_unknown_fields(self) -> None:
        details = invalid(RegisterAgent, payload({"agent_id": "agent-1", "capcity": 2}))

        assert details == [
            {"field": "capcity", "problem": "Extra inputs are not permitted",
             "type": "extra_forbidden"}
        ]

    def test_refuses_a_missing_id(self) -> None:
        details = invalid(RegisterAgent, payload({"capacity": 2}))

        assert details[0]["field"] == "agent_id"
        assert details[0]["type"] == "missing"

    @pytest.mark.parametrize("capacity", [-1, 100_001])
    def test_refuses_a_capacity_out_of_range(self, capacity: int) -> None:
        details = invalid(RegisterAgent, payload({"agent_id": "a", "capacity": capacity}))

        assert fields_of(details) == {"capacity"}

    @pytest.mark.parametrize(
        "capability",
        [pytest.param("", id="empty"), pytest.param("a b", id="space"),
         pytest.param("a*", id="star"), pytest.param("c" * 65, id="65-chars")],
    )
    def test_refuses_a_bad_capability(self, capability: str) -> None:
        details = invalid(RegisterAgent, payload({"agent_id": "a", "capabilities": [capability]}))

        assert fields_of(details) == {"capabilities.0"}

    def test_refuses_more_than_64_capabilities(self) -> None:
        capabilities = [f"c{i}" for i in range(65)]

        details = invalid(RegisterAgent, payload({"agent_id": "a", "capabilities": capabilities}))

        assert fields_of(details) == {"capabilities"}

    @pytest.mark.parametrize(
        "labels",
        [
            pytest.param({"": "v"}, id="empty-key"),
            pytest.param({"a b": "v"}, id="key-with-space"),
            pytest.param({"k" * 64: "v"}, id="64-char-key"),
            pytest.param({"k": "v" * 257}, id="257-char-value"),
        ],
    )
    def test_refuses_bad_labels(self, labels: dict[str, str]) -> None:
        details = invalid(RegisterAgent, payload({"agent_id": "a", "labels": labels}))

        assert all(d["field"].startswith("labels") for d in details)


class TestServiceDeclarations:
    def service(self, **overrides: Any) -> dict[str, Any]:
        return {"name": "web", "address": "10.0.0.1", "port": 8080, **overrides}

    @pytest.mark.parametrize("port", [-1, 65536, 100_000])
    def test_refuses_a_port_out_of_range(self, port: int) -> None:
        body = {"agent_id": "a", "services": [self.service(port=port)]}

        details = invalid(RegisterAgent, payload(body))

        assert fields_of(details) == {"services.0.port"}

    @pytest.mark.parametrize("port", [0, 1, 65535])
    def test_accepts_every_port_in_range(self, port: int) -> None:
        body = {"agent_id": "a", "services": [self.service(port=port)]}

        parsed = parse(RegisterAgent, payload(body))

        assert isinstance(parsed, RegisterAgent)
        assert parsed.services[0].port == port

    def test_refuses_a_port_as_string(self) -> None:
        body = {"agent_id": "a", "services": [self.service(port="8080")]}

        assert fields_of(invalid(RegisterAgent, payload(body))) == {"services.0.port"}

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            pytest.param({"name": "web.api"}, "services.0.name", id="name-with-dot"),
            pytest.param({"address": ""}, "services.0.address", id="empty-address"),
            pytest.param({"address": "h" * 254}, "services.0.address", id="254-char-address"),
            pytest.param({"tags": [""]}, "services.0.tags.0", id="empty-tag"),
            pytest.param({"weight": 3}, "services.0.weight", id="unknown-field"),
        ],
    )
    def test_refuses_bad_service_fields(self, overrides: dict[str, Any], field: str) -> None:
        body = {"agent_id": "a", "services": [self.service(**overrides)]}

        assert field in fields_of(invalid(RegisterAgent, payload(body)))

    def test_refuses_a_service_without_a_port(self) -> None:
        service = self.service()
        del service["port"]

        details = invalid(RegisterAgent, payload({"agent_id": "a", "services": [service]}))

        assert details[0]["field"] == "services.0.port"
        assert details[0]["type"] == "missing"


class TestDeregisterAgent:
    def test_accepts_an_id_and_incarnation(self) -> None:
        parsed = parse(DeregisterAgent, payload({"agent_id": "a", "incarnation": 3}))

        assert parsed == DeregisterAgent(agent_id="a", incarnation=3)

    @pytest.mark.parametrize("incarnation", [0, -1, "1", 1.5])
    def test_refuses_a_bad_incarnation(self, incarnation: Any) -> None:
        body = {"agent_id": "a", "incarnation": incarnation}

        assert fields_of(invalid(DeregisterAgent, payload(body))) == {"incarnation"}

    def test_refuses_a_missing_incarnation(self) -> None:
        details = invalid(DeregisterAgent, payload({"agent_id": "a"}))

        assert details[0]["field"] == "incarnation"

    @pytest.mark.parametrize("agent_id", BAD_AGENT_IDS)
    def test_refuses_a_bad_id(self, agent_id: str) -> None:
        body = {"agent_id": agent_id, "incarnation": 1}

        assert fields_of(invalid(DeregisterAgent, payload(body))) == {"agent_id"}


class TestDrainAgent:
    def test_accepts_an_id(self) -> None:
        assert parse(DrainAgent, payload({"agent_id": "a-1"})) == DrainAgent(agent_id="a-1")

    @pytest.mark.parametrize("agent_id", BAD_AGENT_IDS)
    def test_refuses_a_bad_id(self, agent_id: str) -> None:
        assert fields_of(invalid(DrainAgent, payload({"agent_id": agent_id}))) == {"agent_id"}

    def test_refuses_unknown_fields(self) -> None:
        body = {"agent_id": "a", "force": True}

        assert fields_of(invalid(DrainAgent, payload(body))) == {"force"}


class TestHeartbeat:
    def test_accepts_a_heartbeat_with_defaults(self) -> None:
        parsed = parse(Heartbeat, payload({"incarnation": 1, "seq": 0}))

        assert parsed == Heartbeat(incarnation=1, seq=0, load=0.0, running=[])

    @pytest.mark.parametrize("load", [0, 0.0, 0.5, 1, 1.0])
    def test_accepts_a_load_between_zero_and_one(self, load: float) -> None:
        parsed = parse(Heartbeat, payload({"incarnation": 1, "seq": 1, "load": load}))

        assert isinstance(parsed, Heartbeat)
        assert parsed.load == load

    @pytest.mark.parametrize("load", [1.0001, 2, -0.1])
    def test_refuses_a_load_outside_zero_to_one(self, load: float) -> None:
        body = {"incarnation": 1, "seq": 1, "load": load}

        assert fields_of(invalid(Heartbeat, payload(body))) == {"load"}

    def test_refuses_a_load_as_string(self) -> None:
        body = {"incarnation": 1, "seq": 1, "load": "0.5"}

        assert fields_of(invalid(Heartbeat, payload(body))) == {"load"}

    def test_refuses_a_negative_seq(self) -> None:
        assert fields_of(invalid(Heartbeat, payload({"incarnation": 1, "seq": -1}))) == {"seq"}

    def test_refuses_a_bad_running_task_id(self) -> None:
        body = {"incarnation": 1, "seq": 1, "running": ["task-1", "task.2"]}

        assert fields_of(invalid(Heartbeat, payload(body))) == {"running.1"}
