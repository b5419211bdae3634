"""A fleet at work for fault tests: agents that come and go, tasks submitted steadily,
and the checks that nothing acknowledged was lost and nothing was done twice."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import nats
import orjson
from nats.aio.client import Client

from infra.log.event_store import EventStore, StoreUnavailable
from infra.log.format.codec import create_mapper
from infra.names import Names
from projections.board.tasks import TaskBoard
from sdk.agent import AgentClient, TaskContext


class Workload:
    def __init__(self, nats_url: str, prefix: str, seed: int = 1) -> None:
        self.nats_url = nats_url
        self.names = Names(prefix)
        self.rng = random.Random(seed)
        self.agents: list[AgentClient] = []
        self.acknowledged: dict[int, str] = {}  # position -> task id, from submit replies
        self.submitted: list[str] = []
        self.reply_gaps: list[float] = []  # seconds between consecutive answered submits
        self.nc: Client | None = None
        self._agent_number = 0

    async def start(self, agents: int = 4) -> None:
        self.nc = await nats.connect(self.nats_url.split(","), max_reconnect_attempts=-1,
                                     reconnect_time_wait=0.1)
        for _ in range(agents):
            await self.add_agent()

    async def add_agent(self) -> AgentClient:
        self._agent_number += 1

        async def work(ctx: TaskContext) -> str:
            await asyncio.sleep(self.rng.uniform(0.005, 0.03))
            return ctx.task_id

        agent = AgentClient(f"w{self._agent_number}", ["cpu"], capacity=8,
                            nats_url=self.nats_url, prefix=self.names.prefix,
                            handlers={"*": work}, request_timeout=2.0)
        await _retry(agent.start)
        self.agents.append(agent)
        return agent

    async def kill_agent(self) -> None:
        """An agent dies: it stops heartbeating and answering, without a goodbye."""
        live = [a for a in self.agents if a.nc is not None]
        if len(live) > 2:
            victim = self.rng.choice(live)
            await victim.stop(deregister=False)

    async def submit(self, count: int, rate: float) -> None:
        """Submit `count` tasks at about `rate` a second, retrying each until answered."""
        assert self.nc is not None
        loop = asyncio.get_running_loop()
        last_answer = loop.time()
        for i in range(count):
            task_id = f"t{len(self.submitted)}"
            self.submitted.append(task_id)
            body = orjson.dumps({"task_id": task_id, "kind": "work"})
            while True:
                try:
                    submit = self.names.client_command("task.submit", "tests")
                    msg = await self.nc.request(submit, body, timeout=2.0)
                    reply = orjson.loads(msg.data)
                except Exception:
                    await asyncio.sleep(0.1)
                    continue
                if reply.get("ok"):
                    break
                await asyncio.sleep(0.1)  # unavailable: retry (idempotent by task id)
            now = loop.time()
            self.reply_gaps.append(now - last_answer)
            last_answer = now
            if "position" in reply:
                self.acknowledged[reply["position"]] = task_id
            await asyncio.sleep(1 / rate)
            del i

    async def churn(self, stop: asyncio.Event, every: float = 1.5) -> None:
        """Agents die and join while the run goes on."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return
            if self.rng.random() < 0.5:
                await self.kill_agent()
            else:
                await self.add_agent()

    async def events(self) -> list[Any]:
        assert self.nc is not None
        store = EventStore(self.nc.jetstream(), self.names, create_mapper())
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            try:
                return await store.read(limit=10_000_000)
            except StoreUnavailable:
                # A reading consumer is created through the cluster's meta leader, which
                # may be the node just killed and not yet replaced.
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def events_leader(self) -> str | None:
        """The server leading the events stream, or None while it has no leader."""
        assert self.nc is not None
        try:
            info = await self.nc.jetstream(timeout=0.5).stream_info(self.names.events_stream)
        except Exception:  # no leader to answer yet
            return None
        return info.cluster.leader if info.cluster else None

    async def completed(self) -> int:
        assert self.nc is not None
        info = await self.nc.jetstream().stream_info(
            self.names.events_stream, subjects_filter=self.names.event("task", "*", "Completed"))
        # state.messages counts the whole stream; the per-subject counts are the filter's.
        return sum((info.state.subjects or {}).values())

    async def stop(self) -> None:
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await agent.stop(deregister=False)
        if self.nc is not None:
            await self.nc.close()


def check_log(events: list[Any], workload: Workload) -> TaskBoard:
    """No acknowledged submission lost, every task completed once, one assignment per
    attempt. Returns the task board replayed from the whole log."""
    # A submit's reply names the position of the last event it wrote: its `Submitted`, or
    # the `Assigned` written with it when the leader placed it at once.
    at = {e.position: e for e in events}
    submitted = {e.aggregate_id for e in events if e.name == "Submitted"}
    for position, task_id in workload.acknowledged.items():
        event = at.get(position)
        assert event is not None and event.aggregate_id == task_id and event.name in (
            "Submitted", "Assigned") and task_id in submitted, f"acknowledged {position} lost"
    done = Counter(e.aggregate_id for e in events if e.name == "Completed")
    never = set(workload.submitted) - set(done)
    twice = [t for t, n in done.items() if n > 1]
    assert not never and not twice, f"never completed: {sorted(never)[:10]}; completed " \
        f"twice: {twice[:10]}"
    attempts = Counter((e.aggregate_id, e.data()["attempt"]) for e in events
                       if e.name in ("Assigned", "Reassigned"))
    assert max(attempts.values()) == 1, "two assignments of one attempt"
    board = TaskBoard()
    for event in events:
        board.apply(event)
    return board


async def _retry(start: Any, attempts: int = 50) -> None:
    for attempt in range(attempts):
        try:
            await start()
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2)
