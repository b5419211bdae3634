"""The JetStream event store: one stream, one subject per event, OCC per aggregate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import nats.errors
from eventsourcing.persistence import Mapper
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from domain.base import CARRIED_FORWARD
from infra.bus.direct import position_and_time_of
from infra.bus.nats_internals import connection_of
from infra.log import direct_read
from infra.log.format.foreign import ForeignRecord, ForeignRecords
from infra.log.group_commit import GroupCommit
from infra.log.port import LogReads, Tailing, append_records
from infra.log.recorded import (  # noqa: F401  (where most callers import them from)
    ConcurrencyConflict,
    EventHandler,
    HistoryCut,
    Page,
    RecordedEvent,
    StoreUnavailable,
    decode_record,
    event_id_of,
    topic_of,
)
from infra.names import ERR_WRONG_LAST_SEQUENCE, Header, Names

log = logging.getLogger(__name__)

_FETCH_BATCH = 500


def position_and_time(reply: str) -> tuple[int, datetime]:
    """What the event store needs of a message's metadata, without nats-py's full
    Metadata (a frozen dataclass per message, a measurable share of a replay)."""
    return position_and_time_of(reply.split("."))


class EventStore(LogReads):
    """Append, load, read and tail the decisions log on JetStream (infra.log.port)."""

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
        messages = append_records(self.names, self.mapper, kind, events, causation_id,
                                  correlation_id, expected_position)
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
        return decode_record(self.names, self.mapper, subject, position, recorded_at,
                             headers, msg.data)

    async def read_page(
        self, after: int = 0, limit: int = 1000, subject_filter: str | None = None
    ) -> Page:
        """As `read`, with where the page ended in the log: a record skipped as foreign
        (infra.log.format.foreign) is not among the events, but the next page starts past it."""
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

    async def last_carried_forward(self, kind: str, aggregate_id: str) -> int | None:
        """The position of the aggregate's latest CarriedForward, by one direct get of
        its subject; None when it has none (or only a record we did not write)."""
        try:
            raw = await self.js.get_msg(
                self.names.events_stream, direct=True,
                subject=self.names.event(kind, aggregate_id, CARRIED_FORWARD))
        except NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(repr(exc)) from exc
        if Header.EVENT not in (raw.headers or {}) or not raw.seq:
            return None  # not the orchestrator's (infra.log.format.foreign): no state there
        return int(raw.seq)

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
                return await direct_read.read(connection_of(self.js), stream, subject_filter, after,
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
                   skipped: Callable[[int, str], None] | None = None) -> Tailing:
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
                connection_of(self.js), self.names.events_stream,
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
