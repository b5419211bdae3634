"""The agent protocol as an agent speaks it: subject names and message shapes.

The SDK's own copy, so that an agent needs nothing of the server's code. The wire format
is the one docs/protocol.md and docs/schemas describe; tests/unit/test_sdk_protocol.py
holds these names and messages to the server's (infra/names.py, domain/).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

import orjson

# Agent ids, task ids and service names: safe as one token of a NATS subject.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# What an agent sends, on `<prefix>.agent.<agent_id>.<command>`.
REGISTER = "register"
DEREGISTER = "deregister"
ASSIGNMENTS = "assignments"
SERVICES = "services"
TASK_ACCEPT = "task.accept"
TASK_PROGRESS = "task.progress"
TASK_COMPLETE = "task.complete"
TASK_FAIL = "task.fail"

# A read anyone allowed may send, on `<prefix>.catalog.query`.
CATALOG_QUERY = "catalog.query"

INBOX_ROOT = "_INBOX"

ControlType = Literal["reregister", "cancel", "revoke", "deregistered"]
CONTROL_TYPES: tuple[ControlType, ...] = ("reregister", "cancel", "revoke", "deregistered")


@dataclass(frozen=True)
class Subjects:
    """The subjects an agent and a catalog watcher use, derived from the prefix."""

    prefix: str = "orch"

    def command(self, name: str) -> str:
        """A read anyone allowed may send: `<prefix>.<name>` (`catalog.query`)."""
        return f"{self.prefix}.{name}"

    def agent_command(self, agent_id: str, name: str) -> str:
        """What agent `agent_id` sends `name` on: `<prefix>.agent.<id>.<name>`."""
        return f"{self.prefix}.agent.{agent_id}.{name}"

    def heartbeat(self, agent_id: str) -> str:
        return f"{self.prefix}.hb.{agent_id}"

    def agent_tasks(self, agent_id: str) -> str:
        return f"{self.prefix}.agent.{agent_id}.tasks"

    def agent_control(self, agent_id: str) -> str:
        return f"{self.prefix}.agent.{agent_id}.control"

    def catalog_changes(self, service: str) -> str:
        return f"{self.prefix}.catalog.changes.{service}"

    def inbox_prefix(self, identity: str) -> str:
        """The only reply inbox an identity may subscribe to (`_INBOX.<identity>`)."""
        return f"{INBOX_ROOT}.{identity}"

    def agent_stream(self, agent_id: str, task_id: str) -> str:
        """Where an agent writes a task's partial output."""
        return f"{self.prefix}.agent.{agent_id}.stream.{task_id}"


def check_identifier(value: str, what: str) -> str:
    """`value` if it is an identifier (it becomes a subject token); else ValueError."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValueError(f"{what} must match {ID_PATTERN.pattern}, not {value!r}")
    return value


# --- what an agent sends ------------------------------------------------------------


def service_declaration(service: dict[str, Any]) -> dict[str, Any]:
    """A service as `register` carries it: `name`, `address`, `port`, `tags`, `meta`
    (the last two default to empty). The orchestrator checks the values."""
    if not isinstance(service, dict) or not {"name", "address", "port"} <= service.keys():
        raise ValueError(f"a service needs a name, an address and a port: {service!r}")
    return {"name": service["name"], "address": service["address"], "port": service["port"],
            "tags": list(service.get("tags", [])), "meta": dict(service.get("meta", {})),
            **{k: v for k, v in service.items()
               if k not in ("name", "address", "port", "tags", "meta")}}


@dataclass(frozen=True)
class RegisterAgent:
    """The body of `<prefix>.agent.<agent_id>.register` (schema agent.register.request)."""

    agent_id: str
    capabilities: list[str] = field(default_factory=list)
    capacity: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)
    # The task kinds it runs; empty: any kind.
    kinds: list[str] = field(default_factory=list)
    # Take the id over from an incarnation that is still heard from.
    replace: bool = False
    # Random per process start: the same process registering again is not another
    # process claiming a live id.
    instance_id: str | None = None
    # A promise to report progress on a running task at least this often (seconds): a
    # run silent for three times as long (15 s at least) is moved off this agent as stuck.
    progress_every_s: float | None = None

    def __post_init__(self) -> None:
        check_identifier(self.agent_id, "agent_id")
        object.__setattr__(self, "services", [service_declaration(s) for s in self.services])
        if self.progress_every_s is not None and not 0 < self.progress_every_s <= 3600:
            raise ValueError("progress_every_s must be > 0 and <= 3600")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Heartbeat:
    """Published on `<prefix>.hb.<agent_id>` every heartbeat interval (schema heartbeat)."""

    incarnation: int
    seq: int
    load: float = 0.0
    running: list[str] = field(default_factory=list)
    # The `position` of the register reply that gave this incarnation: an orchestrator
    # that has not applied the log that far yet does not take the agent for unknown.
    registered_at: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.load <= 1.0:
            raise ValueError(f"load must be within 0..1, not {self.load!r}")
        object.__setattr__(self, "load", float(self.load))

    def to_json(self) -> bytes:
        body = asdict(self)
        if self.registered_at is None:  # left out, as an agent before the field sends it
            del body["registered_at"]
        return orjson.dumps(body)


# --- what an agent receives ---------------------------------------------------------
# Read leniently: a field the SDK does not know is ignored; a missing or mistyped one
# makes the message unreadable (ValueError).


def _object(data: bytes | str | dict[str, Any], what: str) -> dict[str, Any]:
    body = orjson.loads(data) if isinstance(data, bytes | str) else data
    if not isinstance(body, dict):
        raise ValueError(f"{what} is not a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str,
           optional: bool = False) -> Any:
    if name not in body:
        if optional:
            return None
        raise ValueError(f"{what} lacks {name}")
    value = body[name]
    if optional and value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ValueError(f"{what}.{name} has the wrong type")
    if not isinstance(value, kind):
        raise ValueError(f"{what}.{name} has the wrong type")
    return value


@dataclass(frozen=True)
class Assignment:
    """Published on `<prefix>.agent.<agent_id>.tasks` (schema assignment)."""

    task_id: str
    kind: str
    requires: list[str]
    attempt: int
    token: str
    timeout_s: float
    payload: Any = None

    @classmethod
    def parse(cls, data: bytes | str | dict[str, Any]) -> Assignment:
        body = _object(data, "assignment")
        requires = _field(body, "requires", list, "assignment")
        if not all(isinstance(r, str) for r in requires):
            raise ValueError("assignment.requires has the wrong type")
        return cls(
            task_id=_field(body, "task_id", str, "assignment"),
            kind=_field(body, "kind", str, "assignment"),
            requires=requires,
            attempt=_field(body, "attempt", int, "assignment"),
            token=_field(body, "token", str, "assignment"),
            timeout_s=float(_field(body, "timeout_s", (int, float), "assignment")),
            payload=body.get("payload"),
        )


@dataclass(frozen=True)
class ControlMessage:
    """Sent by the orchestrator on `<prefix>.agent.<agent_id>.control` (schema control)."""

    type: ControlType
    reason: str
    incarnation: int | None = None
    task_id: str | None = None
    # A revoke of an assignment that moved names its token: a newer one is kept working.
    token: str | None = None

    @classmethod
    def parse(cls, data: bytes | str | dict[str, Any]) -> ControlMessage:
        body = _object(data, "control message")
        kind = _field(body, "type", str, "control message")
        if kind not in CONTROL_TYPES:
            raise ValueError(f"unknown control message type {kind!r}")
        return cls(
            type=cast(ControlType, kind),
            reason=_field(body, "reason", str, "control message"),
            incarnation=_field(body, "incarnation", int, "control message", optional=True),
            task_id=_field(body, "task_id", str, "control message", optional=True),
            token=_field(body, "token", str, "control message", optional=True),
        )


@dataclass(frozen=True)
class CatalogChange:
    """Published on `<prefix>.catalog.changes.<service>` (schema catalog.change): all of
    the service's instances after the change at log `position`."""

    service: str
    position: int
    event: str
    agent_id: str
    instances: list[dict[str, Any]]

    @classmethod
    def parse(cls, data: bytes | str | dict[str, Any]) -> CatalogChange:
        body = _object(data, "catalog change")
        instances = _field(body, "instances", list, "catalog change")
        if not all(isinstance(i, dict) for i in instances):
            raise ValueError("catalog change.instances has the wrong type")
        return cls(
            service=_field(body, "service", str, "catalog change"),
            position=_field(body, "position", int, "catalog change"),
            event=_field(body, "event", str, "catalog change"),
            agent_id=_field(body, "agent_id", str, "catalog change"),
            instances=instances,
        )
