"""Every subject, stream, header and endpoint name, derived from the subject prefix.

Nothing else in the project spells a subject: it asks a `Names` for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Header(StrEnum):
    """Message headers the orchestrator reads or writes."""

    MSG_ID = "Nats-Msg-Id"
    EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
    EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
    EVENT_ID = "Orch-Event-Id"
    CAUSATION_ID = "Orch-Causation-Id"
    CORRELATION_ID = "Orch-Correlation-Id"
    TOPIC = "Orch-Topic"
    VERSION = "Orch-Version"


SERVICE_NAME = "orchestrator"

# Command endpoints of the micro service: (endpoint name, subject suffix after the prefix).
AGENT_REGISTER = "agent.register"
AGENT_DEREGISTER = "agent.deregister"
AGENT_DRAIN = "agent.drain"
AGENT_ASSIGNMENTS = "agent.assignments"
AGENT_SERVICES = "agent.services"
CATALOG_QUERY = "catalog.query"
TASK_SUBMIT = "task.submit"
TASK_ACCEPT = "task.accept"
TASK_PROGRESS = "task.progress"
TASK_COMPLETE = "task.complete"
TASK_FAIL = "task.fail"
TASK_CANCEL = "task.cancel"
COMMANDS = (
    AGENT_REGISTER, AGENT_DEREGISTER, AGENT_DRAIN, AGENT_ASSIGNMENTS, AGENT_SERVICES,
    CATALOG_QUERY,
    TASK_SUBMIT, TASK_ACCEPT, TASK_PROGRESS, TASK_COMPLETE, TASK_FAIL, TASK_CANCEL,
)

# Aggregate kinds in event subjects.
AGENT = "agent"
TASK = "task"

# JetStream API error code for a failed expected-last-subject-sequence check.
ERR_WRONG_LAST_SEQUENCE = 10071


@dataclass(frozen=True)
class Names:
    """Names of one orchestrator's subjects and streams, all derived from its prefix."""

    prefix: str = "orch"

    @property
    def events_stream(self) -> str:
        return f"{self._stream_base}_EVENTS"

    @property
    def heartbeats_stream(self) -> str:
        return f"{self._stream_base}_HEARTBEATS"

    @property
    def leader_bucket(self) -> str:
        return f"{self._stream_base}_LEADER"

    @property
    def snapshots_bucket(self) -> str:
        return f"{self._stream_base}_SNAPSHOTS"

    @property
    def _stream_base(self) -> str:
        return self.prefix.upper().replace("-", "_")

    @property
    def events_wildcard(self) -> str:
        return f"{self.prefix}.evt.>"

    @property
    def heartbeats_wildcard(self) -> str:
        return f"{self.prefix}.hb.>"

    def command(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def event(self, kind: str, aggregate_id: str, event_name: str) -> str:
        return f"{self.prefix}.evt.{kind}.{aggregate_id}.{event_name}"

    def aggregate_events(self, kind: str, aggregate_id: str) -> str:
        return f"{self.prefix}.evt.{kind}.{aggregate_id}.>"

    def kind_events(self, kind: str) -> str:
        return f"{self.prefix}.evt.{kind}.>"

    def heartbeat(self, agent_id: str) -> str:
        return f"{self.prefix}.hb.{agent_id}"

    def agent_tasks(self, agent_id: str) -> str:
        return f"{self.prefix}.agent.{agent_id}.tasks"

    def agent_control(self, agent_id: str) -> str:
        return f"{self.prefix}.agent.{agent_id}.control"

    def catalog_changes(self, service: str) -> str:
        return f"{self.prefix}.catalog.changes.{service}"

    def parse_event_subject(self, subject: str) -> tuple[str, str, str]:
        """Split `<prefix>.evt.<kind>.<id>.<Event>` into (kind, id, event name)."""
        tail = subject[len(self.prefix) + len(".evt.") :]
        kind, aggregate_id, event_name = tail.split(".", 2)
        return kind, aggregate_id, event_name

    def agent_id_of_heartbeat(self, subject: str) -> str:
        return subject[len(self.prefix) + len(".hb.") :]
