"""Memory: RSS growth of the orchestrator per registered agent."""

from __future__ import annotations

import asyncio

from bench.fleet import Fleet
from bench.harness import connect, metric, nats_server, orchestrator
from bench.sizes import Size


async def run(size: Size) -> dict[str, float]:
    async with nats_server("default") as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="600", ORCH_DEAD_AFTER="1200",
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        fleet = Fleet(nc, orch.names)
        await fleet.register(["warm-up"])
        before = orch.rss_bytes()
        await fleet.register([f"m{i:06d}" for i in range(size.memory_agents)])
        while metric(await orch.metrics(), "orch_projection_position") < size.memory_agents + 1:
            await asyncio.sleep(0.1)
        after = orch.rss_bytes()
        await nc.close()
    return {
        "agents": size.memory_agents,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "bytes_per_agent": (after - before) / size.memory_agents,
    }
