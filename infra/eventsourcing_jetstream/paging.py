"""Reading a stream in pages of direct gets: all of a subject, or notifications."""

# Shared by the recorders of an application's own stream and by the read-only recorder
# of the orchestrator's log: they differ only in the stream, the subject filter and how a
# message becomes a notification.

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from eventsourcing.persistence import Notification, OperationalError
from nats.aio.msg import Msg

from infra.eventsourcing_jetstream.client import MAX_BATCH, JetStreamClient
from infra.log.format.foreign import ForeignRecords

N = TypeVar("N", bound=Notification)

# Messages asked for per request when filtering notifications by topic.
TOPIC_PAGE = 500
_READ_ATTEMPTS = 3
# Records a recorder did not write, skipped by every reader of this process.
skipped_records = ForeignRecords()


def sequence(msg: Msg) -> int:
    """The stream sequence of a message read by direct get."""
    return int((msg.headers or {})["Nats-Sequence"])


def get_batch(
    client: JetStreamClient, stream: str, subject: str, start: int, batch: int
) -> tuple[list[Msg], int]:
    """`JetStreamClient.get_batch`, tried again if its answer is lost: a reply in flight
    when the connection is renewed never comes, and a read may simply be repeated."""
    for _ in range(_READ_ATTEMPTS - 1):
        try:
            return client.run(client.get_batch(stream, subject, start, batch))
        except OperationalError:
            if client.closed:
                raise
    return client.run(client.get_batch(stream, subject, start, batch))


def read_all(client: JetStreamClient, stream: str, subject: str, start: int = 1) -> list[Msg]:
    """Every stored message on a subject (wildcards allowed) from `start` on."""
    found: list[Msg] = []
    while True:
        batch, pending = get_batch(client, stream, subject, start, MAX_BATCH)
        found.extend(batch)
        if not batch or pending == 0:
            return found
        start = sequence(batch[-1]) + 1


def select_notifications(
    client: JetStreamClient,
    stream: str,
    subject: str,
    to_notification: Callable[[Msg], N],
    start: int | None,
    limit: int,
    stop: int | None = None,
    topics: Sequence[str] = (),
    *,
    inclusive_of_start: bool = True,
) -> list[N]:
    """`ApplicationRecorder.select_notifications` over the messages on `subject`."""
    position = 1 if start is None else (start if inclusive_of_start else start + 1)
    position = max(position, 1)
    found: list[N] = []
    while len(found) < limit and (stop is None or position <= stop):
        # Topics are filtered here, so ask for more than are missing when filtering.
        wanted = TOPIC_PAGE if topics else limit - len(found)
        if stop is not None:
            wanted = min(wanted, stop - position + 1)
        batch, pending = get_batch(client, stream, subject, position, min(wanted, MAX_BATCH))
        for msg in batch:
            try:
                notification = to_notification(msg)
            except (KeyError, ValueError) as exc:  # not written by a recorder: skipped
                skipped_records.skip(sequence(msg), msg.subject, exc)
                continue
            if stop is not None and notification.id > stop:
                return found
            if topics and notification.topic not in topics:
                continue
            found.append(notification)
            if len(found) == limit:
                return found
        if not batch or pending == 0:
            break
        position = sequence(batch[-1]) + 1
    return found
