"""The aggregate, application, tracking and process recorders on JetStream."""

# Uniqueness is the server's: each event has its own subject (aggregate and version), and
# is published expecting that subject to be empty, so two writers can never both store a
# version; a tracking record expects the last one on its subject to be the one read.
# Several messages go in one atomic batch, so a write is all or nothing. The stream
# sequence of an event is its notification id.

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    Notification,
    ProcessRecorder,
    Recorder,
    StoredEvent,
    Tracking,
    TrackingRecorder,
)
from nats.aio.msg import Msg

from infra.eventsourcing_jetstream import paging
from infra.eventsourcing_jetstream.client import JetStreamClient, Message
from infra.eventsourcing_jetstream.names import (
    EVENTS,
    EXPECTED_LAST_SUBJECT_SEQ,
    TOPIC_HEADER,
    LogNames,
    parse_event_subject,
)
from infra.eventsourcing_jetstream.subscription import JetStreamSubscription

if TYPE_CHECKING:
    from eventsourcing.persistence import Subscription

# Attempts at a tracked write when another writer moved the tracking position meanwhile.
_TRACKING_ATTEMPTS = 5


def _stored_event(msg: Msg) -> StoredEvent:
    subject = (msg.headers or {})["Nats-Subject"]
    originator_id, version = parse_event_subject(subject)
    return StoredEvent(
        originator_id=originator_id,
        originator_version=version,
        topic=(msg.headers or {})[TOPIC_HEADER],
        state=msg.data,
    )


def _notification(msg: Msg) -> Notification:
    event = _stored_event(msg)
    return Notification(
        id=paging.sequence(msg),
        originator_id=event.originator_id,
        originator_version=event.originator_version,
        topic=event.topic,
        state=event.state,
    )


class JetStreamRecorder(Recorder):
    """A recorder writing to and reading from one application's stream."""

    def __init__(self, client: JetStreamClient, log: LogNames) -> None:
        self.client = client
        self.log = log

    def _read_all(self, subject: str, start: int = 1) -> list[Msg]:
        """Every stored message on a subject (wildcards allowed) from `start` on."""
        return paging.read_all(self.client, self.log.stream, subject, start)


class JetStreamAggregateRecorder(JetStreamRecorder, AggregateRecorder):
    """Aggregate sequences of one purpose ("events", "snapshots", ...)."""

    def __init__(self, client: JetStreamClient, log: LogNames, purpose: str = EVENTS) -> None:
        super().__init__(client, log)
        self.purpose = purpose

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self._insert_events(stored_events, **kwargs)
        return None

    def _insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        messages = self._event_messages(stored_events)
        if not messages:
            return []
        last = self.client.run(self.client.publish(messages))
        # An atomic batch is stored contiguously, ending at the acknowledged sequence.
        return list(range(last - len(messages) + 1, last + 1))

    def _event_messages(self, stored_events: Sequence[StoredEvent]) -> list[Message]:
        messages: list[Message] = []
        subjects: set[str] = set()
        for event in stored_events:
            subject = self.log.event_subject(
                self.purpose, event.originator_id, event.originator_version
            )
            if subject in subjects:
                raise IntegrityError(f"stored events are not unique: {subject}")
            subjects.add(subject)
            headers = {TOPIC_HEADER: event.topic, EXPECTED_LAST_SUBJECT_SEQ: "0"}
            messages.append(Message(subject, event.state, headers))
        return messages

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        msgs = self._read_all(self.log.sequence_filter(self.purpose, originator_id))
        # Stream order is write order; versions may have been written in any order.
        events = sorted(map(_stored_event, msgs), key=lambda e: e.originator_version)
        events = [
            e for e in events
            if (gt is None or e.originator_version > gt)
            and (lte is None or e.originator_version <= lte)
        ]
        if desc:
            events.reverse()
        return events if limit is None else events[:limit]


class JetStreamApplicationRecorder(JetStreamAggregateRecorder, ApplicationRecorder):
    """The application sequence: every event, numbered by its stream sequence."""

    def __init__(self, client: JetStreamClient, log: LogNames) -> None:
        super().__init__(client, log, purpose=EVENTS)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return self._insert_events(stored_events, **kwargs)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        return paging.select_notifications(
            self.client, self.log.stream, self.log.purpose_filter(EVENTS), _notification,
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start,
        )

    def max_notification_id(self) -> int | None:
        last = self.client.run(
            self.client.last_message(self.log.stream, self.log.purpose_filter(EVENTS))
        )
        return None if last is None else paging.sequence(last)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return JetStreamSubscription(
            recorder=self, client=self.client, stream=self.log.stream,
            subject=self.log.purpose_filter(EVENTS), gt=gt, topics=topics,
        )


class JetStreamTrackingRecorder(JetStreamRecorder, TrackingRecorder):
    """Positions of upstream notifications processed, one subject per upstream."""

    def __init__(self, client: JetStreamClient, log: LogNames) -> None:
        super().__init__(client, log)
        # Upstream name -> (stream sequence, notification id) of its last tracking record
        # as this recorder last knew it; the server's check corrects a stale guess.
        self._positions: dict[str, tuple[int, int | None]] = {}

    def insert_tracking(self, tracking: Tracking) -> None:
        self._record([], tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        return self._read_position(application_name)[1]

    def _read_position(self, application_name: str) -> tuple[int, int | None]:
        last = self.client.run(
            self.client.last_message(self.log.stream, self.log.tracking_subject(application_name))
        )
        if last is None:
            return 0, None
        return paging.sequence(last), int(last.data)

    def _record(self, messages: list[Message], tracking: Tracking | None) -> int:
        """Publish the messages, with the tracking record last if any; its sequence."""
        if tracking is None:
            return self.client.run(self.client.publish(messages))
        name = tracking.application_name
        subject = self.log.tracking_subject(name)
        for _ in range(_TRACKING_ATTEMPTS):
            position = self._positions.get(name) or self._read_position(name)
            last_seq, last_id = position
            if last_id is not None and tracking.notification_id <= last_id:
                raise IntegrityError(
                    f"tracking {name} {tracking.notification_id} not after {last_id}"
                )
            record = Message(
                subject, str(tracking.notification_id).encode(),
                {EXPECTED_LAST_SUBJECT_SEQ: str(last_seq)},
            )
            try:
                seq = self.client.run(self.client.publish([*messages, record]))
            except IntegrityError:
                fresh = self._read_position(name)
                self._positions[name] = fresh
                if fresh == position:
                    raise  # the tracking record was not the conflict: an event was
                continue
            self._positions[name] = (seq, tracking.notification_id)
            return seq
        raise IntegrityError(f"tracking {name} kept moving while recording")


class JetStreamProcessRecorder(
    JetStreamTrackingRecorder, JetStreamApplicationRecorder, ProcessRecorder
):
    """Events and the tracking record of the notification that caused them, atomically."""

    def _insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        messages = self._event_messages(stored_events)
        if not messages and tracking is None:
            return []
        last = self._record(messages, tracking)
        if tracking is not None:
            last -= 1  # the tracking record is the batch's last message
        return list(range(last - len(messages) + 1, last + 1))
