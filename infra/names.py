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
    # An event's version, identity, causation and correlation in one header, a JSON
    # array (infra.log.format.event_headers): every header is stored with every event, and four
    # cost twice the bytes of one.
    EVENT = "Orch"
    TOPIC = "Orch-Topic"  # only when it is not the kind's default_topic
    # Written before events were given their id as Nats-Msg-Id alone; still read.
    EVENT_ID = "Orch-Event-Id"
    # Written before Orch held them (each read when Orch is absent).
    CAUSATION_ID = "Orch-Causation-Id"
    CORRELATION_ID = "Orch-Correlation-Id"
    VERSION = "Orch-Version"
    # Who sent the command that caused an event (the orchestrator itself for its own).
    IDENTITY = "Orch-Identity"


class JsHeader(StrEnum):
    """JetStream's own headers, as both stores (infra/log and
    infra/eventsourcing_jetstream) write and read them."""

    # An atomic batch (ADR-50): its id, each message's number, and the last one's mark.
    BATCH_ID = "Nats-Batch-Id"
    BATCH_SEQUENCE = "Nats-Batch-Sequence"
    BATCH_COMMIT = "Nats-Batch-Commit"
    # A direct get's answer: the status of an empty one, and what is left after a batch.
    STATUS = "Status"
    NUM_PENDING = "Nats-Num-Pending"
    SUBJECT = "Nats-Subject"
    SEQUENCE = "Nats-Sequence"
    TIME_STAMP = "Nats-Time-Stamp"


DIRECT_GET = "$JS.API.DIRECT.GET."


SERVICE_NAME = "orchestrator"

# The protocol: what an agent sends names the agent, `<prefix>.agent.<id>.<command>`;
# what people and tools send names who sends it, `<prefix>.<command>.<identity>`: so NATS
# permissions can bind each identity to its own subjects (docs/protocol.md, Security).
REGISTER = "register"
DEREGISTER = "deregister"
ASSIGNMENTS = "assignments"
SERVICES = "services"
TASK_ACCEPT = "task.accept"
TASK_PROGRESS = "task.progress"
TASK_COMPLETE = "task.complete"
TASK_FAIL = "task.fail"
AGENT_COMMANDS = (REGISTER, DEREGISTER, ASSIGNMENTS, SERVICES,
                  TASK_ACCEPT, TASK_PROGRESS, TASK_COMPLETE, TASK_FAIL)

TASK_SUBMIT = "task.submit"
TASK_CANCEL = "task.cancel"
TASK_RESULTS = "task.results"
ADMIN_DRAIN = "admin.agent.drain"
ADMIN_UNDRAIN = "admin.agent.undrain"
ADMIN_DEREGISTER = "admin.agent.deregister"
ADMIN_ENROLL = "admin.enroll"
ADMIN_REVOKE = "admin.revoke"
ADMIN_IDENTITY_CREATE = "admin.identity.create"
ADMIN_TOKEN_CREATE = "admin.token.create"
ADMIN_LIMITS_SET = "admin.limits.set"  # flow control's limits (domain/limits/limit.py)
# A submitter's schedules (docs/scheduling.md): `<prefix>.schedule.<verb>.<identity>`.
SCHEDULE_CREATE = "schedule.create"
SCHEDULE_PAUSE = "schedule.pause"
SCHEDULE_RESUME = "schedule.resume"
SCHEDULE_DELETE = "schedule.delete"
SCHEDULE_LIST = "schedule.list"
SCHEDULE_COMMANDS = (SCHEDULE_CREATE, SCHEDULE_PAUSE, SCHEDULE_RESUME, SCHEDULE_DELETE,
                     SCHEDULE_LIST)
SUBMITTER_COMMANDS = (TASK_SUBMIT, TASK_CANCEL, TASK_RESULTS, *SCHEDULE_COMMANDS)
OPERATOR_COMMANDS = (ADMIN_DRAIN, ADMIN_UNDRAIN, ADMIN_DEREGISTER, ADMIN_ENROLL, ADMIN_REVOKE,
                     ADMIN_IDENTITY_CREATE, ADMIN_TOKEN_CREATE, ADMIN_LIMITS_SET)
CLIENT_COMMANDS = SUBMITTER_COMMANDS + OPERATOR_COMMANDS

# Reads that anyone allowed may send, on `<prefix>.<command>`.
CATALOG_QUERY = "catalog.query"

# The NATS server's auth callout subject (nats-server auth_callout.go).
AUTH_CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
INBOX_ROOT = "_INBOX"

# Aggregate kinds in event subjects.
AGENT = "agent"
TASK = "task"
IDENTITY = "identity"
ACCESS = "access"  # refused connections, rate-limited, in hourly aggregates
SCHEDULE = "schedule"
LIMIT = "limit"  # flow control's limits, one aggregate each (domain/limits/limit.py)

# The class topic of each kind's aggregate: an event's topic is `<this>.<event name>`, so
# the log leaves it out of an event's headers when it is that (the subject has both).
AGGREGATE_TOPICS = {
    AGENT: "domain.agent:Agent",
    TASK: "domain.task:Task",
    IDENTITY: "domain.identity:Identity",
    ACCESS: "domain.identity:AccessLog",
    SCHEDULE: "domain.schedule:Schedule",
    LIMIT: "domain.flow:Limit",
}


def default_topic(kind: str, event_name: str) -> str | None:
    """The topic an event of this kind and name has unless its headers say otherwise."""
    aggregate = AGGREGATE_TOPICS.get(kind)
    return f"{aggregate}.{event_name}" if aggregate is not None else None


# JetStream API error codes: a failed expected-last-subject-sequence check, the same in a
# batch that writes one subject twice, and a stream created again with another config.
ERR_WRONG_LAST_SEQUENCE = 10071
ERR_BATCH_WRONG_LAST_SEQUENCE = 10164
ERR_STREAM_NAME_IN_USE = 10058


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
    def liveness_stream(self) -> str:
        return f"{self._stream_base}_LIVENESS"

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

    @property
    def liveness_wildcard(self) -> str:
        return f"{self.prefix}.liveness.>"

    def liveness_silence(self, agent_id: str) -> str:
        """Where the liveness record keeps an agent's silences (services/audit/liveness)."""
        return f"{self.prefix}.liveness.silence.{agent_id}"

    def liveness_watch(self, watch_id: str) -> str:
        return f"{self.prefix}.liveness.watch.{watch_id}"

    def command(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def agent_command(self, agent_id: str, name: str) -> str:
        """What agent `agent_id` sends `name` on: `<prefix>.agent.<id>.<name>`."""
        return f"{self.prefix}.agent.{agent_id}.{name}"

    def agent_command_wildcard(self, name: str) -> str:
        return f"{self.prefix}.agent.*.{name}"

    def agent_id_of_command(self, subject: str, name: str) -> str:
        """The agent a command subject names; "" if it is not one of `name`'s."""
        head = f"{self.prefix}.agent."
        tail = f".{name}"
        if not (subject.startswith(head) and subject.endswith(tail)):
            return ""
        return subject[len(head):len(subject) - len(tail)]

    def client_command(self, name: str, identity: str) -> str:
        """What identity `identity` sends `name` on: `<prefix>.<name>.<identity>`."""
        return f"{self.prefix}.{name}.{identity}"

    def client_command_wildcard(self, name: str) -> str:
        return f"{self.prefix}.{name}.*"

    def identity_of_command(self, subject: str, name: str) -> str:
        head = f"{self.prefix}.{name}."
        return subject[len(head):] if subject.startswith(head) else ""

    def inbox_prefix(self, identity: str) -> str:
        """The only reply inbox an identity may subscribe to (`_INBOX.<identity>`)."""
        return f"{INBOX_ROOT}.{identity}"

    def task_outcome(self, identity: str, task_id: str) -> str:
        """Where a finished task's outcome goes: `<prefix>.result.<submitter>.<task_id>`,
        which only that submitter may subscribe to (DESIGN section 8)."""
        return f"{self.prefix}.result.{identity}.{task_id}"

    def task_outcomes(self, identity: str) -> str:
        return f"{self.prefix}.result.{identity}.>"

    def task_feed(self, identity: str, task_id: str, agent_id: str) -> str:
        """A running task's partial output and progress, relayed to its submitter alone:
        `<prefix>.stream.<submitter>.<task_id>.<agent_id>`, the agent that holds it last."""
        return f"{self.prefix}.stream.{identity}.{task_id}.{agent_id}"

    def task_feeds(self, identity: str) -> str:
        return f"{self.prefix}.stream.{identity}.>"

    @property
    def task_outcomes_wildcard(self) -> str:
        return f"{self.prefix}.result.*.*"

    @property
    def task_feeds_wildcard(self) -> str:
        return f"{self.prefix}.stream.*.*.*"

    def agent_stream(self, agent_id: str, task_id: str) -> str:
        """Where an agent writes a task's partial output: under its own subjects, which
        no other identity may publish to (`<prefix>.agent.<id>.stream.<task_id>`)."""
        return f"{self.prefix}.agent.{agent_id}.stream.{task_id}"

    @property
    def agent_streams_wildcard(self) -> str:
        return f"{self.prefix}.agent.*.stream.*"

    @property
    def log_appended(self) -> str:
        """Where the orchestrator says the last log position it applied (ASCII digits),
        at most every ~20 ms: what wakes a reader that may create no consumer (an
        auditor's)."""
        return f"{self.prefix}.log.appended"

    @property
    def catalog_changes_wildcard(self) -> str:
        return f"{self.prefix}.catalog.changes.>"

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
