"""What the event log gives back, whichever adapter holds it (infra.log.port): recorded
events and pages of them, the errors of appends and loads, and the decoding of a stored
record into a RecordedEvent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NamedTuple

from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import resolve_topic

from infra.log.format import event_headers
from infra.log.format.foreign import ForeignRecord
from infra.log.format.forms import expand_state
from infra.names import Header, Names, default_topic


class ConcurrencyConflict(Exception):
    """Another writer appended to the aggregate since it was loaded."""


class StoreUnavailable(Exception):
    """JetStream could not be reached or did not answer in time."""


class HistoryCut(Exception):
    """An aggregate's history begins after its creation, and not with its state carried
    forward: the log's bound cut what made it."""

    def __init__(self, kind: str, aggregate_id: str, first_position: int) -> None:
        super().__init__(f"the history of {kind} {aggregate_id} now begins at position "
                         f"{first_position}, after its beginning was cut from the log")


class RecordedEvent:
    """An event as read back from the log, with its position and causal headers.

    The domain event object is made on first use of `event` (eventsourcing's Mapper,
    with upcasting). Projections read `data()`, which for event classes without later
    versions is the stored state decoded directly: building an object per event that
    nobody calls was a measurable share of a replay.
    """

    __slots__ = (
        "_event",
        "_mapper",
        "_state",
        "_stored_state",
        "_topic",
        "_version",
        "aggregate_id",
        "causation_id",
        "correlation_id",
        "event_id",
        "identity",
        "kind",
        "name",
        "position",
        "recorded_at",
        "subject",
    )

    def __init__(self, position: int, subject: str, kind: str, aggregate_id: str, name: str,
                 event_id: str, causation_id: str | None, correlation_id: str | None,
                 recorded_at: datetime, topic: str, version: int, stored_state: bytes,
                 mapper: Mapper[Any], identity: str | None = None) -> None:
        self.position = position
        self.subject = subject
        self.kind = kind
        self.aggregate_id = aggregate_id
        self.name = name
        self.event_id = event_id
        self.causation_id = causation_id
        self.correlation_id = correlation_id
        self.recorded_at = recorded_at
        # Who sent the command that caused it ("orchestrator" for its own decisions;
        # None in events recorded before identities were).
        self.identity = identity
        # What eventsourcing's StoredEvent holds, kept apart: one is made only for the
        # Mapper (`event`), which a replay seldom calls.
        self._topic = topic
        self._version = version
        self._stored_state = stored_state
        self._mapper = mapper
        self._event: Any = None
        self._state: dict[str, Any] | None = None

    @property
    def event(self) -> Any:
        """The domain event, of the class the orchestrator recorded, upcast if older."""
        if self._event is None:
            self._event = self._mapper.to_domain_event(StoredEvent(
                originator_id=self.aggregate_id, originator_version=self._version,
                topic=self._topic, state=self._stored_state))
        return self._event

    def data(self) -> dict[str, Any]:
        """The event's own attributes, without the aggregate bookkeeping (a new dict)."""
        if self._state is None:
            self._state = self._own_state()
        return dict(self._state)

    def _own_state(self) -> dict[str, Any]:
        if self._event is None and not _has_later_versions(self._topic):
            state = expand_state(self._mapper.transcoder.decode(self._stored_state),
                                 self._topic, self.aggregate_id)
            if "class_version" not in state:  # else written by a later version: upcast
                state.pop("originator_topic", None)
                state["version"] = self._version
                return state
        state = dict(vars(self.event))
        for key in ("originator_id", "originator_topic"):
            state.pop(key, None)
        state["version"] = state.pop("originator_version")
        return state

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "subject": self.subject,
            "aggregate": self.kind,
            "aggregate_id": self.aggregate_id,
            "type": self.name,
            "event_id": self.event_id,
            "causation_id": self.causation_id,
            "correlation_id": self.correlation_id,
            "identity": self.identity,
            "recorded_at": self.recorded_at.isoformat(),
            "data": self.data(),
        }


_LATER_VERSIONS: dict[str, bool] = {}


def _has_later_versions(topic: str) -> bool:
    """True if the event class has a class_version above 1: its stored states may need
    upcasting, which only the Mapper does."""
    known = _LATER_VERSIONS.get(topic)
    if known is None:
        try:
            cls = resolve_topic(topic)
        except Exception:  # an unknown topic: the Mapper's own error says it best
            return True
        known = _LATER_VERSIONS[topic] = getattr(cls, "class_version", 1) > 1
    return known


def event_id_of(headers: dict[str, str]) -> str:
    """An event's id: its Nats-Msg-Id (Orch-Event-Id in events written before)."""
    return headers.get(Header.EVENT_ID) or headers.get(Header.MSG_ID, "")


def topic_of(headers: dict[str, str], kind: str, name: str) -> str:
    """An event's topic: its header, or the default its subject implies."""
    topic = headers.get(Header.TOPIC) or default_topic(kind, name)
    if topic is None:
        raise KeyError(f"no topic for an event of kind {kind!r}")
    return topic


EventHandler = Callable[[RecordedEvent], Awaitable[None]]


class Page(NamedTuple):
    """Events read, the position of the last record read, and whether the log ended."""

    events: list[RecordedEvent]
    last: int
    at_end: bool


def decode_record(names: Names, mapper: Mapper[Any], subject: str, position: int,
                  recorded_at: datetime, headers: dict[str, str], data: bytes) -> RecordedEvent:
    """The event a stored record holds; ForeignRecord for one we did not write."""
    try:
        kind, aggregate_id, name = names.parse_event_subject(subject)
    except ValueError:
        raise ForeignRecord("not an event subject") from None
    known = event_headers.read(headers)
    # Positional: keyword arguments cost a measurable share of a replay here.
    return RecordedEvent(position, subject, kind, aggregate_id, name,
                         event_id_of(headers), known.causation_id, known.correlation_id,
                         recorded_at, topic_of(headers, kind, name), known.version,
                         data, mapper, known.identity)
