"""A durable feed of the log, as a leader duty sees it: the events of some subjects
delivered at least once, in log order, each acknowledged once handled, given back (to
come again after a delay) when its handling failed, or said to be in progress while it
goes on. Where the feed has got to outlives its subscribers: a new one, after a crash or
on the next leader, goes on from the first event not acknowledged.

The port beside the log's own (infra.log.port), with two adapters:
`infra.log.durable_jetstream.JetStreamDurable` (a JetStream durable pull consumer, the
product's) and `infra.log.durable_memory.InMemoryDurable` (on the in-memory log, for
leader duties under unit test). tests/contract/test_durable.py runs one suite against
both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from infra.log.recorded import RecordedEvent


@dataclass(frozen=True)
class DurableSpec:
    """Which events a durable feed delivers, and its rules of redelivery."""

    name: str  # the feed's cursor is this name's: a subscriber of the same name goes on
    subjects: tuple[str, ...]  # subject filters (NATS wildcards), any of which matches
    ack_wait: float  # a delivery not acknowledged this many seconds after it comes again
    max_ack_pending: int  # deliveries not acknowledged at most: no new one beyond


class Delivery(Protocol):
    """One delivery of an event. Telling the feed is best effort: if the log cannot be
    told, the event comes again after the ack wait (at least once)."""

    @property
    def event(self) -> RecordedEvent: ...

    async def ack(self) -> None:
        """Handled: it does not come again."""
        ...

    async def nak(self, delay: float = 0) -> None:
        """Given back: it comes again `delay` seconds from now (at once if 0)."""
        ...

    async def in_progress(self) -> None:
        """Still being handled: its ack wait starts again."""
        ...


class DurableSubscription(Protocol):
    async def next_batch(self, most: int, wait: float = 1.0) -> list[Delivery]:
        """Wait up to `wait` seconds for one delivery, then take whatever else is there
        already, `most` in all: [] if none came. Redeliveries due come first, then new
        events, each in log order; none new while `max_ack_pending` are outstanding. A
        record the orchestrator did not write is skipped (infra.log.format.foreign), never
        delivered. StoreUnavailable when the log does not answer; TimeoutError when it
        answers too slowly (ask again)."""
        ...

    async def close(self) -> None:
        """Stop taking deliveries; those not acknowledged come again to a subscriber of
        the same name, when their ack wait or delay is over."""
        ...


class DurableFeed(Protocol):
    spec: DurableSpec

    async def subscribe(self) -> DurableSubscription:
        """A subscriber, the feed made if it does not exist yet (idempotent); it goes on
        from the first event not acknowledged. StoreUnavailable, TimeoutError: as
        `next_batch`."""
        ...
