"""A NATS outage longer than dead_after: no agent is declared dead because of it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import orjson

from sdk.agent import AgentClient
from services.app import Orchestrator
from tests.support import eventually


async def test_outage_longer_than_dead_after_declares_nobody_dead(own_server, settings):
    settings = replace(settings, nats_url=own_server.url)
    orch = Orchestrator(settings)
    await orch.start()
    agents = [AgentClient(f"a{i}", ["cpu"], nats_url=own_server.url,
                          prefix=settings.subject_prefix) for i in range(3)]
    try:
        for agent in agents:
            await agent.start()
        await eventually(lambda: all(
            (v := orch.agents.get(a.agent_id)) and v.last_heartbeat_at for a in agents),
            what="first heartbeats")
        before = await orch.store.last_position()

        # The outage: NATS gone for dead_after + 2 s while the agents keep trying.
        await own_server.astop()
        outage_started = time.monotonic()
        await eventually(lambda: time.monotonic() - outage_started > settings.dead_after + 2,
                         timeout=settings.dead_after + 10, interval=0.1)
        sent_before_restart = [a.heartbeats_sent for a in agents]
        await own_server.astart()

        # The orchestrator reconnects, agents resume; give the detector more than a full
        # dead_after of normal running to show it stays quiet.
        await eventually(lambda: orch.nc is not None and orch.nc.is_connected,
                         timeout=15, what="orchestrator reconnected")
        await eventually(lambda: all(a.heartbeats_sent > n + 3
                                     for a, n in zip(agents, sent_before_restart, strict=True)),
                         timeout=15, what="agents heartbeating again")
        settled = time.monotonic()
        await eventually(lambda: time.monotonic() - settled > settings.dead_after * 2,
                         timeout=settings.dead_after * 2 + 5, interval=0.1)

        events = await orch.store.read(after=before)
        assert [e for e in events if e.name == "DeclaredDead"] == []
        assert all(orch.agents.agents[a.agent_id].status == "healthy" for a in agents)
    finally:
        for agent in agents:
            await agent.stop(deregister=False)
        await orch.stop()


async def test_silent_agent_still_dies_after_an_outage(own_server, settings):
    """The outage restarts deadlines; it does not suspend the detector for good."""
    settings = replace(settings, nats_url=own_server.url)
    orch = Orchestrator(settings)
    await orch.start()
    agent = AgentClient("quiet", ["cpu"], nats_url=own_server.url,
                        prefix=settings.subject_prefix)
    try:
        await agent.start()
        agent.heartbeats_paused = True
        await own_server.astop()
        await asyncio.sleep(0)  # the outage itself is not what we measure
        await own_server.astart()
        await eventually(lambda: orch.nc is not None and orch.nc.is_connected, timeout=15)
        await eventually(lambda: orch.agents.agents["quiet"].status == "dead",
                         timeout=settings.dead_after + 10, what="declared dead after outage")
    finally:
        await agent.stop(deregister=False)
        await orch.stop()


async def test_a_catalog_watch_survives_a_nats_restart_without_missing_changes(
    own_server, settings
):
    import nats

    from sdk.catalog import watch

    settings = replace(settings, nats_url=own_server.url)
    orch = Orchestrator(settings)
    await orch.start()
    watcher = await nats.connect(own_server.url, max_reconnect_attempts=-1,
                                 reconnect_time_wait=0.1)
    client = await nats.connect(own_server.url, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.1)
    web = {"name": "web", "address": "h", "port": 80}
    try:
        await client.request(orch.names.agent_command("a1", "register"),
                             orjson.dumps({"agent_id": "a1", "services": [web]}),
                             timeout=5)
        updates = watch(watcher, "web", prefix=settings.subject_prefix, check_every=0.3)
        assert [i["agent_id"] for i in await anext(updates)] == ["a1"]

        await own_server.astop()
        await own_server.astart()
        await eventually(lambda: orch.nc is not None and orch.nc.is_connected, timeout=15)

        async def register_a2() -> bool:
            try:
                msg = await client.request(orch.names.agent_command("a2", "register"), orjson.dumps(
                    {"agent_id": "a2", "services": [web]}), timeout=2)
            except Exception:
                return False
            return bool(orjson.loads(msg.data)["ok"])

        await eventually(register_a2, timeout=30, what="registered after the restart")
        seen = await asyncio.wait_for(anext(updates), 30)
        assert sorted(i["agent_id"] for i in seen) == ["a1", "a2"]
        await updates.aclose()
    finally:
        await watcher.close()
        await client.close()
        await orch.stop()
