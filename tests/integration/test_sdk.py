"""The Python agent SDK against a running orchestrator."""

from __future__ import annotations

import pytest

from sdk.agent import AgentClient, CommandError
from tests.support import eventually


@pytest.fixture
async def make_agent(orchestrator, nats_server, prefix):
    made: list[AgentClient] = []

    def make(agent_id: str, **kwargs) -> AgentClient:
        agent = AgentClient(agent_id, nats_url=nats_server.url, prefix=prefix, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        if agent.nc is not None:  # a test that failed before its own stop()
            await agent.stop(deregister=False)


class TestAgentClient:
    async def test_registers_and_stays_healthy_while_heartbeating(self, orchestrator, make_agent):
        agent = make_agent("sdk1", capabilities=["gpu"], capacity=3)
        reply = await agent.start()
        try:
            assert reply["incarnation"] == 1
            await eventually(lambda: agent.heartbeats_sent >= 10, what="ten heartbeats")
            view = orchestrator.agents.get("sdk1")
            assert view is not None and view.status == "healthy" and view.capacity == 3
        finally:
            await agent.stop()

    async def test_comes_back_with_a_new_incarnation_after_being_declared_dead(
        self, orchestrator, make_agent
    ):
        agent = make_agent("sdk1")
        await agent.start()
        try:
            agent.heartbeats_paused = True
            await eventually(lambda: orchestrator.agents.agents["sdk1"].status == "dead",
                             timeout=orchestrator.settings.dead_after + 5, what="dead")

            agent.heartbeats_paused = False  # told to re-register by its next heartbeat

            await eventually(lambda: agent.incarnation == 2, what="re-registered")
            await eventually(lambda: orchestrator.agents.agents["sdk1"].status == "healthy"
                             and orchestrator.agents.agents["sdk1"].incarnation == 2)
        finally:
            await agent.stop()

    async def test_stop_deregisters(self, orchestrator, make_agent):
        agent = make_agent("sdk1")
        await agent.start()
        await agent.stop()
        await eventually(lambda: orchestrator.agents.agents["sdk1"].status == "left")

    async def test_drain(self, orchestrator, make_agent):
        agent = make_agent("sdk1")
        await agent.start()
        try:
            reply = await agent.drain()
            assert reply["status"] == "draining"
        finally:
            await agent.stop()

    async def test_refusals_raise_with_their_code(self, orchestrator, make_agent):
        agent = make_agent("sdk1")
        await agent.start()
        try:
            with pytest.raises(CommandError) as refused:
                await agent.request("agent.deregister", {"agent_id": "sdk1", "incarnation": 9})
            assert refused.value.code == "conflict"
        finally:
            await agent.stop()
