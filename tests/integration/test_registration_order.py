"""Heartbeats that reach an orchestrator before the registration they follow: with several
orchestrators, one whose projections have not applied an agent's registration yet must not
take that agent for unknown and tell it to register again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sdk.agent import AgentClient
from services.app import Orchestrator
from tests.support import eventually


@pytest.fixture
async def two(settings) -> AsyncIterator[tuple[Orchestrator, Orchestrator]]:
    """A leader and a second orchestrator on the same prefix."""
    leader = Orchestrator(settings)
    await leader.start()
    other = Orchestrator(settings)
    try:
        await eventually(lambda: leader.is_leader, what="leader lease acquired")
        await other.start()
        yield leader, other
    finally:
        await other.stop()
        await leader.stop()


async def test_an_orchestrator_behind_the_registration_does_not_tell_the_agent_to_reregister(
        two, nats_server, prefix):
    leader, behind = two
    agent = AgentClient("fresh", nats_url=nats_server.url, prefix=prefix)
    try:
        # Every orchestrator takes in every heartbeat; this one applies no event until the
        # agent has registered and heartbeated for a while.
        async with behind.runner.paused():
            reply = await agent.start()
            await eventually(lambda: leader.agents.get("fresh") is not None,
                             what="the registration applied by the leader")
            await eventually(lambda: agent.heartbeats_sent >= 5, what="five heartbeats")
            last = (await leader.js.stream_info(leader.names.heartbeats_stream)).state.last_seq
            await eventually(lambda: behind.intake.delivered >= last,
                             what="the heartbeats taken in by the held-back orchestrator")
            assert behind.agents.get("fresh") is None  # it still does not know the agent

        # Released: it applies the registration, then the agent's beats.
        sent = agent.heartbeats_sent
        await eventually(
            lambda: behind.agents.get("fresh").last_heartbeat_seq >= sent + 5,
            what="heartbeats applied by the orchestrator that was behind")

        assert reply["incarnation"] == 1
        assert agent.incarnation == 1
        assert leader.agents.get("fresh").incarnation == 1
        assert behind.agents.get("fresh").incarnation == 1
        page = await leader.store.read_page(after=0, limit=10_000)
        assert [e.name for e in page.events if e.aggregate_id == "fresh"] == ["Registered"]
    finally:
        await agent.stop()
