"""Bus stalls under a live fleet, for `test_bus_stall.py` and the chaos matrix.

A stall leaves every TCP connection open and answers nothing: the nats-server frozen
(SIGSTOP), or the network path to it stopped by a proxy that forwards nothing and closes
nothing (`tests/stall_proxy.py`). Each `Cell` is one orchestrator (a prefix of its own)
with live SDK agents heartbeating throughout, each running a task, and one agent that
really dies at a chosen moment around the stall. Several cells may share one stall: they
are independent repeats with their own timing.

What a cell checks afterwards: no live agent declared dead, no task moved off a live
agent, the dead one declared within `dead_after` plus the catch-up after the bus
returned, and the orchestrator never deposed from its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from infra.bus.embedded import EmbeddedNats
from infra.names import Names
from infra.settings import Settings
from sdk.agent import AgentClient, TaskContext
from services.app import Orchestrator
from tests.stall_proxy import StallProxy
from tests.support import eventually, request

# The timings of the report (issue 19): heartbeats every 0.2 s, suspect 0.6 s, dead 1.0 s.
HEARTBEAT_INTERVAL = 0.2
SUSPECT_AFTER = 0.6
DEAD_AFTER = 1.0
LEASE_TTL = 1.0
# From the moment the bus is back until the dead agent must be declared: the catch-up
# measured in the cell, plus dead_after, plus this for a look, the append and its apply.
DECISION_SLACK_S = 0.5
# Longest catch-up accepted after the bus returns (a reconnect included).
CATCH_UP_LIMIT_S = 6.0


class Fault(StrEnum):
    SERVER = "server"  # nats-server frozen with SIGSTOP
    PATH = "path"  # the path between every client (orchestrator and agents) and NATS
    ORCHESTRATOR_PATH = "orchestrator-path"  # only the orchestrator's path to NATS


class Bus:
    """A nats-server and, for path faults, a stall proxy for the orchestrators and one
    for the agents."""

    def __init__(self, server: EmbeddedNats, fault: Fault, tmp_path: Path) -> None:
        self.server = server
        self.fault = fault
        self.orchestrator_proxy: StallProxy | None = None
        self.agent_proxy: StallProxy | None = None
        if fault in (Fault.PATH, Fault.ORCHESTRATOR_PATH):
            self.orchestrator_proxy = StallProxy(server.port, tmp_path / "proxy-orch.log")
        if fault == Fault.PATH:
            self.agent_proxy = StallProxy(server.port, tmp_path / "proxy-agents.log")
        self.stalled_at: float | None = None
        self.back_at: float | None = None

    def start(self) -> None:
        for proxy in self._proxies():
            proxy.start()

    @property
    def orchestrator_url(self) -> str:
        return self.orchestrator_proxy.url if self.orchestrator_proxy else self.server.url

    @property
    def agent_url(self) -> str:
        return self.agent_proxy.url if self.agent_proxy else self.server.url

    def stall(self) -> None:
        if self.fault == Fault.SERVER:
            self.server.pause()
        for proxy in self._proxies():
            proxy.pause()
        self.stalled_at = time.monotonic()

    def heal(self) -> None:
        if self.fault == Fault.SERVER:
            self.server.resume()
        for proxy in self._proxies():
            proxy.resume()
        self.back_at = time.monotonic()

    def unstall(self) -> None:
        """Whatever happened, nothing stays stalled (before the clients stop)."""
        self.server.resume()
        for proxy in self._proxies():
            proxy.resume()

    def close(self) -> None:
        self.unstall()
        for proxy in self._proxies():
            proxy.stop()

    def _proxies(self) -> list[StallProxy]:
        return [p for p in (self.orchestrator_proxy, self.agent_proxy) if p is not None]


@dataclass
class Outcome:
    """What one cell saw, for the assertions and the measured bound."""

    fault: str
    stall_s: float
    dies_at: float  # seconds from the stall's start (negative: before it)
    false_deaths: list[str]
    false_suspicions: list[str]
    moved_off_live: list[str]
    doomed_task_moved: bool
    detected_after_back_s: float | None  # the dead one, from the bus's return
    catch_up_s: float | None  # from the bus's return to evidence current again
    restarted_s: float | None  # from the bus's return to the last restart before the death
    deposed: int
    unhealthy_at_end: list[str]
    troubles_after_back: list[str] = field(default_factory=list)  # what lost evidence

    def summary(self) -> str:
        def s(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}s"

        return (f"{self.fault} {self.stall_s:g}s dies_at={self.dies_at:+.1f}s "
                f"catch_up={s(self.catch_up_s)} last_restart={s(self.restarted_s)} "
                f"detected={s(self.detected_after_back_s)} "
                f"false_deaths={len(self.false_deaths)} "
                f"false_suspicions={len(self.false_suspicions)} deposed={self.deposed}"
                + (f" troubles_after_back={self.troubles_after_back}"
                   if self.troubles_after_back else ""))


@dataclass
class Cell:
    """One orchestrator, `live` agents heartbeating throughout, one that dies."""

    bus: Bus
    tmp_path: Path
    dies_at: float
    live: int = 5
    start_after: float = 0.0  # seconds: cells started apart have their timers out of step
    prefix: str = field(default_factory=lambda: "s" + uuid.uuid4().hex[:10])
    orch: Orchestrator | None = None
    agents: list[AgentClient] = field(default_factory=list)
    doomed: AgentClient | None = None
    client: Client | None = None
    died_at: float | None = None
    dead_seen_at: float | None = None
    deposed: list[float] = field(default_factory=list)
    before: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _watch: asyncio.Task[None] | None = None

    @property
    def settings(self) -> Settings:
        return Settings(
            nats_url=self.bus.orchestrator_url, data_dir=self.tmp_path / self.prefix,
            subject_prefix=self.prefix, http_port=0, heartbeat_interval=HEARTBEAT_INTERVAL,
            suspect_after=SUSPECT_AFTER, dead_after=DEAD_AFTER, accept_timeout=2.0,
            lease_ttl=LEASE_TTL, retry_backoff=0.2, retry_backoff_max=2.0,
            auth="off")  # the test's own server has no accounts

    async def start(self) -> None:
        if self.start_after:
            started = time.monotonic()
            await eventually(lambda: time.monotonic() - started >= self.start_after,
                             timeout=self.start_after + 5, interval=0.05)
        self.orch = orch = Orchestrator(self.settings)
        await orch.start()
        await eventually(lambda: orch.is_leader, timeout=30, what="leader")
        on_deposed = orch.lease.on_deposed

        async def deposed() -> None:
            self.deposed.append(time.monotonic())
            await on_deposed()

        orch.lease.on_deposed = deposed

        async def hold(ctx: TaskContext) -> str:
            await self.release.wait()
            return ctx.task_id

        self.agents = [
            AgentClient(f"live{i}", ["cpu"], capacity=2, nats_url=self.bus.agent_url,
                        prefix=self.prefix, handlers={"hold": hold}, request_timeout=2.0)
            for i in range(self.live)]
        self.doomed = AgentClient("doomed", ["cpu"], capacity=2, nats_url=self.bus.agent_url,
                                  prefix=self.prefix, handlers={"hold": hold},
                                  request_timeout=2.0)
        await asyncio.gather(*(a.start() for a in [*self.agents, self.doomed]))
        self.client = await nats.connect(self.bus.server.url)
        ids = [a.agent_id for a in [*self.agents, self.doomed]]
        await eventually(lambda: all(orch.agents.agents[i].last_heartbeat_at for i in ids),
                         timeout=20, what="first heartbeats")
        # One task on every agent, accepted before the stall.
        for i in range(len(ids)):
            await request(self.client, Names(self.prefix).client_command("task.submit", "tests"),
                          {"task_id": f"task{i}", "kind": "hold"})
        await eventually(lambda: self._running_on() == set(ids), timeout=20,
                         what="a task running on every agent")
        # Evidence current (the monitor's view of the bus) before the stall begins.
        evidence = getattr(orch.monitor, "evidence", None)
        if evidence is not None:
            await eventually(lambda: evidence.current, timeout=20, what="evidence current")
        self.before = await orch.store.last_position()
        self._watch = asyncio.create_task(self._watch_doomed())

    def _running_on(self) -> set[str]:
        assert self.orch is not None
        return {t.agent_id for t in self.orch.board.tasks.values()
                if t.status == "running" and t.agent_id}

    async def _watch_doomed(self) -> None:
        assert self.orch is not None
        while self.dead_seen_at is None:
            view = self.orch.agents.agents.get("doomed")
            if view is not None and view.liveness == "dead":
                self.dead_seen_at = time.monotonic()
                return
            await asyncio.sleep(0.01)

    async def kill_doomed(self) -> None:
        """The doomed agent dies: from this moment it sends nothing, and its connection
        is closed without a goodbye."""
        agent = self.doomed
        assert agent is not None and agent.nc is not None
        agent.heartbeats_paused = True
        self.died_at = time.monotonic()
        nc, agent.nc = agent.nc, None
        await agent.stop(deregister=False)  # with no connection: its tasks just end
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 10)

    async def settle(self) -> None:
        """After the bus is back: the dead one declared, the live ones heartbeating, and
        then a full dead_after and more of normal running (a false death would come)."""
        assert self.orch is not None and self.bus.back_at is not None
        back = self.bus.back_at
        await eventually(lambda: self.dead_seen_at is not None,
                         timeout=CATCH_UP_LIMIT_S + DEAD_AFTER + 10,
                         what="the dead agent declared dead")
        sent = {a.agent_id: a.heartbeats_sent for a in self.agents}
        await eventually(lambda: all(a.heartbeats_sent >= sent[a.agent_id] + 3
                                     for a in self.agents), timeout=20,
                         what="live agents heartbeating after the stall")
        since = self._evidence_since()
        quiet_until = max(back, since or back) + DEAD_AFTER * 2 + 0.5
        await eventually(lambda: time.monotonic() >= quiet_until, timeout=30, interval=0.05)

    def _evidence_since(self) -> float | None:
        assert self.orch is not None
        evidence = getattr(self.orch.monitor, "evidence", None)
        if evidence is None or not evidence.current:
            return None
        return float(evidence.since)

    async def outcome(self, stall_s: float) -> Outcome:
        assert self.orch is not None and self.bus.back_at is not None
        events = await self.orch.store.read(after=self.before)
        live = {a.agent_id for a in self.agents}
        deaths = [e.aggregate_id for e in events if e.name == "DeclaredDead"]
        suspicions = [e.aggregate_id for e in events if e.name == "Suspected"]
        moves = [(e.aggregate_id, e.data()["from_agent"]) for e in events
                 if e.name in ("Reassigned", "Requeued")]
        back = self.bus.back_at
        restarts = self._restarts(back)
        detected = None if self.dead_seen_at is None else self.dead_seen_at - back
        before_death = [r for r in restarts if detected is None or r <= detected]
        return Outcome(
            fault=str(self.bus.fault), stall_s=stall_s, dies_at=self.dies_at,
            false_deaths=[a for a in deaths if a in live],
            false_suspicions=[a for a in suspicions if a in live],
            moved_off_live=[t for t, agent in moves if agent in live],
            doomed_task_moved=any(agent == "doomed" for _, agent in moves),
            detected_after_back_s=detected, catch_up_s=restarts[0] if restarts else None,
            restarted_s=before_death[-1] if before_death else None, deposed=len(self.deposed),
            unhealthy_at_end=[a for a in live if self.orch.agents.agents[a].status != "healthy"],
            troubles_after_back=self._troubles(back),
        )

    def _troubles(self, back: float) -> list[str]:
        assert self.orch is not None
        evidence = getattr(self.orch.monitor, "evidence", None)
        return [f"{at - back:+.2f}s {reason}" for at, reason in getattr(evidence, "losses", [])
                if at >= back - 0.001]

    def _restarts(self, back: float) -> list[float]:
        """Seconds from the bus's return to each moment the monitor's evidence was current
        again after it (the deadlines restarted then), as the monitor recorded them."""
        assert self.orch is not None
        evidence = getattr(self.orch.monitor, "evidence", None)
        if evidence is None:
            return []
        return [float(at - back) for at in getattr(evidence, "current_again", [])
                if at >= back - 0.001]

    async def stop(self) -> None:
        self.release.set()
        if self._watch is not None:
            self._watch.cancel()
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(agent.stop(deregister=False), 10)
        if self.doomed is not None and self.doomed.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.doomed.stop(deregister=False), 10)
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        if self.orch is not None:
            await self.orch.stop()


async def _until(moment: float) -> None:
    await eventually(lambda: time.monotonic() >= moment, timeout=moment - time.monotonic() + 5,
                     interval=0.005)


async def run_stall(bus: Bus, cells: list[Cell], stall_s: float) -> list[Outcome]:
    """Start the cells, kill each one's doomed agent at its moment, stall the bus for
    `stall_s` seconds, heal it, let the cells settle, and tell what each saw."""
    try:
        await asyncio.gather(*(cell.start() for cell in cells))
        lead = max([0.2] + [-cell.dies_at + 0.2 for cell in cells])
        start = time.monotonic() + lead
        plan: list[tuple[float, Any]] = [(start + c.dies_at, c) for c in cells]
        plan += [(start, "stall"), (start + stall_s, "heal")]
        kills = []
        for moment, what in sorted(plan, key=lambda p: (p[0], isinstance(p[1], Cell))):
            await _until(moment)
            if what == "stall":
                bus.stall()
            elif what == "heal":
                bus.heal()
            else:
                kills.append(asyncio.create_task(what.kill_doomed()))
        await asyncio.gather(*kills)
        await asyncio.gather(*(cell.settle() for cell in cells))
        return [await cell.outcome(stall_s) for cell in cells]
    finally:
        bus.unstall()
        for cell in cells:
            await cell.stop()
        bus.close()


def check(outcomes: list[Outcome]) -> None:
    """The promise: no false death, no task moved off a live agent, the dead one found
    within the bound, the lease kept."""
    for o in outcomes:
        print(o.summary())
    for o in outcomes:
        assert o.false_deaths == [], f"live agents declared dead: {o.summary()}"
        assert o.moved_off_live == [], f"tasks moved off live agents: {o.moved_off_live}"
        assert o.unhealthy_at_end == [], f"not healthy at the end: {o.unhealthy_at_end}"
        assert o.doomed_task_moved, "the dead agent's task did not move"
        assert o.deposed == 0, f"lease lost with one orchestrator: {o.summary()}"
        assert o.detected_after_back_s is not None
        if o.detected_after_back_s <= 0:
            continue  # dead before the stall began: declared on evidence from before it
        assert o.restarted_s is not None, "evidence not current again after the stall"
        # Within dead_after of the deadlines' restart once the bus was back (the last
        # restart before the death, should a loaded machine have seen a blip since).
        assert o.restarted_s <= CATCH_UP_LIMIT_S, o.summary()
        assert o.detected_after_back_s <= o.restarted_s + DEAD_AFTER + DECISION_SLACK_S, \
            f"the dead agent found late: {o.summary()}"
