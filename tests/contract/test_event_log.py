"""One suite, two adapters of the EventLog port (infra.log.port): the JetStream store on a
real nats-server, and the in-memory log the unit tests of handlers and leader duties run
on. Whatever a service may rely on is asserted here, so the in-memory log cannot drift
from the product's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from nats.aio.client import Client

from domain.agents.agent import Agent
from infra.caller import current_identity
from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog, subject_matches
from infra.log.port import EventLog
from infra.log.recorded import ConcurrencyConflict, RecordedEvent
from infra.log.streams import provision
from infra.names import Header, Names
from tests.support import eventually

# Writes a record as another writer would, no checks but the log's own: the position.
PutRaw = Callable[[str, bytes, dict[str, str]], Awaitable[int]]


@dataclass
class Adapter:
    log: EventLog
    names: Names
    put_raw: PutRaw


@pytest.fixture(params=["memory", "jetstream"])
async def adapter(request: pytest.FixtureRequest, nc: Client, names: Names) -> Adapter:
    if request.param == "memory":
        memory = InMemoryEventLog(names, create_mapper())

        async def put_in_memory(subject: str, data: bytes, headers: dict[str, str]) -> int:
            return memory.append_foreign(subject, data, headers)

        return Adapter(memory, names, put_in_memory)
    js = nc.jetstream()
    await provision(js, names, heartbeat_history=10)

    async def publish(subject: str, data: bytes, headers: dict[str, str]) -> int:
        return int((await js.publish(subject, data, headers=headers)).seq)

    return Adapter(EventStore(js, names, create_mapper()), names, publish)


def new_agent(agent_id: str = "a1") -> Agent:
    return Agent(agent_id, ["cpu"], 2, {}, [])


async def created(log: EventLog, agent_id: str) -> int:
    [position] = await log.append("agent", new_agent(agent_id).collect_events(), 0)
    return position


class TestAppend:
    async def test_an_event_reads_back_with_its_causes_and_sender(self, adapter):
        log = adapter.log
        token = current_identity.set("w1")
        try:
            [position] = await log.append("agent", new_agent().collect_events(), 0,
                                          "cause-1", "corr-1")
        finally:
            current_identity.reset(token)
        [recorded] = await log.read(position - 1, 1)
        assert (recorded.position, recorded.kind, recorded.aggregate_id, recorded.name) == (
            position, "agent", "a1", "Registered")
        assert recorded.subject == adapter.names.event("agent", "a1", "Registered")
        assert (recorded.causation_id, recorded.correlation_id) == ("cause-1", "corr-1")
        assert recorded.identity == "w1"
        assert recorded.event_id and await log.event_id_at(position) == recorded.event_id
        assert type(recorded.event).__qualname__ == "Agent.Registered"
        assert recorded.data()["capacity"] == 2

    async def test_events_of_one_command_are_chained_and_caused_by_the_first(self, adapter):
        agent = new_agent()
        agent.drain()
        first, second = await adapter.log.append("agent", agent.collect_events(), 0)
        assert second == first + 1
        history = await adapter.log.history("agent", "a1")
        assert history[1].causation_id == history[0].event_id

    async def test_creation_is_refused_when_the_aggregate_exists(self, adapter):
        await created(adapter.log, "a1")
        with pytest.raises(ConcurrencyConflict):
            await adapter.log.append("agent", new_agent().collect_events(), 0)
        assert await adapter.log.last_position() == 1

    async def test_creation_is_refused_however_far_the_aggregate_went_on(self, adapter):
        """A creation checks its own subject, which holds the aggregate's creation event
        and nothing else: an aggregate with later events still has that one."""
        log = adapter.log
        agent = new_agent()
        agent.drain()
        await log.append("agent", agent.collect_events(), 0)
        loaded, position = await log.load("agent", "a1")
        loaded.undrain()
        await log.append("agent", loaded.collect_events(), position)
        with pytest.raises(ConcurrencyConflict):
            await log.append("agent", new_agent().collect_events(), 0)
        assert len(await log.history("agent", "a1")) == 3

    async def test_of_racing_creators_exactly_one_wins(self, adapter):
        contenders = [adapter.log.append("agent", new_agent().collect_events(), 0)
                      for _ in range(5)]
        results = await asyncio.gather(*contenders, return_exceptions=True)
        assert sum(isinstance(r, list) for r in results) == 1
        assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 4
        assert len(await adapter.log.history("agent", "a1")) == 1

    async def test_an_event_after_the_creation_checks_the_whole_aggregate(self, adapter):
        """Only the creation (expected position 0) checks its own subject: an event of
        another class written since the load is a conflict."""
        log = adapter.log
        position = await created(log, "a1")
        first, _ = await log.load("agent", "a1")
        second, _ = await log.load("agent", "a1")
        first.drain()
        second.deregister(1)
        await log.append("agent", first.collect_events(), position)
        with pytest.raises(ConcurrencyConflict):
            await log.append("agent", second.collect_events(), position)

    async def test_of_racing_writers_on_one_position_exactly_one_wins(self, adapter):
        log = adapter.log
        position = await created(log, "a1")
        contenders = []
        for _ in range(5):
            agent, _ = await log.load("agent", "a1")
            agent.drain()
            contenders.append(log.append("agent", agent.collect_events(), position))
        results = await asyncio.gather(*contenders, return_exceptions=True)
        assert sum(isinstance(r, list) for r in results) == 1
        assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 4
        assert len(await log.history("agent", "a1")) == 2

    async def test_another_aggregate_does_not_move_the_expected_position(self, adapter):
        log = adapter.log
        position = await created(log, "a1")
        await created(log, "a10")  # a longer id sharing the prefix, and another subject
        agent, loaded_at = await log.load("agent", "a1")
        assert loaded_at == position
        agent.drain()
        assert await log.append("agent", agent.collect_events(), position)

    async def test_a_retried_record_of_the_same_message_id_is_written_once(self, adapter):
        stored = adapter.log.mapper.to_stored_event(new_agent().collect_events()[0])
        headers = {Header.MSG_ID: "event-1", Header.EVENT: "[1,0,null,null]"}
        subject = adapter.names.event("agent", "a1", "Registered")
        first = await adapter.put_raw(subject, stored.state, dict(headers))
        again = await adapter.put_raw(subject, stored.state, dict(headers))
        assert again == first
        assert len(await adapter.log.history("agent", "a1")) == 1


class TestRead:
    async def test_a_load_rebuilds_the_aggregate_and_its_position(self, adapter):
        agent = new_agent()
        agent.drain()
        positions = await adapter.log.append("agent", agent.collect_events(), 0)
        loaded, position = await adapter.log.load("agent", "a1")
        assert position == positions[-1]
        assert loaded.draining is True and loaded.version == 2
        assert await adapter.log.load("agent", "nobody") == (None, 0)

    async def test_pages_after_a_position_under_a_filter(self, adapter):
        for i in range(5):
            await created(adapter.log, f"a{i}")
        page = await adapter.log.read_page(after=1, limit=2)
        assert [e.aggregate_id for e in page.events] == ["a1", "a2"]
        assert (page.last, page.at_end) == (3, False)
        only = await adapter.log.read(subject_filter=adapter.names.aggregate_events("agent",
                                                                                    "a3"))
        assert [e.aggregate_id for e in only] == ["a3"]
        end = await adapter.log.read_page(after=3, limit=10)
        assert (end.last, end.at_end) == (5, True)

    async def test_iteration_goes_page_by_page_up_to_a_bound(self, adapter):
        for i in range(7):
            await created(adapter.log, f"a{i}")
        every = [e.position async for e in adapter.log.iterate(batch=2)]
        assert every == list(range(1, 8))
        bounded = [e.position async for e in adapter.log.iterate(after=2, until=5, batch=2)]
        assert bounded == [3, 4, 5]

    async def test_bounds_of_an_empty_then_a_written_log(self, adapter):
        assert await adapter.log.bounds() == (1, 0)
        assert await adapter.log.event_id_at(1) is None
        await created(adapter.log, "a1")
        assert await adapter.log.bounds() == (1, 1)
        assert await adapter.log.last_position() == 1

    async def test_the_latest_carried_forward_is_found(self, adapter):
        log = adapter.log
        position = await created(log, "a1")
        assert await log.last_carried_forward("agent", "a1") is None
        agent, _ = await log.load("agent", "a1")
        agent.carry_forward()
        [carried] = await log.append("agent", agent.collect_events(), position)
        assert await log.last_carried_forward("agent", "a1") == carried
        loaded, at = await log.load("agent", "a1", carried - 1)
        assert loaded.capacity == 2 and at == carried


class TestForeignRecords:
    async def test_a_record_we_did_not_write_is_skipped_and_appends_go_on_past_it(
            self, adapter):
        log = adapter.log
        position = await created(log, "a1")
        foreign = await adapter.put_raw(adapter.names.event("agent", "a1", "DeclaredDead"),
                                        b"{}", {})
        assert [e.position for e in await log.read()] == [position]
        assert log.foreign.skipped == 1
        agent, expected = await log.load("agent", "a1")
        assert expected == foreign  # the subject's last record, foreign or not
        agent.drain()
        [drained] = await log.append("agent", agent.collect_events(), expected)
        assert drained == foreign + 1

    async def test_a_tail_skips_it_and_says_where(self, adapter):
        log = adapter.log
        await created(log, "a1")
        foreign = await adapter.put_raw(adapter.names.event("agent", "a1", "DeclaredDead"),
                                        b"{}", {})
        await created(log, "a2")
        seen: list[int] = []
        skipped: list[int] = []

        async def collect(event: RecordedEvent) -> None:
            seen.append(event.position)

        tailing = await log.tail(0, collect, skipped=lambda at, _: skipped.append(at))
        try:
            await eventually(lambda: seen == [1, 3], what="both events tailed")
            assert skipped == [foreign]
        finally:
            await tailing.unsubscribe()


class TestTail:
    async def test_the_past_then_live_events_in_order_under_a_filter(self, adapter):
        log = adapter.log
        await created(log, "a0")
        seen: list[str] = []
        only_a: list[str] = []

        async def collect(event: RecordedEvent) -> None:
            seen.append(event.aggregate_id)

        async def collect_a2(event: RecordedEvent) -> None:
            only_a.append(event.aggregate_id)

        everything = await log.tail(0, collect)
        filtered = await log.tail(0, collect_a2, adapter.names.aggregate_events("agent", "a2"))
        try:
            for i in (1, 2, 3):
                await created(log, f"a{i}")
            await eventually(lambda: seen == ["a0", "a1", "a2", "a3"], what="all in order")
            await eventually(lambda: only_a == ["a2"], what="the filtered tail")
        finally:
            await everything.unsubscribe()
            await filtered.unsubscribe()
        await created(log, "a4")
        last = await log.last_position()
        assert [e.position for e in await log.read(last - 1)] == [last]
        assert seen == ["a0", "a1", "a2", "a3"]  # nothing after unsubscribe


def test_nats_subject_matching() -> None:
    assert subject_matches("a.*.c", "a.b.c") and not subject_matches("a.*.c", "a.b.b.c")
    assert subject_matches("a.>", "a.b.c") and not subject_matches("a.>", "a")
    assert not subject_matches("a.b", "a.b.c") and subject_matches("a.b", "a.b")
