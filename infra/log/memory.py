"""The event log in a process's memory: the EventLog port (infra.log.port) without a
server, for command handlers and leader duties under unit test.

It keeps JetStream's rules that the services rely on, and no more: positions from 1
with no gaps, one subject per event, the optimistic check of an append against the last
record under its aggregate's subjects, a retried event absorbed by its message id, the
same headers and the same decoding (so a record reads back as it would from the
stream), records without our headers skipped as foreign, tails delivering in order.
tests/contract/test_event_log.py holds it to the same suite as the JetStream store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from eventsourcing.persistence import Mapper

from domain.base import CARRIED_FORWARD
from infra.log.format.foreign import ForeignRecord, ForeignRecords
from infra.log.port import LogReads, append_records
from infra.log.recorded import (
    ConcurrencyConflict,
    EventHandler,
    Page,
    RecordedEvent,
    StoreUnavailable,
    decode_record,
    event_id_of,
)
from infra.names import Header, Names

log = logging.getLogger(__name__)

class _Record(NamedTuple):
    position: int
    subject: str
    headers: dict[str, str]
    data: bytes
    recorded_at: datetime


def subject_matches(subject_filter: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` one or more."""
    wanted, tokens = subject_filter.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(tokens) == len(wanted)


class InMemoryEventLog(LogReads):
    def __init__(self, names: Names, mapper: Mapper[Any],
                 clock: Callable[[], float] = time.time) -> None:
        self.names = names
        self.mapper = mapper
        self.clock = clock
        self.on_append: Callable[[float], None] | None = None
        self.foreign = ForeignRecords()
        # While True, every call fails as a log that does not answer would.
        self.unavailable = False
        self._records: list[_Record] = []  # position p at index p - 1
        self._last_under: dict[str, int] = {}  # an aggregate's subjects -> last position
        self._by_message_id: dict[str, int] = {}
        self._tails: set[_Tail] = set()

    # --- writing ----------------------------------------------------------------

    async def append(self, kind: str, events: Sequence[Any], expected_position: int,
                     causation_id: str | None = None,
                     correlation_id: str | None = None) -> list[int]:
        self._check_available()
        started = time.perf_counter()
        positions = []
        expected = expected_position
        for subject, data, headers in append_records(self.names, self.mapper, kind, events,
                                                     causation_id, correlation_id,
                                                     expected_position):
            expected = self._store(subject, data, headers, expected)
            positions.append(expected)
        if self.on_append is not None:
            self.on_append(time.perf_counter() - started)
        return positions

    def append_foreign(self, subject: str, data: bytes,
                       headers: dict[str, str] | None = None) -> int:
        """A record another writer put in the log (only its message id is checked, as
        JetStream's duplicate window does); readers skip it unless it has our headers."""
        retried = self._by_message_id.get((headers or {}).get(Header.MSG_ID, ""))
        return retried if retried is not None else self._put(subject, data, headers or {})

    def _store(self, subject: str, data: bytes, headers: dict[str, str],
               expected: int) -> int:
        retried = self._by_message_id.get(headers.get(Header.MSG_ID, ""))
        if retried is not None:
            return retried  # as JetStream answers a duplicate, before any other check
        # As JetStream checks: the subjects the header names, else the event's own.
        under = headers.get(Header.EXPECTED_LAST_SUBJECT_SEQ_SUBJECT, subject)
        if self._last_under.get(under, 0) != expected:
            raise ConcurrencyConflict(subject)
        return self._put(subject, data, headers)

    def _put(self, subject: str, data: bytes, headers: dict[str, str]) -> int:
        position = len(self._records) + 1
        recorded_at = datetime.fromtimestamp(self.clock(), UTC)
        self._records.append(_Record(position, subject, dict(headers), data, recorded_at))
        if Header.MSG_ID in headers:
            self._by_message_id[headers[Header.MSG_ID]] = position
        self._last_under[subject] = position
        with contextlib.suppress(ValueError):
            kind, aggregate_id, _ = self.names.parse_event_subject(subject)
            self._last_under[self.names.aggregate_events(kind, aggregate_id)] = position
        for tail in self._tails:
            tail.wake.set()
        return position

    # --- reading ----------------------------------------------------------------

    async def read_page(self, after: int = 0, limit: int = 1000,
                        subject_filter: str | None = None) -> Page:
        self._check_available()
        wanted = subject_filter or self.names.events_wildcard
        events: list[RecordedEvent] = []
        taken, last = 0, after
        for index in range(max(after, 0), len(self._records)):
            record = self._records[index]
            if taken == limit:
                break
            if not subject_matches(wanted, record.subject):
                continue
            taken, last = taken + 1, record.position
            try:
                events.append(self._decode(record))
            except ForeignRecord as foreign:
                self.foreign.skip(record.position, record.subject, foreign)
        return Page(events, last, taken < limit)

    def _decode(self, record: _Record) -> RecordedEvent:
        return decode_record(self.names, self.mapper, record.subject, record.position,
                             record.recorded_at, record.headers, record.data)

    async def last_carried_forward(self, kind: str, aggregate_id: str) -> int | None:
        self._check_available()
        subject = self.names.event(kind, aggregate_id, CARRIED_FORWARD)
        for record in reversed(self._records):
            if record.subject == subject:
                return record.position if Header.EVENT in record.headers else None
        return None

    async def event_id_at(self, position: int) -> str | None:
        self._check_available()
        if not 1 <= position <= len(self._records):
            return None
        return event_id_of(self._records[position - 1].headers)

    async def bounds(self) -> tuple[int, int]:
        self._check_available()
        return 1, len(self._records)

    async def tail(self, after: int, handler: EventHandler, subject_filter: str | None = None,
                   skipped: Callable[[int, str], None] | None = None) -> _Tail:
        self._check_available()
        tail = _Tail(self, after, handler, subject_filter or self.names.events_wildcard,
                     skipped)
        self._tails.add(tail)
        tail.start()
        return tail

    def _check_available(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("the in-memory log is set unavailable")


class _Tail:
    """One live delivery: every matching record after `after`, in order, one at a time
    (as an ordered consumer delivers), woken by each append."""

    def __init__(self, source: InMemoryEventLog, after: int, handler: EventHandler,
                 subject_filter: str, skipped: Callable[[int, str], None] | None) -> None:
        self.source = source
        self.position = after
        self.handler = handler
        self.subject_filter = subject_filter
        self.skipped = skipped
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.wake.set()
        self._task = asyncio.create_task(self._deliver())

    async def _deliver(self) -> None:
        records = self.source._records  # one list, appended to in place
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.position < len(records):
                record = records[self.position]
                self.position = record.position
                if not subject_matches(self.subject_filter, record.subject):
                    continue
                try:
                    event = self.source._decode(record)
                except ForeignRecord as foreign:
                    self.source.foreign.skip(record.position, record.subject, foreign)
                    if self.skipped is not None:
                        self.skipped(record.position, event_id_of(record.headers))
                    continue
                try:
                    await self.handler(event)
                except Exception:  # as nats-py does with a callback's error: go on
                    log.exception("tail handler failed position=%d", record.position)

    async def unsubscribe(self) -> None:
        self.source._tails.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
