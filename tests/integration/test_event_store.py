"""The JetStream event store: OCC per aggregate, idempotency, headers, reading and tailing."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from nats.aio.client import Client

from domain.agents.agent import Agent
from infra.log.event_store import ConcurrencyConflict, EventStore, RecordedEvent
from infra.log.format.codec import create_mapper
from infra.log.streams import provision
from infra.names import Header, Names
from tests.support import eventually


@pytest.fixture
async def store(nc: Client, names: Names) -> EventStore:
    await provision(nc.jetstream(), names, heartbeat_history=10)
    return EventStore(nc.jetstream(), names, create_mapper())


def new_agent(agent_id: str = "a1") -> Agent:
    return Agent(agent_id, ["cpu"], 2, {}, [])


class TestAppend:
    async def test_writes_one_subject_per_event_with_causal_headers(self, store, nc, names):
        agent = new_agent()
        [position] = await store.append("agent", agent.collect_events(), 0, "cause-1", "corr-1")

        raw = await nc.jetstream().get_msg(names.events_stream, position)

        assert raw.subject == names.event("agent", "a1", "Registered")
        headers = raw.headers or {}
        # Version, identity (0: the orchestrator), causation and correlation in one header.
        assert orjson.loads(headers[Header.EVENT]) == [1, 0, "cause-1", "corr-1"]
        # The id is the Nats-Msg-Id alone, and the topic is the one the subject implies:
        # neither is stored twice. Nor is the stream's name, nor, for a creation, the
        # aggregate's subjects: it expects none on its own subject (position 0).
        assert set(headers) == {Header.MSG_ID, Header.EVENT, Header.EXPECTED_LAST_SUBJECT_SEQ}
        assert headers[Header.EXPECTED_LAST_SUBJECT_SEQ] == "0"
        assert len(headers[Header.MSG_ID]) == 16
        [recorded] = await store.read(position - 1, 1)
        assert recorded.event_id == headers[Header.MSG_ID]
        assert (recorded.causation_id, recorded.correlation_id) == ("cause-1", "corr-1")
        assert recorded.identity == "orchestrator"
        assert type(recorded.event).__qualname__ == "Agent.Registered"

    async def test_creation_is_refused_when_the_aggregate_exists(self, store):
        await store.append("agent", new_agent().collect_events(), 0)
        with pytest.raises(ConcurrencyConflict):
            await store.append("agent", new_agent().collect_events(), 0)

    async def test_two_writers_on_one_version_one_wins_and_the_log_holds_one(self, store):
        await store.append("agent", new_agent().collect_events(), 0)
        first, position = await store.load("agent", "a1")
        second, _ = await store.load("agent", "a1")
        first.drain()
        second.deregister(1)

        results = await asyncio.gather(
            store.append("agent", first.collect_events(), position),
            store.append("agent", second.collect_events(), position),
            return_exceptions=True,
        )

        assert sum(isinstance(r, list) for r in results) == 1
        assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 1
        history = await store.history("agent", "a1")
        assert len(history) == 2
        assert history[1].name in ("DrainStarted", "Deregistered")

    async def test_of_ten_racing_writers_exactly_one_wins(self, store):
        await store.append("agent", new_agent().collect_events(), 0)
        _, position = await store.load("agent", "a1")
        contenders = []
        for _ in range(10):
            agent, _ = await store.load("agent", "a1")
            agent.drain()
            contenders.append(store.append("agent", agent.collect_events(), position))

        results = await asyncio.gather(*contenders, return_exceptions=True)

        assert sum(isinstance(r, list) for r in results) == 1
        assert len(await store.history("agent", "a1")) == 2

    async def test_a_retried_publish_of_the_same_event_is_written_once(self, store, nc, names):
        agent = new_agent()
        stored = store.mapper.to_stored_event(agent.collect_events()[0])
        headers = {Header.MSG_ID: "event-1", Header.TOPIC: stored.topic, Header.VERSION: "1"}
        js = nc.jetstream()
        subject = names.event("agent", "a1", "Registered")

        first = await js.publish(subject, stored.state, headers=dict(headers))
        again = await js.publish(subject, stored.state, headers=dict(headers))

        assert again.duplicate is True and again.seq == first.seq
        assert len(await store.history("agent", "a1")) == 1


class TestRead:
    async def test_load_rebuilds_the_aggregate_and_its_position(self, store):
        agent = new_agent()
        agent.drain()
        positions = await store.append("agent", agent.collect_events(), 0)

        loaded, position = await store.load("agent", "a1")

        assert position == positions[-1]
        assert loaded.draining is True and loaded.incarnation == 1 and loaded.version == 2

    async def test_unknown_aggregate_loads_as_none(self, store):
        assert await store.load("agent", "nobody") == (None, 0)

    async def test_read_pages_after_a_position_under_a_filter(self, store, names):
        for i in range(5):
            await store.append("agent", new_agent(f"a{i}").collect_events(), 0)

        page = await store.read(after=1, limit=2)
        only_a3 = await store.read(subject_filter=names.aggregate_events("agent", "a3"))

        assert [e.aggregate_id for e in page] == ["a1", "a2"]
        assert [e.aggregate_id for e in only_a3] == ["a3"]

    async def test_tail_delivers_the_past_then_live_events_in_order(self, store):
        await store.append("agent", new_agent("a0").collect_events(), 0)
        seen: list[RecordedEvent] = []

        async def collect(event: RecordedEvent) -> None:
            seen.append(event)

        subscription = await store.tail(0, collect)
        try:
            await store.append("agent", new_agent("a1").collect_events(), 0)
            await eventually(lambda: len(seen) == 2, what="two events tailed")
        finally:
            await subscription.unsubscribe()
        assert [e.position for e in seen] == [1, 2]
        assert [e.aggregate_id for e in seen] == ["a0", "a1"]
