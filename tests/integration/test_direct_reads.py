"""Reading the log as an auditor does, by direct gets (infra.log.direct_read): the same
events as through consumers, pages across records the orchestrator did not write, and
live following woken by the orchestrator's notice (services/audit/log_notice.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from domain.agents.agent import Agent
from infra.bus.embedded import EmbeddedNats
from infra.eventsourcing_jetstream.client import JetStreamClient
from infra.eventsourcing_jetstream.log_recorder import OrchestratorLogRecorder
from infra.log import direct_read
from infra.log.event_store import EventStore, RecordedEvent
from infra.log.format.codec import create_mapper
from infra.log.streams import provision
from infra.names import Names
from services.audit.log_notice import LogNotice
from services.audit.stream_read import stored_messages
from tests.support import eventually


@pytest.fixture
async def stores(nc: Client, names: Names) -> tuple[EventStore, EventStore]:
    """The orchestrator's store (consumers) and an auditor's (direct gets)."""
    await provision(nc.jetstream(), names, heartbeat_history=10)
    return (EventStore(nc.jetstream(), names, create_mapper()),
            EventStore(nc.jetstream(), names, create_mapper(), direct_reads=True))


def seen(events: list[RecordedEvent]) -> list[tuple[object, ...]]:
    return [(e.position, e.subject, e.kind, e.aggregate_id, e.name, e.event_id,
             e.causation_id, e.identity, e.recorded_at, e.data()) for e in events]


async def some_history(store: EventStore, agents: int) -> None:
    for number in range(agents):
        agent = Agent(f"a{number}", ["cpu"], 2, {}, [])
        [position] = await store.append("agent", agent.collect_events(), 0, f"c{number}")
        agent.drain()
        await store.append("agent", agent.collect_events(), position)


async def test_direct_gets_read_what_consumers_read_and_skip_foreign_records(
    stores: tuple[EventStore, EventStore], nc: Client, names: Names,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own, direct = stores
    monkeypatch.setattr(direct_read, "PAGE", 3)  # a read of 10 takes several requests
    await some_history(own, 4)
    # A record without the orchestrator's headers, on an event subject: skipped by both.
    await nc.jetstream().publish(names.event("agent", "a1", "Forged"), b"{}")
    agent = Agent("a9", ["cpu"], 2, {}, [])
    await own.append("agent", agent.collect_events(), 0)

    everything = [e async for e in own.iterate(0, batch=4)]
    assert [e.position for e in everything] == [1, 2, 3, 4, 5, 6, 7, 8, 10]
    assert seen([e async for e in direct.iterate(0, batch=4)]) == seen(everything)
    for after, limit in ((0, 10), (0, 9), (7, 2), (8, 1), (9, 5), (10, 5)):
        page, expected = await direct.read_page(after, limit), await own.read_page(after, limit)
        assert (seen(page.events), page.last, page.at_end) == (
            seen(expected.events), expected.last, expected.at_end), (after, limit)
    assert direct.foreign.skipped >= 1
    assert seen(await direct.history("agent", "a2")) == seen(await own.history("agent", "a2"))
    assert (await direct.load("agent", "a2"))[1] == (await own.load("agent", "a2"))[1]


async def test_stored_messages_have_their_own_subjects(nc: Client, names: Names,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    await provision(nc.jetstream(), names, heartbeat_history=10)
    monkeypatch.setattr(direct_read, "PAGE", 2)
    subjects = [names.liveness_silence(f"a{i}") for i in range(5)] + [names.liveness_watch("w")]
    for number, subject in enumerate(subjects):
        await nc.jetstream().publish(subject, str(number).encode())
    read = [(m.subject, m.data) async for m in stored_messages(
        nc.jetstream(), names.liveness_stream, names.liveness_wildcard)]
    assert read == [(s, str(i).encode()) for i, s in enumerate(subjects)]


async def test_a_direct_tail_is_woken_by_the_orchestrators_notice(
    stores: tuple[EventStore, EventStore], nc: Client, names: Names,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own, direct = stores
    # Only the notice wakes it within this test: its own look comes far later.
    monkeypatch.setattr(direct_read, "LOOK_EVERY_S", 600.0)
    await some_history(own, 1)
    notice = LogNotice(nc.publish, names.log_appended)
    got: list[RecordedEvent] = []

    async def collect(event: RecordedEvent) -> None:
        got.append(event)

    following = await direct.tail(1, collect)
    try:
        await eventually(lambda: [e.position for e in got] == [2], what="the tail read")
        for number in range(3):
            agent = Agent(f"b{number}", ["cpu"], 2, {}, [])
            [position] = await own.append("agent", agent.collect_events(), 0)
            notice.applied(position)
        await eventually(lambda: [e.position for e in got] == [2, 3, 4, 5],
                         what="the appended events followed")
        assert [e.aggregate_id for e in got[1:]] == ["b0", "b1", "b2"]
    finally:
        await following.unsubscribe()
        await notice.close()


async def test_the_notice_says_the_latest_position_at_most_every_20_ms(
    nc: Client, names: Names
) -> None:
    heard: list[tuple[float, bytes]] = []

    async def hear(msg: Msg) -> None:
        heard.append((time.monotonic(), msg.data))

    await nc.subscribe(names.log_appended, cb=hear)
    notice = LogNotice(nc.publish, names.log_appended)
    started = time.monotonic()
    try:
        notice.applied(1)  # the first goes at once
        await eventually(lambda: heard, what="the first notice")
        for position in range(2, 3001):  # a burst, with the loop free now and then
            notice.applied(position)
            if position % 100 == 0:
                await asyncio.sleep(0)
        await eventually(lambda: heard[-1][1] == b"3000", what="the last position said")
        took = time.monotonic() - started
        assert heard[0][1] == b"1"
        assert len(heard) <= took / 0.02 + 2, (len(heard), took)
        positions = [int(data) for _, data in heard]
        assert positions == sorted(set(positions))
    finally:
        await notice.close()


async def test_the_log_recorders_subscription_is_woken_by_the_notice(
    stores: tuple[EventStore, EventStore], nc: Client, names: Names,
    nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch,
) -> None:
    own, _ = stores
    monkeypatch.setattr(direct_read, "LOOK_EVERY_S", 600.0)  # the notice alone wakes it
    await some_history(own, 1)
    client = JetStreamClient([nats_server.url], name="log reader tests")
    recorder = OrchestratorLogRecorder(client, names)
    notice = LogNotice(nc.publish, names.log_appended)
    subscription = await asyncio.to_thread(recorder.subscribe, 2)
    try:
        agent = Agent("c1", ["cpu"], 2, {}, [])
        [position] = await own.append("agent", agent.collect_events(), 0)
        notice.applied(position)
        # The library's iterator blocks its thread; a deadline bounds the wait.
        notification = await asyncio.wait_for(asyncio.to_thread(next, subscription), 10)
        assert (notification.id, notification.originator_id) == (position, "c1")
    finally:
        subscription.stop()
        await notice.close()
        await asyncio.to_thread(client.close)
