"""Loading an aggregate for a command reads a bounded number of events, whatever its
history: a long one is carried forward (a CarriedForward event) and loads begin there.

Counted in events read from the log, not timed: the machine may be loaded.
"""

from __future__ import annotations

from typing import Any

import pytest
from nats.aio.client import Client

from domain.agents.agent import ALIVE, Agent
from domain.agents.commands import DeregisterAgent, RegisterAgent
from domain.base import CARRIED_FORWARD
from domain.errors import CommandRefused
from infra.log.event_store import EventStore, Page
from infra.log.format.codec import create_mapper
from infra.log.repository import CARRY_FORWARD_AFTER, Repository
from infra.log.streams import provision
from infra.names import AGENT, Names
from services.commands.registry import AgentRegistry

REGISTRATIONS = 300


class CountingStore(EventStore):
    """The event store, counting the events its reads return."""

    read_count = 0

    async def read_page(self, after: int = 0, limit: int = 1000,
                        subject_filter: str | None = None) -> Page:
        # Every read (read, history, load) goes through here.
        page = await super().read_page(after, limit, subject_filter)
        self.read_count += len(page.events)
        return page


@pytest.fixture
async def store(nc: Client, names: Names) -> CountingStore:
    await provision(nc.jetstream(), names, heartbeat_history=10)
    return CountingStore(nc.jetstream(), names, create_mapper())


def registry(store: EventStore, names: Names, keep: Any = lambda agent: agent.liveness != ALIVE,
             carry_forward_after: int | None = CARRY_FORWARD_AFTER) -> AgentRegistry:
    """As services.app builds it: a healthy agent is not cached, so each command on it
    loads it from the log."""
    return AgentRegistry(Repository(store, AGENT, keep=keep,
                                    carry_forward_after=carry_forward_after),
                         names, 1.0, known=lambda agent_id: True)


def large(agent_id: str) -> RegisterAgent:
    """About 16 KB of declarations (the command's limit is 64 KiB)."""
    services = [{"name": f"svc{s}", "address": f"10.0.0.{s}", "port": 80,
                 "meta": {f"k{k}": "v" * 100 for k in range(10)}} for s in range(12)]
    return RegisterAgent.model_validate({
        "agent_id": agent_id, "capabilities": ["cpu"], "instance_id": "one-process",
        "labels": {f"l{i}": "x" * 100 for i in range(20)}, "services": services})


async def refused_deregister_reads(store: CountingStore, agents: AgentRegistry,
                                   agent_id: str) -> int:
    store.read_count = 0
    with pytest.raises(CommandRefused):
        await agents.deregister(DeregisterAgent(agent_id=agent_id, incarnation=99_999))
    return store.read_count


async def replayed(store: EventStore, agent_id: str) -> Agent:
    """The agent from its whole history, as loads read it before they were bounded."""
    agent: Any = None
    for recorded in await store.history(AGENT, agent_id):
        agent = recorded.event.mutate(agent)
    return agent


async def test_a_refused_command_reads_no_more_than_the_bound_after_a_long_history(
        store: CountingStore, names: Names) -> None:
    agents = registry(store, names)
    await agents.register(large("fresh"))
    fresh_reads = await refused_deregister_reads(store, agents, "fresh")

    most = 0
    for _ in range(REGISTRATIONS):
        store.read_count = 0
        await agents.register(large("long"))
        most = max(most, store.read_count)  # each re-registration loads the agent too
    long_reads = await refused_deregister_reads(store, agents, "long")

    assert fresh_reads == 1
    assert long_reads <= CARRY_FORWARD_AFTER
    assert most <= CARRY_FORWARD_AFTER
    # What a bounded load makes is what the whole history makes.
    loaded: Any = (await agents.repository.get("long", fresh=True))[0]
    whole = await replayed(store, "long")
    assert loaded.incarnation == whole.incarnation == REGISTRATIONS
    assert loaded.services == whole.services and loaded.labels == whole.labels
    history = await store.history(AGENT, "long")
    carried = [e for e in history if e.name == CARRIED_FORWARD]
    # One restatement per CARRY_FORWARD_AFTER events: the log's price for the bound.
    assert len(carried) == (len(history) - 1) // (CARRY_FORWARD_AFTER + 1)
    assert {e.identity for e in carried} == {"orchestrator"}  # upkeep, not the sender's


async def test_a_history_from_before_the_bound_is_carried_forward_at_its_next_load(
        store: CountingStore, names: Names) -> None:
    unbounded = registry(store, names, carry_forward_after=None)
    for _ in range(40):
        await unbounded.register(large("old"))
    agents = registry(store, names)

    first = await refused_deregister_reads(store, agents, "old")
    then = await refused_deregister_reads(store, agents, "old")

    assert first == 40  # read whole once, and carried forward
    assert then == 1
    loaded: Any = (await agents.repository.get("old", fresh=True))[0]
    assert loaded.incarnation == 40


async def test_writers_of_one_agent_in_turn_lose_no_registration(
        store: CountingStore, names: Names) -> None:
    """Two orchestrators, each caching the agent: each one's cached copy is stale after
    the other's write, its append is refused by the log, and it reloads (from the
    latest CarriedForward, whichever wrote it)."""
    first = registry(store, names, keep=lambda agent: True)
    second = registry(store, names, keep=lambda agent: True)
    incarnations = []
    for turn in range(3 * CARRY_FORWARD_AFTER):
        writer = first if turn % 2 == 0 else second
        store.read_count = 0
        reply = await writer.register(large("shared"))
        assert store.read_count <= CARRY_FORWARD_AFTER
        incarnations.append(reply["incarnation"])

    assert incarnations == list(range(1, 3 * CARRY_FORWARD_AFTER + 1))
    whole = await replayed(store, "shared")
    assert whole.incarnation == 3 * CARRY_FORWARD_AFTER
