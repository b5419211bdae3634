"""A small live world to fuzz against, built through the public protocol.

The world (agents in every state a command can meet, tasks with real fencing tokens in
every state and with every shape of history: moved off a dead agent, returned to the
queue, retried, timed out, dead-lettered, cancelled at each step, taken up again by an
agent's next incarnation; identities, one of them revoked) is built through the public
protocol by raw-NATS agents, each on its own subjects, and an operator, and is then
quiet: the live agents heartbeat, the open tasks have long run timeouts, the
waiting tasks need capabilities no live agent has. So the event stream must not move
while refused commands arrive; if it does (the machine stalled long enough for the
health monitor to act), every new event must be a background decision, never one caused
by a fuzzed request (tests/fuzz/checks.py checks it).

The probes of its state are in tests/fuzz/probes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from infra import names as n
from infra.names import AGENT_COMMANDS, Names
from services.app import Orchestrator
from tests.fuzz.endpoints import subject_of
from tests.support import eventually, request

KIND = "fz-kind"
CAP = "fz-cap"
RARE = "fz-rare"  # only fz-doomed had it: its tasks wait for good once it is dead
PHOENIX = "fz-phoenix"
# Identities made by an operator: a person's (with a key, so enrolled in effect), and
# a revoked one.
PERSON = "fz-person"
REVOKED = "fz-revoked"
PUBLIC_KEYS = {PERSON: "U" + "A" * 55, REVOKED: "U" + "B" * 55}
LIVE_SERVICES = [{"name": "fz-svc", "address": "10.0.0.1", "port": 8080, "tags": ["t1"],
                  "meta": {"m": "v"}}]


@dataclass
class TaskInfo:
    task_id: str
    token: str | None
    status: str
    body: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    past_tokens: list[str] = field(default_factory=list)  # of its earlier attempts
    agent: str | None = None  # the agent its current token was offered to


class Offers:
    """Assignments published to the worker, kept by task id in arrival order."""

    def __init__(self, nc: Client, names: Names, agent_id: str) -> None:
        self.nc, self.agent_id = nc, agent_id
        self.subject = names.agent_tasks(agent_id)
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        self.sub = await self.nc.subscribe(self.subject, cb=self._on_offer)

    async def _on_offer(self, msg: Msg) -> None:
        offer = orjson.loads(msg.data)
        self.seen.setdefault(offer["task_id"], []).append(offer)
        self.arrived.set()

    async def take(self, task_id: str, number: int = 1, timeout: float = 20) -> dict[str, Any]:
        """The `number`-th offer of `task_id`, waiting for it."""
        deadline = time.monotonic() + timeout
        while len(self.seen.get(task_id, [])) < number:
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"offer {number} of {task_id} did not arrive"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return self.seen[task_id][number - 1]

    async def stop(self) -> None:
        await self.sub.unsubscribe()


@dataclass
class World:
    orch: Orchestrator
    nc: Client
    names: Names
    loop: asyncio.AbstractEventLoop
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    incarnations: dict[str, int] = field(default_factory=dict)
    _heartbeats: list[asyncio.Task[None]] = field(default_factory=list)
    _silenced: set[tuple[str, int]] = field(default_factory=set)
    _stopping: bool = False

    # agents
    live = "fz-live"      # healthy, heartbeating, offers LIVE_SERVICES
    left = "fz-left"      # registered, then deregistered (incarnation 1)
    worker = "fz-worker"  # healthy, heartbeating, has CAP, holds fz-running
    victim = "fz-victim"  # ran fz-reassigned, went silent: dead (its task moved)
    doomed = "fz-doomed"  # has RARE; ran fz-requeued and fz-retry-wait, drained, dead
    phoenix = "fz-phoenix"  # ran fz-reborn, died, registered again: runs it again

    @property
    def tokens(self) -> set[str]:
        return {k for t in self.tasks.values() for k in (t.token, *t.past_tokens) if k}

    async def call(self, command: str, body: Any, sender: str | None = None) -> dict[str, Any]:
        """Send `command` as `sender`; an agent's command by default as the agent its body
        names (else the worker)."""
        if sender is None and command in AGENT_COMMANDS:
            sender = body.get("agent_id", World.worker)
        return await request(self.nc, subject_of(self.names, command, sender), body,
                             timeout=10)

    async def ok(self, command: str, body: Any, sender: str | None = None) -> dict[str, Any]:
        reply = await self.call(command, body, sender)
        assert reply["ok"] is True, (command, body, reply)
        return reply

    async def register(self, agent_id: str, heartbeat: bool, running: list[str] | None = None,
                       **declaration: Any) -> int:
        # The agent_id is left out: the subject names the agent.
        reply = await self.ok(n.REGISTER, declaration, sender=agent_id)
        incarnation = int(reply["incarnation"])
        self.incarnations[agent_id] = incarnation
        if heartbeat:
            self._heartbeats.append(asyncio.create_task(
                self._heartbeat(agent_id, incarnation, running if running is not None else [])))
        return incarnation

    async def _heartbeat(self, agent_id: str, incarnation: int, running: list[str]) -> None:
        js = self.nc.jetstream()
        for seq in itertools.count():
            if (agent_id, incarnation) in self._silenced:
                return
            if self._stopping:  # a cancel can be swallowed by wait_for in publish (3.11)
                return
            body = {"incarnation": incarnation, "seq": seq, "load": 0.0, "running": running}
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await js.publish(self.names.heartbeat(agent_id), orjson.dumps(body), timeout=2)
            await asyncio.sleep(self.orch.settings.heartbeat_interval)

    def silence(self, agent_id: str) -> None:
        """The agent's current incarnation stops heartbeating: it will be declared dead."""
        self._silenced.add((agent_id, self.incarnations[agent_id]))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._heartbeats:
            task.cancel()
        if self._heartbeats:
            await asyncio.wait(self._heartbeats, timeout=5)

    async def settle(self) -> None:
        """Wait until the read model has applied everything written so far."""
        last = await self.orch.store.last_position()
        await self.orch.runner.position.wait_for(last, 10)

    async def submit_and_take(self, offers: Offers, task_id: str, requires: str = CAP,
                              **extra: Any) -> TaskInfo:
        """Submit a task only the offers' agent can take, and read the offered token."""
        body = {"task_id": task_id, "kind": KIND, "payload": {"task": task_id, "n": [1, 2.5]},
                "requires": [requires], "timeout_s": 3600.0, **extra}
        await self.ok(n.TASK_SUBMIT, body)
        offer = await offers.take(task_id)
        info = TaskInfo(task_id, offer["token"], "assigned", body, offer["attempt"],
                        agent=offers.agent_id)
        self.tasks[task_id] = info
        return info

    async def retake(self, offers: Offers, info: TaskInfo, number: int) -> None:
        """The task's `number`-th offer: its next attempt, under a new token."""
        offer = await offers.take(info.task_id, number)
        assert info.token is not None and offer["token"] != info.token
        info.past_tokens.append(info.token)
        info.token, info.attempt, info.status = offer["token"], offer["attempt"], "assigned"
        info.agent = offers.agent_id

    async def accept(self, info: TaskInfo) -> None:
        await self.ok(n.TASK_ACCEPT, {"task_id": info.task_id, "token": info.token},
                      info.agent)
        info.status = "running"

    async def fail(self, info: TaskInfo, retryable: bool = True) -> None:
        await self.ok(n.TASK_FAIL, {"task_id": info.task_id, "token": info.token,
                                    "error": "fz-boom", "retryable": retryable}, info.agent)

    async def status_is(self, task_id: str, status: str, timeout: float = 20) -> None:
        """Wait until the board shows the task in this status (a background decision)."""
        await eventually(lambda: self.orch.board.tasks[task_id].status == status,
                         timeout=timeout, what=f"{task_id} {status}")


async def build_world(orch: Orchestrator, nc: Client, names: Names,
                      moved_task: bool = False) -> World:
    """Agents fz-live, fz-left, fz-worker (and fz-victim, fz-doomed, fz-phoenix, see
    `_dying_agents`); identities fz-person and fz-revoked (revoked); tasks fz-done
    (completed), fz-cancelled (while assigned), fz-dead (dead-lettered), fz-running
    (accepted), fz-pending (never placeable), the histories of `_dying_agents` and
    `_worker_histories`, and with `moved_task` fz-moved, whose first
    assignment timed out (its first token is an earlier attempt's)."""
    world = World(orch, nc, names, asyncio.get_running_loop())
    offers = Offers(nc, names, World.worker)
    await offers.start()
    # Before the worker exists, so that only the dying agents can take their tasks.
    dying = await _dying_agents(world)
    await world.register(World.worker, heartbeat=True, running=["fz-running"],
                         capabilities=[CAP], capacity=16)
    await world.register(World.live, heartbeat=True, capabilities=["fz-other"], capacity=1,
                         labels={"zone": "fz"}, services=LIVE_SERVICES)
    await world.register(World.left, heartbeat=False)
    await world.ok(n.DEREGISTER, {"agent_id": World.left, "incarnation": 1})
    for name, roles in ((PERSON, ["submitter"]), (REVOKED, ["reader", "auditor"])):
        await world.ok(n.ADMIN_IDENTITY_CREATE, {"name": name, "roles": roles,
                                                 "public_key": PUBLIC_KEYS[name]})
    await world.ok(n.ADMIN_REVOKE, {"name": REVOKED, "reason": "fz: left the team"})
    # Their deaths and the moves that follow run while the rest is built.
    deaths = asyncio.create_task(_deaths(world, offers, dying))
    if moved_task:  # first, so that its accept timeout runs while the rest is built
        moved = await world.submit_and_take(offers, "fz-moved")

    done = await world.submit_and_take(offers, "fz-done")
    await world.ok(n.TASK_COMPLETE, {"task_id": done.task_id, "token": done.token,
                                     "result": {"r": 1}})
    done.status = "completed"
    cancelled = await world.submit_and_take(offers, "fz-cancelled")
    await world.ok(n.TASK_CANCEL, {"task_id": cancelled.task_id})
    cancelled.status = "cancelled"
    dead = await world.submit_and_take(offers, "fz-dead")
    await world.ok(n.TASK_FAIL, {"task_id": dead.task_id, "token": dead.token,
                                 "error": "boom", "retryable": False})
    dead.status = "dead_lettered"
    running = await world.submit_and_take(offers, "fz-running")
    await world.accept(running)
    await _worker_histories(world, offers)
    if moved_task:
        # Not accepted: the accept timeout takes it back, and it is offered again (the
        # worker is the only agent that can take it) with a new token.
        again = await offers.take("fz-moved", number=2)
        assert again["token"] != moved.token and again["attempt"] == moved.attempt + 1
        await world.ok(n.TASK_ACCEPT, {"task_id": "fz-moved", "token": again["token"]})
        world.tasks["fz-moved-first"] = TaskInfo("fz-moved", moved.token, "running",
                                                 moved.body, again["attempt"], agent=World.worker)
        moved.token, moved.status, moved.attempt = again["token"], "running", again["attempt"]
    pending = {"task_id": "fz-pending", "kind": KIND, "requires": ["fz-nobody"]}
    await world.ok(n.TASK_SUBMIT, pending)
    world.tasks["fz-pending"] = TaskInfo("fz-pending", None, "pending", pending)
    await deaths
    await offers.stop()
    await world.settle()
    return world


async def _dying_agents(world: World) -> dict[str, Offers]:
    """Agents that will die, each the only one able to take its tasks; offers by agent."""
    # fz-victim runs fz-reassigned; fz-doomed runs fz-requeued and fz-retry-wait (failed
    # while fz-doomed drains, so that its retry has nowhere to go); fz-phoenix fz-reborn.
    offers = {a: Offers(world.nc, world.names, a)
              for a in (World.victim, World.doomed, World.phoenix)}
    for watched in offers.values():
        await watched.start()
    await world.register(World.victim, heartbeat=True, capabilities=[CAP], capacity=1)
    await world.accept(await world.submit_and_take(offers[World.victim], "fz-reassigned"))
    await world.register(World.doomed, heartbeat=True, capabilities=[RARE], capacity=2)
    doomed = offers[World.doomed]
    await world.accept(await world.submit_and_take(doomed, "fz-requeued", RARE))
    retry = await world.submit_and_take(doomed, "fz-retry-wait", RARE)
    await world.accept(retry)
    await world.ok(n.ADMIN_DRAIN, {"agent_id": World.doomed})  # an operator's
    await world.fail(retry)
    retry.status = "retry_wait"
    await world.register(World.phoenix, heartbeat=True, capabilities=[PHOENIX], capacity=1)
    await world.accept(await world.submit_and_take(offers[World.phoenix], "fz-reborn",
                                                   PHOENIX))
    return offers


async def _deaths(world: World, worker: Offers, dying: dict[str, Offers]) -> None:
    """The dying agents go silent and are declared dead, and their tasks move."""
    # fz-reassigned moves to the worker, and the victim's late result for it is refused;
    # fz-requeued goes back to the queue for good; fz-reborn too, until fz-phoenix
    # registers again and takes it up.
    for agent_id in dying:
        world.silence(agent_id)
    moved = world.tasks["fz-reassigned"]
    first = moved.token
    await world.retake(worker, moved, 1)
    await world.accept(moved)
    late = await world.call(n.TASK_COMPLETE, {"task_id": moved.task_id, "token": first},
                            World.victim)
    assert late["error"]["code"] == "stale_token", late
    await world.status_is("fz-requeued", "pending")
    requeued = world.tasks["fz-requeued"]
    requeued.past_tokens.append(requeued.token or "")
    requeued.token, requeued.status = None, "pending"
    reborn = world.tasks["fz-reborn"]
    await world.status_is(reborn.task_id, "pending")
    await world.register(World.phoenix, heartbeat=True, capabilities=[PHOENIX], capacity=1)
    await world.retake(dying[World.phoenix], reborn, 2)
    await world.accept(reborn)
    for watched in dying.values():
        await watched.stop()


async def _worker_histories(world: World, offers: Offers) -> None:
    """Failures, retries, a time-out and cancels on the worker."""
    # fz-retried failed, then runs again; fz-exhausted failed as often as max_attempts
    # allows; fz-timed-out ran past timeout_s on its only attempt; fz-cancelled-run was
    # cancelled while running, fz-cancelled-pending before it was ever placed.
    retried = await world.submit_and_take(offers, "fz-retried")
    exhausted = await world.submit_and_take(offers, "fz-exhausted", max_attempts=2)
    for info in (retried, exhausted):
        await world.fail(info)
    for info in (retried, exhausted):
        await world.retake(offers, info, 2)
    await world.accept(retried)
    await world.fail(exhausted)
    exhausted.status = "dead_lettered"
    timed_out = await world.submit_and_take(offers, "fz-timed-out", timeout_s=0.3,
                                            max_attempts=1)
    await world.accept(timed_out)
    cancelled = await world.submit_and_take(offers, "fz-cancelled-run")
    await world.accept(cancelled)
    await world.ok(n.TASK_CANCEL, {"task_id": cancelled.task_id, "reason": "fz: not needed"})
    cancelled.status = "cancelled"
    never = {"task_id": "fz-cancelled-pending", "kind": KIND, "requires": ["fz-nobody"]}
    await world.ok(n.TASK_SUBMIT, never)
    await world.ok(n.TASK_CANCEL, {"task_id": "fz-cancelled-pending"})
    world.tasks["fz-cancelled-pending"] = TaskInfo("fz-cancelled-pending", None, "cancelled",
                                                   never)
    await world.status_is(timed_out.task_id, "dead_lettered")
    timed_out.status = "dead_lettered"
