"""The failover reactor's consumer on a real server. An event whose reaction failed, or
that came before the task board caught up with it, comes again about a second later,
not after the 30 s ack wait; a reaction going on long is kept from coming again; and one
stopped with the lead goes to the next leader at once.

The reactions themselves are recorded, not made (moving tasks is tested end to end in
test_failover.py): what is under test is what the consumer is told, and when."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo
from nats.js.errors import NotFoundError

import services.leader.failover as failover
from domain.agents.agent import Agent
from domain.tasks.placement import Strategy
from infra.log.durable_jetstream import JetStreamDurable
from infra.log.event_store import EventStore, RecordedEvent
from infra.log.format.codec import create_mapper
from infra.log.streams import provision
from infra.names import AGENT, Names
from projections.position import Position
from services.leader.failover import FailoverReactor
from services.metrics import Metrics

ACK_WAIT_S = 2.0  # the consumer's ack wait where a test shortens it


class Reactions(FailoverReactor):
    """Records each reaction's event; fails the first `failures` of them, or holds each
    until `release` is set."""

    def __init__(self, nc: Client, names: Names, store: EventStore, position: Position,
                 failures: int = 0) -> None:
        feed = JetStreamDurable(nc.jetstream(), store, failover.failover_feed(names))
        super().__init__(feed, None, None, None,  # type: ignore[arg-type]
                         position, Strategy.LEAST_LOADED, Metrics())
        self.reacted: list[str] = []
        self.failures = failures
        self.release: asyncio.Event | None = None

    async def react(self, event: RecordedEvent) -> None:
        self.reacted.append(event.event_id)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("refused: the log cannot be written yet")
        if self.release is not None:
            await self.release.wait()


@pytest.fixture
async def store(nc: Client, names: Names) -> EventStore:
    await provision(nc.jetstream(), names, heartbeat_history=1)
    return EventStore(nc.jetstream(), names, create_mapper())


async def deregistered(store: EventStore, agent_id: str) -> tuple[int, int]:
    """An agent registered and deregistered (a failover trigger): the two positions."""
    agent = Agent(agent_id, ["cpu"], 1, {}, [])
    agent.deregister(1)
    first, last = await store.append(AGENT, agent.collect_events(), 0)
    return first, last


@pytest.fixture
async def running() -> AsyncIterator[Callable[[FailoverReactor], None]]:
    tasks: list[asyncio.Task[None]] = []
    yield lambda reactor: tasks.append(asyncio.ensure_future(reactor.run()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def consumer(nc: Client, names: Names, name: str = failover.CONSUMER) -> ConsumerInfo:
    return await nc.jetstream().consumer_info(names.events_stream, name)


async def until(probe: Callable[[], bool | Awaitable[bool]], timeout: float,
                what: str) -> None:
    """Poll a check, plain or asked of the server, until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = probe()
            if inspect.isawaitable(answer):
                answer = await answer
        except NotFoundError:  # the reactor has not made its consumer yet
            answer = False
        if answer:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def all_acknowledged(nc: Client, names: Names) -> bool:
    info = await consumer(nc, names)
    return info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_failed_reaction_is_tried_again_in_a_second_not_after_the_ack_wait(
        nc: Client, names: Names, store: EventStore,
        running: Callable[[FailoverReactor], None]) -> None:
    position = Position()
    _, last = await deregistered(store, "a1")
    position.advance(last)
    reactor = Reactions(nc, names, store, position, failures=1)
    running(reactor)
    # Well within the 30 s ack wait, after which the server would give it again anyway.
    await until(lambda: len(reactor.reacted) == 2, 10.0,
                "the failed reaction tried again")
    assert reactor.reacted[0] == reactor.reacted[1]
    await until(lambda: all_acknowledged(nc, names), 10.0, "the event acknowledged")
    assert len(reactor.reacted) == 2


async def test_an_event_ahead_of_the_task_board_is_given_back_until_it_catches_up(
        nc: Client, names: Names, store: EventStore,
        running: Callable[[FailoverReactor], None]) -> None:
    position = Position()
    _, last = await deregistered(store, "a1")
    position.advance(last - 1)  # the board has not applied the death yet
    reactor = Reactions(nc, names, store, position)
    reactor.catch_up_timeout = 0.2
    running(reactor)

    async def given_back_twice() -> bool:
        delivered = (await consumer(nc, names)).delivered
        return delivered is not None and delivered.consumer_seq >= 3

    await until(given_back_twice, 10.0, "the event delivered again while the board lags")
    assert reactor.reacted == []  # never moved on a board that may miss assignments
    position.advance(last)
    await until(lambda: len(reactor.reacted) == 1, 10.0,
                "the reaction once the board caught up")
    await until(lambda: all_acknowledged(nc, names), 10.0, "the event acknowledged")


async def test_a_reaction_going_on_past_the_ack_wait_is_not_given_again(
        nc: Client, names: Names, store: EventStore, monkeypatch: pytest.MonkeyPatch,
        running: Callable[[FailoverReactor], None]) -> None:
    # Said in progress ten times an ack wait: a loaded machine may hold the loop a while.
    monkeypatch.setattr(failover, "ACK_WAIT_S", ACK_WAIT_S)
    monkeypatch.setattr(failover, "IN_PROGRESS_EVERY_S", ACK_WAIT_S / 10)
    position = Position()
    first, last = await deregistered(store, "a1")
    position.advance(last)
    reactor = Reactions(nc, names, store, position)
    reactor.release = asyncio.Event()  # the reaction goes on until the test says
    running(reactor)
    await until(lambda: len(reactor.reacted) == 1, 10.0, "the reaction")

    # A witness of the ack wait passing: a consumer of the same log with the same wait,
    # whose message is not acknowledged, so it comes again once that wait is over.
    js = nc.jetstream()
    await js.add_consumer(names.events_stream, ConsumerConfig(
        durable_name="witness", ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
        filter_subject=names.event(AGENT, "a1", "Registered")))
    witness = await js.pull_subscribe_bind("witness", stream=names.events_stream)
    for _ in range(3):  # delivered, then given again twice: two ack waits over
        (message,) = await witness.fetch(1, timeout=10.0)
        assert message.metadata.sequence.stream == first

    assert (await consumer(nc, names)).num_redelivered == 0
    assert len(reactor.reacted) == 1
    reactor.release.set()
    await until(lambda: all_acknowledged(nc, names), 10.0, "the event acknowledged")



async def test_a_reaction_stopped_with_the_lead_goes_to_the_next_leader_at_once(
        nc: Client, names: Names, store: EventStore,
        running: Callable[[FailoverReactor], None]) -> None:
    position = Position()
    _, last = await deregistered(store, "a1")
    position.advance(last)
    old = Reactions(nc, names, store, position)
    old.release = asyncio.Event()  # its moves never finish
    leading = asyncio.ensure_future(old.run())
    await until(lambda: len(old.reacted) == 1, 10.0, "the old leader's reaction")
    leading.cancel()  # the lead is lost
    await asyncio.gather(leading, return_exceptions=True)

    new = Reactions(nc, names, store, position)
    running(new)
    # Given back, not left to the 30 s ack wait.
    await until(lambda: len(new.reacted) == 1, 10.0, "the next leader's reaction")
    assert new.reacted == old.reacted
    await until(lambda: all_acknowledged(nc, names), 10.0, "the event acknowledged")
