"""One suite, two adapters of the durable feed (infra.log.durable): a JetStream durable
consumer on a real nats-server, and the feed on the in-memory log that the failover
reactor's unit tests run on. What a leader duty relies on is asserted here, so the
in-memory feed cannot drift from the product's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from nats.aio.client import Client

from domain.agents.agent import Agent
from infra.log.durable import Delivery, DurableFeed, DurableSpec, DurableSubscription
from infra.log.durable_jetstream import JetStreamDurable
from infra.log.durable_memory import InMemoryDurable
from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.port import EventLog
from infra.log.streams import provision
from infra.names import AGENT, Names
from tests.support import eventually

# Short, so that what waits for it (a redelivery) waits little.
ACK_WAIT_S = 0.5
# A delay that no test waits out: what is given back with it does not come again here.
LONG_S = 600.0

# Writes a record as another writer would, no checks but the log's own: the position.
PutRaw = Callable[[str, bytes, dict[str, str]], Awaitable[int]]


@dataclass
class Adapter:
    log: EventLog
    names: Names
    put_raw: PutRaw
    make: Callable[[DurableSpec], DurableFeed]
    opened: list[DurableSubscription] = field(default_factory=list)

    def spec(self, *events: str, name: str = "duty", most: int = 64) -> DurableSpec:
        subjects = tuple(self.names.event(AGENT, "*", event) for event in events)
        return DurableSpec(name, subjects, ack_wait=ACK_WAIT_S, max_ack_pending=most)

    async def subscribe(self, spec: DurableSpec) -> DurableSubscription:
        """A subscriber of a feed made anew (as a restarted duty makes it)."""
        subscription = await self.make(spec).subscribe()
        self.opened.append(subscription)
        return subscription


@pytest.fixture(params=["memory", "jetstream"])
async def adapter(request: pytest.FixtureRequest, nc: Client,
                  names: Names) -> AsyncIterator[Adapter]:
    if request.param == "memory":
        memory = InMemoryEventLog(names, create_mapper())

        async def put_in_memory(subject: str, data: bytes, headers: dict[str, str]) -> int:
            return memory.append_foreign(subject, data, headers)

        made = Adapter(memory, names, put_in_memory, lambda spec: InMemoryDurable(memory, spec))
    else:
        js = nc.jetstream()
        await provision(js, names, heartbeat_history=10)
        store = EventStore(js, names, create_mapper())

        async def publish(subject: str, data: bytes, headers: dict[str, str]) -> int:
            return int((await js.publish(subject, data, headers=headers)).seq)

        made = Adapter(store, names, publish, lambda spec: JetStreamDurable(js, store, spec))
    yield made
    for subscription in made.opened:
        await subscription.close()


async def registered(log: EventLog, agent_id: str, *, leaves: bool = False,
                     drains: bool = False) -> list[int]:
    """An agent's Registered, then DrainStarted and Deregistered if asked: positions."""
    agent = Agent(agent_id, ["cpu"], 1, {}, [])
    if drains:
        agent.drain()
    if leaves:
        agent.deregister(1)
    return await log.append(AGENT, agent.collect_events(), 0)


async def collect(subscription: DurableSubscription, count: int,
                  most: int = 64) -> list[Delivery]:
    """Deliveries taken until there are `count`: every one taken (more if more came)."""
    taken: list[Delivery] = []

    async def enough() -> bool:
        taken.extend(await subscription.next_batch(most, wait=0.2))
        return len(taken) >= count

    await eventually(enough, what=f"{count} deliveries")
    return taken


def positions(deliveries: list[Delivery]) -> list[int]:
    return [delivery.event.position for delivery in deliveries]


async def test_the_events_of_its_subjects_come_in_log_order(adapter: Adapter) -> None:
    a1 = await registered(adapter.log, "a1", drains=True, leaves=True)
    a2 = await registered(adapter.log, "a2")
    subscription = await adapter.subscribe(adapter.spec("Deregistered", "Registered"))
    taken = await collect(subscription, 3)
    # Neither DrainStarted (not a subject of the feed) nor in the order of the subjects.
    assert positions(taken) == [a1[0], a1[2], a2[0]]
    assert [d.event.name for d in taken] == ["Registered", "Deregistered", "Registered"]
    assert taken[1].event.aggregate_id == "a1" and taken[1].event.event_id
    later = await registered(adapter.log, "a3")
    assert positions(await collect(subscription, 1)) == later


async def test_only_what_is_not_acknowledged_comes_again_after_the_ack_wait(
        adapter: Adapter) -> None:
    first = await registered(adapter.log, "a1")
    second = await registered(adapter.log, "a2")
    subscription = await adapter.subscribe(adapter.spec("Registered"))
    acknowledged, left = await collect(subscription, 2)
    await acknowledged.ack()
    again = await collect(subscription, 1)  # the ack wait over: the one left, alone
    assert positions(again) == second and again[0].event.event_id == left.event.event_id
    await again[0].ack()
    third = await registered(adapter.log, "a3")
    # Both acknowledged, whatever waits now waits for new events only.
    assert positions(await collect(subscription, 1)) == third
    assert first == positions([acknowledged])


async def test_one_given_back_comes_again_after_its_delay(adapter: Adapter) -> None:
    await registered(adapter.log, "a1")
    second = await registered(adapter.log, "a2")
    subscription = await adapter.subscribe(adapter.spec("Registered"))
    held, soon = await collect(subscription, 2)
    await held.nak(delay=LONG_S)
    await soon.nak(delay=0.1)
    # The earlier event is held by its delay, the later one comes again after its own.
    again = await collect(subscription, 1)
    assert positions(again) == second
    await again[0].in_progress()  # still being handled: said so, nothing else changes
    await again[0].ack()
    fourth = await registered(adapter.log, "a4")
    assert positions(await collect(subscription, 1)) == fourth


async def test_no_new_event_while_max_ack_pending_are_outstanding(adapter: Adapter) -> None:
    first = await registered(adapter.log, "a1")
    await registered(adapter.log, "a2")
    third = await registered(adapter.log, "a3")
    subscription = await adapter.subscribe(adapter.spec("Registered", most=2))
    one, two = await collect(subscription, 2)
    assert positions([one]) == first
    assert await subscription.next_batch(10, wait=0.2) == []  # the third held back
    await one.ack()
    assert positions(await collect(subscription, 1)) == third
    await two.ack()


async def test_a_new_subscriber_goes_on_from_the_first_event_not_acknowledged(
        adapter: Adapter) -> None:
    await registered(adapter.log, "a1")
    second = await registered(adapter.log, "a2")
    spec = adapter.spec("Registered", name="kept")
    old = await adapter.subscribe(spec)
    done, left = await collect(old, 2)
    await done.ack()
    await left.nak()  # given back as a stopping duty does, for the next one at once
    await old.close()
    third = await registered(adapter.log, "a3")

    new = await adapter.subscribe(spec)  # a restarted duty: the feed made anew
    taken = await collect(new, 2)
    assert positions(taken) == second + third  # what was given back first, then the new
    # A feed of another name has a cursor of its own: from the log's start.
    other = await adapter.subscribe(adapter.spec("Registered", name="other"))
    assert len(await collect(other, 3)) == 3


async def test_a_record_we_did_not_write_is_skipped_not_delivered(adapter: Adapter) -> None:
    subject = adapter.names.event(AGENT, "stranger", "Registered")
    await adapter.put_raw(subject, b"not ours", {})
    ours = await registered(adapter.log, "a1")
    subscription = await adapter.subscribe(adapter.spec("Registered"))
    taken = await collect(subscription, 1)
    assert positions(taken) == ours
    assert adapter.log.foreign.skipped == 1
    # Ours comes again once an ack wait is over; the record before it does not.
    again = await collect(subscription, 1)
    assert positions(again) == ours and adapter.log.foreign.skipped == 1
    await again[0].ack()
