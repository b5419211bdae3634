"""`python -m bench.echo_agent NATS_URL PREFIX AGENT_ID CAPACITY KIND`: one SDK agent
(sdk.agent.AgentClient) that runs tasks of KIND by returning their payload; prints
`ready` once registered, runs until SIGTERM (then deregisters). The Python half of the sdk_ts
scenario; bench/echo_agent.mjs is its TypeScript twin."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sdk.agent import AgentClient, TaskContext


async def echo(ctx: TaskContext) -> Any:
    return ctx.payload


async def main(nats_url: str, prefix: str, agent_id: str, capacity: int, kind: str) -> None:
    agent = AgentClient(agent_id, capacity=capacity, nats_url=nats_url, prefix=prefix,
                        handlers={kind: echo})
    await agent.start()
    print("ready", flush=True)
    await agent.run_until_stopped()


if __name__ == "__main__":
    url, prefix, agent_id, capacity, kind = sys.argv[1:6]
    asyncio.run(main(url, prefix, agent_id, int(capacity), kind))
