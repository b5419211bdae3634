"""The JetStream event store: one stream, one subject per event, OCC per aggregate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import nats.errors
from eventsourcing.domain import CanInitAggregate
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import resolve_topic
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from domain.base import StrIdCarriedForward
from infra.bus.direct import position_and_time_of
from infra.caller import ORCHESTRATOR, current_identity, decided_by_orchestrator
from infra.log import direct_read, event_headers
from infra.log.codec import expand_state
from infra.log.event_headers import new_event_id
from infra.log.foreign import ForeignRecord, ForeignRecords
from infra.log.group_commit import GroupCommit
from infra.names import ERR_WRONG_LAST_SEQUENCE, Header, Names, default_topic

log = logging.getLogger(__name__)

_FETCH_BATCH = 500


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

def position_and_time(reply: str) -> tuple[int, datetime]:
    """What the event store needs of a message's metadata, without nats-py's full
    Metadata (a frozen dataclass per message, a measurable share of a replay)."""
    return position_and_time_of(reply.split("."))


class Page(NamedTuple):
    """Events read, the position of the last record read, and whether the log ended."""

    events: list[RecordedEvent]
    last: int
    at_end: bool


class EventStore:
    """Append, load, read and tail the decisions log on JetStream."""

    def __init__(self, js: JetStreamContext, names: Names, mapper: Mapper[Any],
                 timeout: float = 5.0, group_commit: GroupCommit | None = None,
                 direct_reads: bool = False) -> None:
        """`direct_reads`: read and tail by direct gets (infra.log.direct_read), as an
        auditor may, not through consumers, which only the orchestrator's own users may
        create; its loads then come from any replica, not only the stream's leader."""
        self.js = js
        self.direct_reads = direct_reads
        self.names = names
        self.mapper = mapper
        self.timeout = timeout
        self.group_commit = group_commit
        self.on_append: Callable[[float], None] | None = None  # told each append's seconds
        self.foreign = ForeignRecords()  # records skipped because we did not write them

    # --- writing ----------------------------------------------------------------

    async def append(
        self,
        kind: str,
        events: Sequence[Any],
        expected_position: int,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> list[int]:
        """Append an aggregate's new events, if its last event is still at expected_position.

        expected_position 0 means the aggregate must not exist yet. Events of one
        command are chained: each expects the position the previous one was given.
        Returns the positions written; the event ids are in the headers.
        """
        messages: list[tuple[str, bytes, dict[str, str]]] = []
        own_decisions = decided_by_orchestrator.get()
        for domain_event in events:
            stored = self.mapper.to_stored_event(domain_event)
            aggregate_id = str(stored.originator_id)
            event_name = type(domain_event).__name__
            event_id = new_event_id()
            identity = (ORCHESTRATOR if event_name in own_decisions
                        else current_identity.get())
            headers: dict[str, str] = {
                # Nats-Msg-Id is the event id: a retried publish of this same event is
                # absorbed as a duplicate, while a rival event still meets the OCC check.
                Header.MSG_ID: event_id,
                Header.EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: self.names.aggregate_events(
                    kind, aggregate_id
                ),
                # Every header is stored with every event: what the log knows of it is
                # one header, and what the subject already says (the topic, for the
                # aggregates' own event classes) is left out.
                Header.EVENT: event_headers.pack(stored.originator_version, identity,
                                                 causation_id, correlation_id),
            }
            if stored.topic != default_topic(kind, event_name):
                headers[Header.TOPIC] = stored.topic
            messages.append((self.names.event(kind, aggregate_id, event_name), stored.state,
                             headers))
            # Later events of the same command are caused by the first.
            causation_id = causation_id or event_id
        positions: list[int] = []
        expected = expected_position
        for subject, data, headers in messages:  # each expects the one before it
            headers[Header.EXPECTED_LAST_SUBJECT_SEQ] = str(expected)
            expected = await self._publish(subject, data, headers)
            positions.append(expected)
        return positions

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str]) -> int:
        started = time.perf_counter()
        try:
            return await self._publish_once(subject, data, headers)
        finally:
            if self.on_append is not None:
                self.on_append(time.perf_counter() - started)

    async def _publish_once(self, subject: str, data: bytes, headers: dict[str, str]) -> int:
        try:
            if self.group_commit is not None:
                return await self.group_commit.append(subject, data, headers)
            # No Nats-Expected-Stream (it would be stored with the event): the subject
            # maps to this stream alone, and the answer names the stream that stored it.
            ack = await self.js.publish(subject, data, timeout=self.timeout, headers=headers)
        except APIError as exc:
            if exc.err_code == ERR_WRONG_LAST_SEQUENCE:
                raise ConcurrencyConflict(subject) from exc
            raise StoreUnavailable(str(exc)) from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(repr(exc)) from exc
        if ack.stream != self.names.events_stream:
            raise StoreUnavailable(f"{subject} was stored by stream {ack.stream}, "
                                   f"not {self.names.events_stream}")
        return int(ack.seq)

    # --- reading ----------------------------------------------------------------

    def decode(self, msg: Msg) -> RecordedEvent:
        """The event a message of the log holds; ForeignRecord for one we did not write."""
        headers = msg.headers or {}
        if self.direct_reads:  # the message's subject is our inbox: the rest are headers
            subject, position, recorded_at = direct_read.where(msg)
        else:
            subject = msg.subject
            position, recorded_at = position_and_time(msg.reply)
        try:
            kind, aggregate_id, name = self.names.parse_event_subject(subject)
        except ValueError:
            raise ForeignRecord("not an event subject") from None
        known = event_headers.read(headers)
        # Positional: keyword arguments cost a measurable share of a replay here.
        return RecordedEvent(position, subject, kind, aggregate_id, name,
                             event_id_of(headers), known.causation_id, known.correlation_id,
                             recorded_at, topic_of(headers, kind, name), known.version,
                             msg.data, self.mapper, known.identity)

    async def read(
        self, after: int = 0, limit: int = 1000, subject_filter: str | None = None
    ) -> list[RecordedEvent]:
        """Up to `limit` events with position > after, optionally under a subject filter."""
        return (await self.read_page(after, limit, subject_filter)).events

    async def read_page(
        self, after: int = 0, limit: int = 1000, subject_filter: str | None = None
    ) -> Page:
        """As `read`, with where the page ended in the log: a record skipped as foreign
        (infra.log.foreign) is not among the events, but the next page starts past it."""
        msgs = await self._fetch(subject_filter or self.names.events_wildcard, after, limit)
        events = []
        for msg in msgs:
            try:
                events.append(self.decode(msg))
            except ForeignRecord as foreign:
                self.foreign.skip(*self._where(msg), foreign)
        last = self._where(msgs[-1])[0] if msgs else after
        return Page(events, last, len(msgs) < limit)

    def _where(self, msg: Msg) -> tuple[int, str]:
        """A message's position and the subject it was stored on, in either read mode."""
        if self.direct_reads:
            subject, position, _ = direct_read.where(msg)
            return position, subject
        return position_and_time(msg.reply)[0], msg.subject

    async def iterate(
        self, after: int = 0, subject_filter: str | None = None, until: int | None = None,
        batch: int = 2000,
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
        return await self.read(
            after, 1_000_000, self.names.aggregate_events(kind, aggregate_id)
        )

    async def load(self, kind: str, aggregate_id: str, after: int = 0) -> tuple[Any | None, int]:
        """The aggregate rebuilt from its events after `after` (0, or just before a
        CarriedForward of it), and the position of its last event."""
        aggregate = None
        position = 0
        page = await self.read_page(after, 1_000_000, self.names.aggregate_events(kind,
                                                                                aggregate_id))
        for recorded in page.events:
            event = recorded.event
            if aggregate is None and not isinstance(event, CanInitAggregate | StrIdCarriedForward):
                # A bounded log cut this aggregate's beginning without carrying it forward
                # (services/leader/log_keeper.py): what is left cannot make it.
                raise HistoryCut(kind, aggregate_id, recorded.position)
            aggregate = event.mutate(aggregate)
            position = recorded.position
        # The next append expects the subject's last record: a foreign one skipped above
        # (infra.log.foreign) included, or no append to this aggregate would ever pass.
        return aggregate, max(position, page.last if page.last > after else 0)

    async def event_id_at(self, position: int) -> str | None:
        """The id of the event at `position` ("" for a record without one), None when
        the log has none there."""
        try:
            raw = await self.js.get_msg(self.names.events_stream, seq=position, direct=True)
        except NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(repr(exc)) from exc
        return event_id_of(raw.headers or {})

    async def last_position(self) -> int:
        return (await self.bounds())[1]

    async def bounds(self) -> tuple[int, int]:
        """The positions of the log's first and last events. The first is above 1 once
        a bounded log (ORCH_LOG_MAX_AGE) has cut its beginning; with every event cut it
        is one past the last."""
        try:
            info = await self.js.stream_info(self.names.events_stream)
        except (TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(repr(exc)) from exc
        return max(1, int(info.state.first_seq)), int(info.state.last_seq)  # 0: never written

    async def _fetch(self, subject_filter: str, after: int, limit: int) -> list[Msg]:
        stream = self.names.events_stream
        if self.direct_reads:
            try:
                # js._nc: the connection nats-py's context sends through (no public name).
                return await direct_read.read(self.js._nc, stream, subject_filter, after,
                                              limit, self.timeout)
            except (TimeoutError, nats.errors.Error) as exc:
                raise StoreUnavailable(repr(exc)) from exc
        config = ConsumerConfig(
            filter_subject=subject_filter,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=30.0,
        )
        try:
            info = await self.js.add_consumer(stream, config, timeout=self.timeout)
        except (TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(repr(exc)) from exc
        wanted = min(info.num_pending or 0, limit)
        msgs: list[Msg] = []
        try:
            if wanted:
                sub = await self.js.pull_subscribe_bind(consumer=info.name, stream=stream)
                try:
                    while len(msgs) < wanted:
                        batch = min(wanted - len(msgs), _FETCH_BATCH)
                        msgs.extend(await sub.fetch(batch, timeout=self.timeout))
                finally:
                    await sub.unsubscribe()
        except (TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(repr(exc)) from exc
        finally:
            with contextlib.suppress(nats.errors.Error, NotFoundError, asyncio.TimeoutError):
                await self.js.delete_consumer(stream, info.name)
        return msgs[:wanted]

    async def tail(self, after: int, handler: EventHandler,
                   subject_filter: str | None = None,
                   skipped: Callable[[int, str], None] | None = None) -> Any:
        """Deliver every event with position > after to `handler`, in order, live;
        `skipped` is told the position of each record skipped as foreign.

        An ordered consumer: it re-creates itself from the last position it delivered
        after a gap or a reconnect, so nothing is skipped or applied twice.
        """

        async def on_message(msg: Msg) -> None:
            try:
                event = self.decode(msg)
            except ForeignRecord as foreign:
                position, subject = self._where(msg)
                self.foreign.skip(position, subject, foreign)
                if skipped is not None:
                    skipped(position, event_id_of(msg.headers or {}))
                return
            await handler(event)

        if self.direct_reads:  # woken by the orchestrator's notice of each append
            return await direct_read.follow(
                self.js._nc, self.names.events_stream,
                subject_filter or self.names.events_wildcard, after,
                self.names.log_appended, on_message, self.timeout)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
        )
        return await self.js.subscribe(
            subject_filter or self.names.events_wildcard,
            stream=self.names.events_stream,
            cb=on_message,
            ordered_consumer=True,
            config=config,
            idle_heartbeat=1.0,
            pending_msgs_limit=0,
            pending_bytes_limit=0,
        )
