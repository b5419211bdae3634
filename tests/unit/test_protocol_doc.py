"""docs/protocol.md and docs/schemas cannot drift from the code."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast, get_args

import orjson
import pytest

from domain.agents.agent import Agent
from domain.agents.commands import RegisterAgent
from domain.errors import CommandRefused, ErrorCode
from domain.protocol.replies import (
    AgentStatus,
    AgentStatusReply,
    AssignmentsReply,
    ErrorCodeName,
    ErrorReply,
    TaskReply,
    TaskStatus,
)
from domain.tasks import task as task_statuses
from domain.tasks.commands import AgentAssignments, Assignment
from domain.tasks.task import Task
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.repository import Repository
from infra.names import AGENT_COMMANDS, CATALOG_QUERY, CLIENT_COMMANDS, Header, Names
from projections.access import Access
from projections.board.tasks import STATUS_BY_EVENT, TaskBoard
from services.auth.gate import AccessGate
from services.auth.permissions import RoleName, permissions
from services.commands import registry, task_moves
from services.commands import tasks as task_service
from services.commands.service import parse
from services.commands.table import command_table
from services.execute import Outcome
from services.schemas import PROTOCOL_MODELS, schema_documents


async def nowhere(subject: str, data: bytes) -> None:
    """A publish that goes nowhere: the reply is what is checked."""

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMAS = DOCS / "schemas"
REGENERATE = "docs/schemas is out of date with the protocol models: run `make schemas`"
T0 = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
COMMANDS = (*AGENT_COMMANDS, *CLIENT_COMMANDS, CATALOG_QUERY)
# The subjects as the doc writes them: the sender as a placeholder.
AGENT_ID, IDENTITY = "<agent_id>", "<identity>"


class _Handlers:
    """Stands in for the services: the command table is read for its names and models."""

    def __getattr__(self, name: str) -> Any:
        return None


_stub = cast(Any, _Handlers())
MODELS = {c.name: c.model
          for c in command_table(_stub, _stub, _stub, _stub, _stub, AccessGate(Access()),
                            _stub, limits=_stub)}


def documented_subject(command: str) -> str:
    names = Names()
    if command in AGENT_COMMANDS:
        return names.agent_command(AGENT_ID, command)
    if command in CLIENT_COMMANDS:
        return names.client_command(command, IDENTITY)
    return names.command(command)


def request_schema(command: str) -> str:
    """An agent's own commands' schemas keep their older names (agent.register.request)."""
    name = f"{command}.request"
    return name if name in PROTOCOL_MODELS else f"agent.{name}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.fixture(scope="module")
def protocol() -> str:
    return (DOCS / "protocol.md").read_text()


class TestSchemas:
    @pytest.mark.parametrize("name", sorted(schema_documents()))
    def test_each_schema_is_written_as_generated(self, name: str) -> None:
        path = SCHEMAS / name
        assert path.is_file(), f"{name} is missing; {REGENERATE}"
        assert path.read_bytes() == schema_documents()[name], f"{name} differs; {REGENERATE}"

    def test_no_schema_is_left_over(self) -> None:
        stale = {p.name for p in SCHEMAS.glob("*.json")} - set(schema_documents())
        assert not stale, f"{sorted(stale)} no longer generated: delete them and {REGENERATE}"

    def test_the_constants_are_the_command_table(self) -> None:
        assert set(MODELS) == set(COMMANDS)

    @pytest.mark.parametrize("command", COMMANDS)
    def test_each_command_has_the_request_schema_of_its_model(self, command: str) -> None:
        assert PROTOCOL_MODELS.get(request_schema(command)) is MODELS[command]


class TestProtocolDoc:
    @pytest.mark.parametrize("command", COMMANDS)
    def test_documents_each_command_subject(self, protocol: str, command: str) -> None:
        """`orch.agent.<agent_id>.<command>`, `orch.<command>.<identity>`, or the catalog
        query's: in the subject table, and a section of its own."""
        subject = documented_subject(command)
        assert f"| `{subject}` |" in protocol
        assert f"\n### `{subject}`\n" in protocol

    @pytest.mark.parametrize("command", COMMANDS)
    def test_documents_each_request_schema_beside_its_subject(self, protocol: str,
                                                              command: str) -> None:
        row = f"| `{documented_subject(command)}` request | `{MODELS[command].__name__}` |"
        assert f"{row} [{request_schema(command)}.json](schemas/{request_schema(command)}.json) |" \
            in protocol

    @pytest.mark.parametrize("command", COMMANDS)
    def test_documents_each_micro_endpoint(self, protocol: str, command: str) -> None:
        assert f"`{command.replace('.', '_')}`" in protocol

    def test_no_subject_of_the_old_protocol_is_left(self, protocol: str) -> None:
        """Before subjects named their senders: orch.agent.register, orch.task.accept..."""
        old = {f"`orch.{c}`" for c in COMMANDS if c != CATALOG_QUERY} | {
            f"`orch.agent.{c}`" for c in (*AGENT_COMMANDS, "drain")}
        assert {s for s in old if s in protocol} == set()

    def test_documents_the_inbox_prefix(self, protocol: str) -> None:
        assert f"`{Names().inbox_prefix(IDENTITY)}`" in protocol
        assert f"`{Names().inbox_prefix(AGENT_ID)}`" in protocol

    def test_documents_the_unauthorized_rule(self, protocol: str) -> None:
        [row] = [line for line in protocol.splitlines() if line.startswith("| `unauthorized` |")]
        assert "another agent" in row

    def test_documents_the_identity_of_events(self, protocol: str) -> None:
        assert f"| `{Header.IDENTITY}` |" in protocol

    def test_every_link_within_the_doc_has_its_heading(self, protocol: str) -> None:
        headings = {slug(line.lstrip("#")) for line in protocol.splitlines()
                    if line.startswith("#")}
        links = set(re.findall(r"\]\(#([^)]+)\)", protocol))
        assert links - headings == set()

    @pytest.mark.parametrize("role", list(RoleName))
    def test_the_roles_table_is_the_permissions(self, protocol: str, role: RoleName) -> None:
        """What each role may publish and subscribe, as services/auth/permissions.py
        grants it (besides every identity's own inbox)."""
        names, identity = Names(), "<id>"
        inbox = permissions(names, identity, set())
        assert inbox.sub_allow == {f"{names.inbox_prefix(identity)}.>"}
        assert f"`{names.inbox_prefix(identity)}.>`" in protocol
        grant = permissions(names, identity, {role})
        [row] = [line for line in protocol.splitlines() if line.startswith(f"| `{role}` |")]
        cells = [set(re.findall(r"`([^`]+)`", cell)) for cell in row.split("|")[2:5]]
        assert cells == [grant.pub_allow, grant.pub_deny, grant.sub_allow - inbox.sub_allow]

    @pytest.mark.parametrize("name", sorted(schema_documents()))
    def test_links_each_schema(self, protocol: str, name: str) -> None:
        assert f"(schemas/{name})" in protocol

    def test_links_no_schema_that_is_not_generated(self, protocol: str) -> None:
        linked = set(re.findall(r"\(schemas/([^)]+)\)", protocol))
        assert linked - set(schema_documents()) == set()

    @pytest.mark.parametrize("status", get_args(TaskStatus))
    def test_documents_each_task_status(self, protocol: str, status: str) -> None:
        assert f"| `{status}` |" in protocol

    @pytest.mark.parametrize("event", sorted({*STATUS_BY_EVENT, "StaleResultRefused"}))
    def test_documents_each_task_event(self, protocol: str, event: str) -> None:
        assert f"| `{event}` |" in protocol

    @pytest.mark.parametrize("code", list(ErrorCode))
    def test_documents_each_error_code(self, protocol: str, code: ErrorCode) -> None:
        assert f"| `{code}` |" in protocol


class TestReplyModelsMatchTheCode:
    """The reply models are descriptions: what the handlers build must fit them."""

    def test_task_statuses_are_the_aggregates(self) -> None:
        domain = set(task_statuses.TaskStatus)
        assert set(get_args(TaskStatus)) == domain
        # Every status an event sets, and `scheduled`, which a Submitted with a
        # not_before sets (projections/board/tasks.py).
        assert set(STATUS_BY_EVENT.values()) | {task_statuses.TaskStatus.SCHEDULED} == domain

    def test_task_statuses_go_out_as_plain_strings(self) -> None:
        assert {type(status) for status in get_args(TaskStatus)} == {str}
        assert {type(status) for status in STATUS_BY_EVENT.values()} == {str}
        task = Task("t-1", "echo", None, [], 0, 3, 300.0, "fp")
        task.assign("a1", 1, task_service.new_token(), "least_loaded", [], 0.0)
        task.cancel("no longer needed")
        reply = task_service._reply(Outcome(task, [1]), status=task.status)
        wire = b'{"ok":true,"task_id":"t-1","status":"cancelled","position":1}'
        assert orjson.dumps(reply) == wire
        assert TaskReply.model_validate(reply).model_dump_json(exclude_none=True).encode() == wire
        cancelled = create_mapper().to_stored_event(task.collect_events()[-1])
        assert b'"assigned"' in cancelled.state  # the status it was cancelled in

    def test_error_codes_are_the_domains(self) -> None:
        assert set(get_args(ErrorCodeName)) == {str(code) for code in ErrorCode}

    def test_agent_statuses_are_the_aggregates(self) -> None:
        agent = Agent("a1", [], 1, {}, [])
        seen = {agent.status}
        agent.drain()
        seen.add(agent.status)
        agent.mark_unresponsive(1, "accept_timeout", ["t1", "t2"], 2, 30.0, 100.0)
        seen.add(agent.status)
        agent.suspect(1, 3.0, 3.0, 0)
        seen.add(agent.status)
        agent.declare_dead(1, 5.0, 5.0, 0)
        seen.add(agent.status)
        agent.deregister(1)
        seen.add(agent.status)
        assert seen == set(get_args(AgentStatus))

    @pytest.mark.parametrize("positions", [[7, 8], []])
    def test_task_reply(self, positions: list[int]) -> None:
        task = Task("t-1", "echo", None, [], 0, 3, 300.0, "fp")
        reply = task_service._reply(Outcome(task, positions), status=task.status)
        parsed = TaskReply.model_validate(reply)
        assert parsed.position == (positions[-1] if positions else None)
        assert ("position" in reply) == bool(positions)

    @pytest.mark.parametrize("positions", [[3], []])
    def test_agent_status_reply(self, positions: list[int]) -> None:
        agent = Agent("a1", [], 1, {}, [])
        reply = registry._reply(Outcome(agent, positions), status=agent.status)
        AgentStatusReply.model_validate(reply)

    def test_assignment_message(self) -> None:
        task = Task("t-1", "echo", {"x": 1}, ["gpu"], 0, 3, 300.0, "fp")
        task.assign("a1", 1, task_service.new_token(), "least_loaded", [], 0.0)
        message = Assignment.model_validate_json(task_moves.assignment_message(task))
        assert (message.attempt, message.token) == (1, task.token)

    async def test_assignments_reply(self) -> None:
        task = Task("t-1", "echo", {"x": 1}, [], 0, 3, 300.0, "fp")
        task.assign("a1", 1, task_service.new_token(), "least_loaded", [], 0.0)
        board = TaskBoard()
        for position, domain_event in enumerate(task.collect_events(), start=1):
            board.apply(FakeLogEvent(position, "task", task.id, type(domain_event).__name__,
                                     dict(vars(domain_event))))
        service = task_service.TaskService(
            Repository(InMemoryEventLog(Names(), create_mapper()), "task"), Names(), board,
            nowhere, 1.0, 60.0)
        reply = await service.assignments(AgentAssignments(agent_id="a1"))
        parsed = AssignmentsReply.model_validate(reply)
        assert [a.token for a in parsed.assignments] == [task.token]

    def test_error_reply_of_a_validation_failure(self) -> None:
        with pytest.raises(CommandRefused) as refused:
            parse(RegisterAgent, b'{"agent_id": "a1", "capacity": "5", "x": 1}')
        reply = ErrorReply.model_validate(refused.value.to_reply())
        assert reply.error.code == "invalid_request"
        assert {d.field for d in reply.error.details} == {"capacity", "x"}

    def test_error_reply_of_a_stale_token(self) -> None:
        stale = task_statuses.StaleToken("t-1", "the task is completed")
        assert ErrorReply.model_validate(stale.to_reply()).error.code == "stale_token"


@dataclass(frozen=True)
class FakeLogEvent:
    """The fields of projections.log_event.LogEvent a projection reads."""

    position: int
    kind: str
    aggregate_id: str
    name: str
    state: dict[str, Any] = field(default_factory=dict)
    event_id: str = "ev"
    recorded_at: datetime = T0

    def data(self) -> dict[str, Any]:
        return {k: v for k, v in self.state.items()
                if k not in ("originator_id", "originator_topic", "originator_version")}


async def test_catalog_replies_and_changes_fit_their_models() -> None:
    """What catalog.query answers and the change feed publishes fits the documented models."""
    from dataclasses import dataclass
    from datetime import UTC, datetime

    import orjson

    from domain.agents.commands import CatalogQuery
    from domain.protocol.replies import CatalogChange, CatalogReply
    from infra.names import Names
    from projections.fleet.catalog import Catalog
    from projections.position import Position
    from services.commands.catalog import CatalogQueries, ChangeFeed

    @dataclass(frozen=True)
    class Registered:
        position: int = 1
        kind: str = "agent"
        aggregate_id: str = "a1"
        name: str = "Registered"
        event_id: str = "e1"
        recorded_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)

        def data(self) -> dict[str, object]:
            return {"labels": {"zone": "eu"}, "services": [
                {"name": "web", "address": "h", "port": 80, "tags": ["v1"], "meta": {}}]}

    catalog = Catalog()
    catalog.apply(Registered())
    position = Position()
    position.advance(1)
    reply = await CatalogQueries(catalog, position).query(CatalogQuery(service="web"))
    assert CatalogReply.model_validate(reply).instances[0].agent_id == "a1"

    published: list[bytes] = []

    async def publish(subject: str, body: bytes) -> None:
        published.append(body)

    await ChangeFeed(catalog, Names("orch"), publish, lambda: True).on_event(Registered())
    [change] = published
    assert CatalogChange.model_validate(orjson.loads(change)).service == "web"
