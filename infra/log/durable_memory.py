"""The durable feed (infra.log.durable) on the in-memory log (infra.log.memory), for leader
duties under unit test.

It keeps the JetStream consumer's rules that the duties rely on: a cursor per name kept
with the log object (a new subscriber of the name, a restarted duty, goes on from it),
events of the feed's subjects in log order, a delivery not acknowledged within the ack
wait delivered again, one given back delivered again after its delay, redeliveries due
before new events, no new event while max_ack_pending are outstanding, foreign records
skipped, every call failing while the log is set unavailable. Subscribers look for what
is due every POLL_S (the log wakes no one but its tails). tests/contract/test_durable.py
holds it to the same suite as the JetStream consumer.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from dataclasses import dataclass

from infra.log.durable import Delivery, DurableSpec
from infra.log.memory import InMemoryEventLog
from infra.log.recorded import RecordedEvent, StoreUnavailable

POLL_S = 0.005
PAGE = 1000

# Each log's feeds by name: they live as long as the log object does.
_FEEDS: weakref.WeakKeyDictionary[InMemoryEventLog, dict[str, _Feed]] = (
    weakref.WeakKeyDictionary())


class InMemoryDurable:
    def __init__(self, log: InMemoryEventLog, spec: DurableSpec) -> None:
        self.log = log
        self.spec = spec

    async def subscribe(self) -> InMemorySubscription:
        if self.log.unavailable:
            raise StoreUnavailable("the in-memory log is set unavailable")
        feeds = _FEEDS.setdefault(self.log, {})
        feed = feeds.get(self.spec.name)
        if feed is None:
            feed = feeds[self.spec.name] = _Feed(self.log, self.spec)
        feed.spec = self.spec  # as a consumer added again with a new configuration
        return InMemorySubscription(feed)


@dataclass
class _Outstanding:
    """An event delivered and not acknowledged, and when it is to come again."""

    event: RecordedEvent
    due: float  # time.monotonic()


class _Feed:
    """One name's cursor: the log read up to `read_to`, the events read and not yet
    delivered (held back by max_ack_pending), those delivered and not acknowledged."""

    def __init__(self, log: InMemoryEventLog, spec: DurableSpec) -> None:
        self.log = log
        self.spec = spec
        self.read_to = 0
        self.unsent: deque[RecordedEvent] = deque()
        self.outstanding: dict[int, _Outstanding] = {}  # by position
        self._taking = asyncio.Lock()

    async def take(self, most: int) -> list[Delivery]:
        async with self._taking:
            now = time.monotonic()
            due = sorted(p for p, held in self.outstanding.items() if held.due <= now)
            taken = [self._deliver(self.outstanding[p].event, now) for p in due[:most]]
            room = min(most - len(taken), self.spec.max_ack_pending - len(self.outstanding))
            if room > 0:
                await self._read_new()
            while room > 0 and self.unsent:
                taken.append(self._deliver(self.unsent.popleft(), now))
                room -= 1
            return taken

    def _deliver(self, event: RecordedEvent, now: float) -> Delivery:
        self.outstanding[event.position] = _Outstanding(event, now + self.spec.ack_wait)
        return InMemoryDelivery(self, event)

    async def _read_new(self) -> None:
        """The feed's events after `read_to`, in log order (each subject filter read up
        to the same end, so none is passed over), foreign records skipped by the log."""
        _, end = await self.log.bounds()
        if end <= self.read_to:
            return
        found: dict[int, RecordedEvent] = {}
        for subject in self.spec.subjects:
            after = self.read_to
            while True:
                page = await self.log.read_page(after, PAGE, subject)
                found.update((e.position, e) for e in page.events if e.position <= end)
                if page.at_end or page.last >= end:
                    break
                after = page.last
        self.read_to = end
        self.unsent.extend(found[position] for position in sorted(found))

    def told(self, position: int, due: float | None) -> None:
        """Acknowledged (None), or to come again at `due`; what the log, set unavailable,
        is not told is left to the ack wait."""
        held = self.outstanding.get(position)
        if held is None or self.log.unavailable:
            return
        if due is None:
            del self.outstanding[position]
        else:
            held.due = due


class InMemorySubscription:
    def __init__(self, feed: _Feed) -> None:
        self.feed = feed
        self.closed = False

    async def next_batch(self, most: int, wait: float = 1.0) -> list[Delivery]:
        deadline = time.monotonic() + wait
        while not self.closed:
            if self.feed.log.unavailable:
                raise StoreUnavailable("the in-memory log is set unavailable")
            taken = await self.feed.take(most)
            if taken:
                return taken
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(POLL_S, left))
        return []

    async def close(self) -> None:
        self.closed = True


class InMemoryDelivery:
    __slots__ = ("_event", "feed")

    def __init__(self, feed: _Feed, event: RecordedEvent) -> None:
        self.feed = feed
        self._event = event

    @property
    def event(self) -> RecordedEvent:
        return self._event

    async def ack(self) -> None:
        self.feed.told(self._event.position, None)

    async def nak(self, delay: float = 0) -> None:
        self.feed.told(self._event.position, time.monotonic() + delay)

    async def in_progress(self) -> None:
        self.feed.told(self._event.position, time.monotonic() + self.feed.spec.ack_wait)
