"""Simulated agents for benchmarks: many agents from one process, over raw NATS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from infra.bus.connection import flush_subscriptions
from infra.names import REGISTER, TASK_ACCEPT, TASK_COMPLETE, Names


class Fleet:
    """Registers agents, heartbeats for them, and accepts (and maybe completes) their
    assignments, recording when each assignment arrived."""

    def __init__(self, nc: Client, names: Names, complete: bool = True) -> None:
        self.nc = nc
        self.names = names
        self.complete = complete
        self.incarnations: dict[str, int] = {}
        self.silent: set[str] = set()
        self.last_beat: dict[str, float] = {}
        self.received: list[tuple[str, str, int, float]] = []  # task, agent, attempt, at
        self.on_assignment: Callable[[dict[str, Any]], None] | None = None
        self._beats = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def register(self, agent_ids: list[str], capacity: int = 10,
                       capabilities: list[str] | None = None, chunk: int = 200) -> None:
        for start in range(0, len(agent_ids), chunk):
            replies = await asyncio.gather(*(
                self.nc.request(self.names.agent_command(agent_id, REGISTER), orjson.dumps({
                    "agent_id": agent_id, "capacity": capacity,
                    "capabilities": capabilities or ["cpu"]}), timeout=30)
                for agent_id in agent_ids[start:start + chunk]))
            for reply in replies:
                body = orjson.loads(reply.data)
                self.incarnations[body["agent_id"]] = body["incarnation"]

    async def beat_all(self) -> None:
        """One heartbeat from every agent that is not silent (core publish: no ack wait)."""
        for agent_id, incarnation in self.incarnations.items():
            if agent_id in self.silent:
                continue
            self._beats += 1
            self.last_beat[agent_id] = time.monotonic()
            await self.nc.publish(self.names.heartbeat(agent_id), orjson.dumps(
                {"incarnation": incarnation, "seq": self._beats}))

    async def heartbeat_forever(self, interval: float) -> None:
        while True:
            started = time.monotonic()
            await self.beat_all()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def serve_assignments(self) -> None:
        await self.nc.subscribe(self.names.agent_tasks("*"), cb=self._on_assignment)
        await flush_subscriptions(self.nc)

    async def _on_assignment(self, msg: Msg) -> None:
        agent_id = msg.subject.split(".")[-2]
        if agent_id in self.silent:
            return  # a dead agent hears nothing
        offer = orjson.loads(msg.data)
        self.received.append((offer["task_id"], agent_id, offer["attempt"], time.monotonic()))
        if self.on_assignment is not None:
            self.on_assignment(offer)
        task = asyncio.create_task(self._work(agent_id, offer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self, timeout: float = 120.0) -> None:
        """Every assignment received so far accepted (and completed) and answered: the
        work one measurement left behind does not queue in front of the next one's."""
        if self._tasks:
            await asyncio.wait_for(asyncio.gather(*list(self._tasks), return_exceptions=True),
                                   timeout)

    async def stop(self) -> None:
        """Stop working on assignments (before the connection closes under them)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self, agent_id: str, offer: dict[str, Any]) -> None:
        token = {"task_id": offer["task_id"], "token": offer["token"]}
        await self.nc.request(self.names.agent_command(agent_id, TASK_ACCEPT),
                              orjson.dumps(token), timeout=30)
        if self.complete:
            await self.nc.request(self.names.agent_command(agent_id, TASK_COMPLETE),
                                  orjson.dumps({**token, "result": None}), timeout=30)
