"""The durable feed (infra.log.durable) on JetStream: a durable pull consumer of the
events stream, explicit acks, redelivered after its ack wait."""

from __future__ import annotations

import contextlib
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from infra.log.durable import Delivery, DurableSpec
from infra.log.event_store import EventStore
from infra.log.format.foreign import ForeignRecord
from infra.log.recorded import RecordedEvent, StoreUnavailable

# How long the rest of a batch is waited for once its first event came: only what is
# there already.
REST_WAIT_S = 0.005


class JetStreamDurable:
    def __init__(self, js: JetStreamContext, store: EventStore, spec: DurableSpec) -> None:
        self.js = js
        self.store = store
        self.spec = spec

    async def subscribe(self) -> JetStreamSubscription:
        stream = self.store.names.events_stream
        config = ConsumerConfig(
            durable_name=self.spec.name,
            filter_subjects=list(self.spec.subjects),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.spec.ack_wait,
            max_ack_pending=self.spec.max_ack_pending,
        )
        try:
            await self.js.add_consumer(stream, config)
            subscription = await self.js.pull_subscribe_bind(self.spec.name, stream=stream)
        except nats.errors.TimeoutError:
            raise  # a TimeoutError: asked again
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"durable consumer {self.spec.name}: {exc!r}") from exc
        return JetStreamSubscription(subscription, self.store)


class JetStreamSubscription:
    def __init__(self, subscription: Any, store: EventStore) -> None:
        self.subscription = subscription
        self.store = store

    async def next_batch(self, most: int, wait: float = 1.0) -> list[Delivery]:
        try:
            msgs = await self._fetch(most, wait)
        except nats.errors.TimeoutError:
            return []
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"durable consumer: {exc!r}") from exc
        return await self._readable(msgs)

    async def _fetch(self, most: int, wait: float) -> list[Msg]:
        """Wait for one event, then take whatever else is already there: a larger fetch
        would hold the first event back until its batch filled or expired."""
        msgs: list[Msg] = await self.subscription.fetch(1, timeout=wait)
        if most > 1:
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                msgs += await self.subscription.fetch(most - 1, timeout=REST_WAIT_S)
        return msgs

    async def _readable(self, msgs: list[Msg]) -> list[Delivery]:
        """The messages holding events, with their events; a record the orchestrator did
        not write is acknowledged and skipped (infra.log.format.foreign), never retried."""
        kept: list[Delivery] = []
        for msg in msgs:
            try:
                event = self.store.decode(msg)
            except ForeignRecord as foreign:
                self.store.foreign.skip(msg.metadata.sequence.stream, msg.subject, foreign)
                with contextlib.suppress(nats.errors.Error):
                    await msg.ack()
                continue
            kept.append(JetStreamDelivery(msg, event))
        return kept

    async def close(self) -> None:
        # A pull request of ours still waiting at the server would take the events given
        # back after this, and hold them for the ack wait: ended first.
        with contextlib.suppress(nats.errors.Error):
            await self.subscription.unsubscribe()


class JetStreamDelivery:
    """A message of the consumer and its event; what NATS is not told (it does not
    answer) is left to the ack wait."""

    __slots__ = ("_event", "msg")

    def __init__(self, msg: Msg, event: RecordedEvent) -> None:
        self.msg = msg
        self._event = event

    @property
    def event(self) -> RecordedEvent:
        return self._event

    async def ack(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self.msg.ack()

    async def nak(self, delay: float = 0) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self.msg.nak(delay=delay)

    async def in_progress(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self.msg.in_progress()
