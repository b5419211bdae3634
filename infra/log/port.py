"""The event log as the services see it: append with an expected position, load, read,
tail and bounds, whatever holds it.

Two adapters implement it: `infra.log.event_store.EventStore` (JetStream, the product's)
and `infra.log.memory.InMemoryEventLog` (a process's memory: command handlers and leader
duties tested without a server). tests/contract/test_event_log.py runs one suite against
both. What the two share is written here once: the form of an append (subjects and
headers, so a record reads back the same from either) and every read built on
`read_page` (loads, histories, iteration).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from eventsourcing.domain import CanInitAggregate
from eventsourcing.persistence import Mapper

from domain.base import StrIdCarriedForward
from infra.caller import ORCHESTRATOR, current_identity, decided_by_orchestrator, decision_causes
from infra.log.format import event_headers
from infra.log.format.event_headers import EVENT_ID_BYTES, new_event_id
from infra.log.format.foreign import ForeignRecords
from infra.log.recorded import EventHandler, HistoryCut, Page, RecordedEvent
from infra.names import Header, Names, default_topic

# An append's records: (subject, data, headers), each expecting the position before it.
Records = list[tuple[str, bytes, dict[str, str]]]


class Tailing(Protocol):
    """A live delivery of the log's events, ended by `unsubscribe`."""

    async def unsubscribe(self) -> None: ...


class EventLog(Protocol):
    names: Names
    mapper: Mapper[Any]
    foreign: ForeignRecords  # records skipped because we did not write them
    on_append: Callable[[float], None] | None  # told each append's seconds

    async def append(self, kind: str, events: Sequence[Any], expected_position: int,
                     causation_id: str | None = None,
                     correlation_id: str | None = None) -> list[int]:
        """Append an aggregate's new events if its subject's last record is still at
        `expected_position` (0: it must not exist); their positions. ConcurrencyConflict
        when another writer came first, StoreUnavailable when the log did not answer."""
        ...

    async def read_page(self, after: int = 0, limit: int = 1000,
                        subject_filter: str | None = None) -> Page: ...

    async def read(self, after: int = 0, limit: int = 1000,
                   subject_filter: str | None = None) -> list[RecordedEvent]: ...

    def iterate(self, after: int = 0, subject_filter: str | None = None,
                until: int | None = None, batch: int = 2000) -> AsyncIterator[RecordedEvent]: ...

    async def history(self, kind: str, aggregate_id: str,
                      after: int = 0) -> list[RecordedEvent]: ...

    async def load(self, kind: str, aggregate_id: str,
                   after: int = 0) -> tuple[Any | None, int]: ...

    async def last_carried_forward(self, kind: str, aggregate_id: str) -> int | None:
        """The position of the aggregate's latest CarriedForward, None if it has none."""
        ...

    async def event_id_at(self, position: int) -> str | None: ...

    async def last_position(self) -> int: ...

    async def bounds(self) -> tuple[int, int]: ...

    async def tail(self, after: int, handler: EventHandler, subject_filter: str | None = None,
                   skipped: Callable[[int, str], None] | None = None) -> Tailing: ...


def append_records(names: Names, mapper: Mapper[Any], kind: str, events: Sequence[Any],
                   causation_id: str | None, correlation_id: str | None,
                   expected_position: int | None = None) -> Records:
    """The records an append writes: one subject per event, and its headers (the event
    id as the message id, the OCC subject, the packed causal header, a topic only when
    the subject does not imply it). The expected position is each adapter's to add.

    The OCC subject (Nats-Expected-Last-Subject-Sequence-Subject, the aggregate's
    `<kind>.<id>.>`) is left out of an aggregate's creation event appended with
    `expected_position` 0: JetStream then checks the event's own subject, which holds
    the aggregate's creation event and nothing else, so it is empty exactly when the
    aggregate's subjects are (docs/protocol.md, Events)."""
    records: Records = []
    own_decisions = decided_by_orchestrator.get()
    own_causes = decision_causes.get()
    creating = expected_position == 0
    for domain_event in events:
        stored = mapper.to_stored_event(domain_event)
        aggregate_id = str(stored.originator_id)
        event_name = type(domain_event).__name__
        event_id = new_event_id(EVENT_ID_BYTES)
        identity = ORCHESTRATOR if event_name in own_decisions else current_identity.get()
        headers: dict[str, str] = {
            # Nats-Msg-Id is the event id: a retried publish of this same event is
            # absorbed as a duplicate, while a rival event still meets the OCC check.
            Header.MSG_ID: event_id,
            # Every header is stored with every event: what the log knows of it is one
            # header, and what the subject already says (the topic, for the aggregates'
            # own event classes) is left out.
            Header.EVENT: event_headers.pack(stored.originator_version, identity,
                                             own_causes.get(event_name) or causation_id,
                                             correlation_id),
        }
        if not (creating and isinstance(domain_event, CanInitAggregate)):
            headers[Header.EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = names.aggregate_events(
                kind, aggregate_id)
        creating = False  # the events after the first expect a position of their own
        if stored.topic != default_topic(kind, event_name):
            headers[Header.TOPIC] = stored.topic
        records.append((names.event(kind, aggregate_id, event_name), stored.state, headers))
        # Later events of the same command are caused by the first.
        causation_id = causation_id or event_id
    return records


class LogReads:
    """The reads every adapter builds on its own `read_page` and `bounds`."""

    names: Names

    async def read_page(self, after: int = 0, limit: int = 1000,
                        subject_filter: str | None = None) -> Page:
        raise NotImplementedError

    async def bounds(self) -> tuple[int, int]:
        raise NotImplementedError

    async def read(self, after: int = 0, limit: int = 1000,
                   subject_filter: str | None = None) -> list[RecordedEvent]:
        """Up to `limit` events with position > after, optionally under a subject filter."""
        return (await self.read_page(after, limit, subject_filter)).events

    async def iterate(self, after: int = 0, subject_filter: str | None = None,
                      until: int | None = None, batch: int = 2000
                      ) -> AsyncIterator[RecordedEvent]:
        """Every event with after < position <= until (the log's end when None), in order,
        a page at a time: for replays too long to hold in memory at once."""
        position = after
        while True:
            page = await self.read_page(position, batch, subject_filter)
            for event in page.events:
                if until is not None and event.position > until:
                    return
                yield event
            if page.at_end:
                return
            position = page.last

    async def history(self, kind: str, aggregate_id: str, after: int = 0) -> list[RecordedEvent]:
        """Every event of one aggregate (after `after`), oldest first."""
        return await self.read(after, 1_000_000, self.names.aggregate_events(kind,
                                                                            aggregate_id))

    async def load(self, kind: str, aggregate_id: str, after: int = 0) -> tuple[Any | None, int]:
        """The aggregate rebuilt from its events after `after` (0, or just before a
        CarriedForward of it), and the position of its last event."""
        aggregate = None
        position = 0
        page = await self.read_page(after, 1_000_000,
                                    self.names.aggregate_events(kind, aggregate_id))
        for recorded in page.events:
            event = recorded.event
            if aggregate is None and not isinstance(event, CanInitAggregate | StrIdCarriedForward):
                # A bounded log cut this aggregate's beginning without carrying it forward
                # (services/leader/log_keeper.py): what is left cannot make it.
                raise HistoryCut(kind, aggregate_id, recorded.position)
            aggregate = event.mutate(aggregate)
            position = recorded.position
        # The next append expects the subject's last record: a foreign one skipped above
        # (infra.log.format.foreign) included, or no append to this aggregate would ever pass.
        return aggregate, max(position, page.last if page.last > after else 0)

    async def last_position(self) -> int:
        return (await self.bounds())[1]
