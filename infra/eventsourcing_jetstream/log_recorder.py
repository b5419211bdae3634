"""A read-only application recorder over the orchestrator's own log, `<PREFIX>_EVENTS`.

Its notifications are the log's messages, numbered by their stream sequence (the
`position` the orchestrator's API and CLI show), with the topic and state the
orchestrator's mapper wrote, read from the headers as the orchestrator's own event store
reads them (in the form written now and in the older one); every write is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification, StoredEvent
from nats.aio.msg import Msg

from infra.eventsourcing_jetstream import paging
from infra.eventsourcing_jetstream.client import JetStreamClient
from infra.eventsourcing_jetstream.log_errors import AggregateIdError, read_only
from infra.eventsourcing_jetstream.provenance import LogNotification, Provenance
from infra.eventsourcing_jetstream.subscription import JetStreamSubscription
from infra.log.direct_read import recorded_at
from infra.log.event_store import event_id_of, topic_of
from infra.log.format import event_headers
from infra.names import Names

if TYPE_CHECKING:
    from eventsourcing.persistence import Subscription

_SUBJECT = "Nats-Subject"
_TIME_STAMP = "Nats-Time-Stamp"
_NOT_IN_A_TOKEN = frozenset(".*> \t\r\n")


class OrchestratorLogRecorder(ApplicationRecorder):
    """The orchestrator's log as an application sequence, for reading only."""

    def __init__(self, client: JetStreamClient, names: Names) -> None:
        self.client = client
        self.names = names

    # --- reading ----------------------------------------------------------------------

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
            self.client, self.names.events_stream, self._subject_of(topics),
            self._notification, start, limit, stop, topics,
            inclusive_of_start=inclusive_of_start,
        )

    def max_notification_id(self) -> int | None:
        info = self.client.run(self.client.js.stream_info(self.names.events_stream))
        return int(info.state.last_seq) or None

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        # Woken by the orchestrator's notice of each position it applied: following the
        # log by a consumer would need a right an auditor must not have.
        return JetStreamSubscription(
            recorder=self, client=self.client, stream=self.names.events_stream,
            subject=self._subject_of(topics), gt=gt, topics=topics,
            notice=self.names.log_appended,
        )

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """One aggregate's events, for the application's repository."""
        aggregate_id = str(originator_id)
        if not aggregate_id or _NOT_IN_A_TOKEN & set(aggregate_id):
            raise AggregateIdError(f"{aggregate_id!r} is not an aggregate id of the log")
        subject = self.names.event("*", aggregate_id, "*")
        events = [self._notification(m) for m in
                  paging.read_all(self.client, self.names.events_stream, subject)]
        # Aggregates of different kinds may share an id (an agent and its identity).
        kinds = {self.names.parse_event_subject(e.provenance.subject)[0] for e in events}
        if len(kinds) > 1:
            raise AggregateIdError(
                f"{aggregate_id!r} names aggregates of {len(kinds)} kinds "
                f"({', '.join(sorted(kinds))}); read them with select_notifications"
            )
        selected = [e for e in events
                    if (gt is None or e.originator_version > gt)
                    and (lte is None or e.originator_version <= lte)]
        if desc:
            selected.reverse()
        return selected if limit is None else selected[:limit]

    def _subject_of(self, topics: Sequence[str]) -> str:
        """The narrowest subject holding every event of these topics.

        The last token of an event's subject is its class's name, the end of its topic:
        one name is filtered by the server; the topics themselves are still checked.
        """
        class_names = {topic.partition(":")[2].rsplit(".", 1)[-1] for topic in topics}
        if len(class_names) == 1:
            (class_name,) = class_names
            if class_name and not _NOT_IN_A_TOKEN & set(class_name):
                return self.names.event("*", "*", class_name)
        return self.names.events_wildcard

    def _notification(self, msg: Msg) -> LogNotification:
        headers = msg.headers or {}
        subject = headers[_SUBJECT]
        kind, aggregate_id, name = self.names.parse_event_subject(subject)
        position = paging.sequence(msg)
        known = event_headers.read(headers)  # either form: Orch, or a header each
        return LogNotification(
            id=position,
            originator_id=aggregate_id,
            originator_version=known.version,
            topic=topic_of(headers, kind, name),
            state=msg.data,
            provenance=Provenance(
                position=position,
                subject=subject,
                event_id=event_id_of(headers),
                causation_id=known.causation_id,
                correlation_id=known.correlation_id,
                identity=known.identity,
                recorded_at=recorded_at(headers[_TIME_STAMP]),
            ),
        )

    # --- writing: refused ---------------------------------------------------------------

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        raise read_only(f"insert_events into {self.names.events_stream}")
