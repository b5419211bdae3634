"""Live notifications: read in pages from the stream, woken by an ordered consumer or by
the writer's notice."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Sequence
from threading import Event
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import ApplicationRecorder, ListenNotifySubscription

if TYPE_CHECKING:
    from infra.eventsourcing_jetstream.client import JetStreamClient


class JetStreamSubscription(ListenNotifySubscription[ApplicationRecorder]):
    """Notifications after `gt`, then new ones as they are stored, until stopped.

    `stream` and `subject` say where the recorder's notifications are stored: an
    application's own stream, or the orchestrator's log. With `notice` (a subject the
    writer publishes on after it appends: the orchestrator's `<prefix>.log.appended`),
    that wakes it instead of a consumer, which a reader of the orchestrator's log, an
    auditor, may not create (services/auth/permissions.py).
    """

    # The library's listen/notify loop pulls pages with `select_notifications`, which
    # bounds what is held in memory; the wake-up comes from an ordered consumer of new
    # messages (headers only), which delivers a message only once it is stored.

    def __init__(
        self,
        recorder: ApplicationRecorder,
        client: JetStreamClient,
        stream: str,
        subject: str,
        gt: int | None = None,
        topics: Sequence[str] = (),
        notice: str | None = None,
    ) -> None:
        self._client = client
        # The consumer starts before the first pull, so nothing stored between the two
        # is missed: whatever it wakes us for, the next pull reads.
        self._stop_watching: Callable[[], Coroutine[Any, Any, None]] | None = client.run(
            client.watch(stream, subject, self._wake) if notice is None
            else client.notice(notice, self._wake)
        )
        super().__init__(recorder=recorder, gt=gt, topics=topics)

    def _wake(self) -> None:
        # Before the base class has made its event, the first pull is still to come.
        event: Event | None = getattr(self, "_has_been_notified", None)
        if event is not None:
            event.set()

    def stop(self) -> None:
        super().stop()
        stop_watching, self._stop_watching = self._stop_watching, None
        client = self._client
        # A connection closed with its factory has taken its consumers with it.
        if stop_watching is not None and not client.closed:
            with contextlib.suppress(Exception):
                client.submit(stop_watching()).result(5.0)
