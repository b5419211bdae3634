"""Discovery with the SDK under ORCH_AUTH=on: an agent's or a reader's permissions are
enough to query and watch the catalog (the change feed and catalog.query; never the
event stream), and the watcher's replies come to its identity's own inbox."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest

from sdk.agent import AgentClient
from sdk.catalog import query, watch
from tests.security.conftest import Secure

WEB = {"name": "web", "address": "10.0.0.1", "port": 80}


async def started_agent(secure: Secure, agent_id: str) -> AgentClient:
    seed = await secure.enrolled_agent(agent_id)
    agent = AgentClient(agent_id, nats_url=secure.url, nkey_seed=seed, services=[WEB])
    reply = await agent.start()
    await secure.orch.runner.position.wait_for(reply["position"], 10)  # in the catalog
    return agent


async def test_an_agent_watches_with_its_own_permissions(secure):
    w1 = await started_agent(secure, "w1")
    assert w1.nc is not None
    updates = watch(w1.nc, "web", check_every=0.5)
    try:
        assert [i["agent_id"] for i in await anext(updates)] == ["w1"]
        w2 = await started_agent(secure, "w2")

        seen = await asyncio.wait_for(anext(updates), 15)

        assert [i["agent_id"] for i in seen] == ["w1", "w2"]
        await w2.stop()
    finally:
        await updates.aclose()
        await w1.stop()


async def test_a_watcher_given_its_identity_reads_its_replies_from_its_own_inbox(secure):
    seed = await secure.identity("dashboard", ["reader"])
    # Connected without its inbox prefix: nats-py's own reply inbox is not its to read.
    reader = await secure.connect("dashboard", seed, inbox="_INBOX")
    w1 = await started_agent(secure, "w1")
    updates = watch(reader.nc, "web", check_every=0.5, identity="dashboard")
    try:
        assert [i["agent_id"] for i in await anext(updates)] == ["w1"]
        await w1.stop()  # deregisters: its instance leaves the catalog

        assert await asyncio.wait_for(anext(updates), 15) == []
        assert (await query(reader.nc, "web", identity="dashboard"))["instances"] == []
        with pytest.raises(nats.errors.TimeoutError):
            await query(reader.nc, "web", timeout=1)  # the reply went where it may not read
    finally:
        await updates.aclose()
