"""The soak's churn: an agent SIGKILLed every so often (and started again as a new
process once it has been declared dead), an agent drained and later undrained with the
CLI, and the leading orchestrator SIGKILLed once (and started again)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from bench.soak.invariants import Kill
from bench.soak.procs import DEAD_AFTER_S, Agent, Cli, Orchestrator

log = logging.getLogger("soak")

RESTART_AFTER_S = DEAD_AFTER_S + 5.0  # a killed agent is back once declared dead
UNDRAIN_AFTER_S = 30.0
SETTLED_S = 5.0  # an agent this long up (and registered) may be killed or drained


@dataclass
class Churn:
    agents: list[Agent]
    orchestrators: list[Orchestrator]
    cli: Cli
    rng: random.Random
    kills: list[Kill] = field(default_factory=list)
    drains: list[dict[str, Any]] = field(default_factory=list)
    leader_kills: list[dict[str, Any]] = field(default_factory=list)
    draining: set[str] = field(default_factory=set)
    _restarts: set[asyncio.Task[None]] = field(default_factory=set)
    _undrains: set[asyncio.Task[None]] = field(default_factory=set)

    def _settled(self) -> list[Agent]:
        now = time.monotonic()
        return [a for a in self.agents if a.alive and a.agent_id not in self.draining
                and now - a.started_at > SETTLED_S and a.incarnation() is not None]

    @staticmethod
    def _later(into: set[asyncio.Task[None]], coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        into.add(task)
        task.add_done_callback(into.discard)

    async def kill_agents(self, stop: asyncio.Event, every: float) -> None:
        while not await _wait(stop, every * self.rng.uniform(0.75, 1.25)):
            choices = self._settled()
            if not choices:
                continue
            victim = self.rng.choice(choices)
            incarnation = victim.incarnation()
            assert incarnation is not None
            victim.kill9()
            self.kills.append(Kill(victim.agent_id, incarnation, time.time()))
            log.info("killed agent %s incarnation %s", victim.agent_id, incarnation)
            self._later(self._restarts, self._restart(victim))

    async def _restart(self, agent: Agent) -> None:
        await asyncio.sleep(RESTART_AFTER_S)
        agent.start()

    async def drain_agents(self, stop: asyncio.Event, every: float) -> None:
        while not await _wait(stop, every * self.rng.uniform(0.75, 1.25)):
            choices = self._settled()
            if not choices:
                continue
            agent = self.rng.choice(choices)
            self.draining.add(agent.agent_id)
            record: dict[str, Any] = {"agent_id": agent.agent_id, "at": time.time()}
            record["drain"] = await self.cli.run("drain", agent.agent_id, timeout=60)
            self.drains.append(record)
            log.info("drained agent %s: %s", agent.agent_id, record["drain"][1].strip())
            self._later(self._undrains, self._undrain(agent.agent_id, record))

    async def _undrain(self, agent_id: str, record: dict[str, Any]) -> None:
        await asyncio.sleep(UNDRAIN_AFTER_S)
        record["undrain"] = await self.cli.run("undrain", agent_id, timeout=60)
        self.draining.discard(agent_id)
        log.info("undrained agent %s: %s", agent_id, record["undrain"][1].strip())

    async def kill_leader(self, stop: asyncio.Event, after: float) -> None:
        """Once, `after` seconds in: SIGKILL the leader, time until another leads, and
        start it again (it comes back as a follower)."""
        if await _wait(stop, after):
            return
        leaders = [o for o in self.orchestrators if await o.is_leader()]
        if len(leaders) != 1:
            self.leader_kills.append({"error": f"{len(leaders)} leaders before the kill"})
            return
        [leader] = leaders
        leader.kill9()
        killed = time.monotonic()
        record: dict[str, Any] = {"killed": leader.name, "at": time.time()}
        self.leader_kills.append(record)
        log.info("killed the leader %s", leader.name)
        while time.monotonic() - killed < 60:
            found = [o.name for o in self.orchestrators if await o.is_leader()]
            if found:
                record["new_leader"] = found[0]
                record["failover_s"] = round(time.monotonic() - killed, 3)
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(5.0)
        leader.start()
        while not await leader.ready() and time.monotonic() - killed < 120:
            await asyncio.sleep(0.2)
        record["restarted_ready_s"] = round(time.monotonic() - killed, 3)
        log.info("leader kill: %s", record)

    async def settle(self) -> None:
        """The pending restarts done (each after its death), undrains at once: every
        agent up, none draining."""
        await asyncio.gather(*self._restarts, return_exceptions=True)
        for task in list(self._undrains):
            task.cancel()
        await asyncio.gather(*self._undrains, return_exceptions=True)
        for agent in self.agents:
            if not agent.alive:
                agent.start()
        for agent_id in sorted(self.draining):
            _, out, err = await self.cli.run("undrain", agent_id, timeout=60)
            log.info("undrained agent %s at the end: %s", agent_id, (out or err).strip())
        self.draining.clear()


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless stopped first; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
