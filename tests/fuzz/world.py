"""A small live world to fuzz against, and the checks every fuzzed reply must pass.

The world (agents in every state a command can meet, tasks with real fencing tokens in
every state and with every shape of history: moved off a dead agent, returned to the
queue, retried, timed out, dead-lettered, cancelled at each step, taken up again by an
agent's next incarnation; identities, one of them revoked) is built through the public
protocol by raw-NATS agents, each on its own subjects, and an operator, and is then
quiet: the live agents heartbeat, the open tasks have long run timeouts, the
waiting tasks need capabilities no live agent has. So the event stream must not move
while refused commands arrive; if it does (the machine stalled long enough for the
health monitor to act), every new event must be a background decision, never one caused
by a fuzzed request.

Hypothesis runs in a worker thread (`run_hypothesis`) and hands each probe to the event
loop, which keeps serving the orchestrator, the heartbeats and the NATS clients between
examples; the test itself stays async and can check the orchestrator afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import nats.errors
import orjson
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import BaseModel

from domain.errors import ErrorCode
from domain.fields import STRICT
from domain.protocol.replies import (
    AgentStatusReply,
    AssignmentsReply,
    CatalogReply,
    ErrorReply,
    TaskReply,
    TaskResultsReply,
)
from infra import names as n
from infra.names import AGENT_COMMANDS, CLIENT_COMMANDS, Names
from projections.access import Access
from services.app import Orchestrator
from services.auth.admin import RESERVED
from services.auth.gate import AccessGate
from services.commands.table import command_table
from tests.fuzz import payloads as p
from tests.support import TEST_IDENTITY, eventually, request

REQUEST_ID_HEADER = "Orch-Request-Id"
RID_PREFIX = "fuzz-"
MICRO_CODES = {
    "invalid_request": "400", "unauthorized": "401", "not_found": "404", "conflict": "409",
    "stale_token": "409", "payload_too_large": "413", "unavailable": "503",
    "internal": "500",
}
CODES = frozenset(str(c) for c in ErrorCode)
# Events the orchestrator writes on its own (health monitor, dispatcher, failover).
BACKGROUND_EVENTS = frozenset({"Suspected", "Recovered", "DeclaredDead", "Assigned",
                               "Reassigned", "Requeued"})


class RevokeReply(BaseModel):
    """What admin.revoke answers (a revoke of a revoked identity: no position)."""

    model_config = STRICT

    ok: Literal[True]
    name: str
    revoked: Literal[True]
    deregistered: bool  # whether an agent of that name was taken out of the fleet
    position: int | None = None


OK_REPLY_MODELS: dict[str, type[Any]] = {
    n.DEREGISTER: AgentStatusReply, n.SERVICES: AgentStatusReply,
    n.ASSIGNMENTS: AssignmentsReply, n.CATALOG_QUERY: CatalogReply, n.TASK_SUBMIT: TaskReply,
    n.TASK_ACCEPT: TaskReply, n.TASK_PROGRESS: TaskReply, n.TASK_COMPLETE: TaskReply,
    n.TASK_FAIL: TaskReply, n.TASK_CANCEL: TaskReply, n.TASK_RESULTS: TaskResultsReply,
    n.ADMIN_DRAIN: AgentStatusReply, n.ADMIN_UNDRAIN: AgentStatusReply,
    n.ADMIN_DEREGISTER: AgentStatusReply, n.ADMIN_REVOKE: RevokeReply,
}
READ_ONLY = frozenset({n.ASSIGNMENTS, n.CATALOG_QUERY, n.TASK_RESULTS})
REPLY_TIMEOUT_S = 15.0


class _Handlers:
    """Stands in for the services: the table is read for its names only."""

    def __getattr__(self, name: str) -> Any:
        return None


# Every command endpoint the orchestrator serves, as services/commands/table.py lists them.
_stub = cast(Any, _Handlers())
MODELS: dict[str, type[BaseModel]] = {
    c.name: c.model for c in command_table(_stub, _stub, _stub, _stub, _stub, AccessGate(Access()),
                            _stub, _stub)}
COMMANDS: tuple[str, ...] = tuple(MODELS)

# Payloads sent by this session, per command subject (reported at the end of the run).
SENT: Counter[str] = Counter()
# ... and per kind of probe (mutated, not-json, bad-sender, other-agent, repeat...).
CATEGORIES: Counter[str] = Counter()
BACKGROUND_SEEN: Counter[str] = Counter()
# Read API responses to schemathesis' requests, per status code.
HTTP_STATUSES: Counter[int] = Counter()

_request_ids = itertools.count(1)

T = TypeVar("T")


def next_request_id() -> str:
    return f"{RID_PREFIX}{next(_request_ids)}"


def subject_of(names: Names, command: str, sender: str | None = None) -> str:
    """The subject of `command` sent by `sender`: an agent's command names the agent
    (p.SELF unless told), a client's the identity (the tests' unless told)."""
    if command in AGENT_COMMANDS:
        return names.agent_command(p.SELF if sender is None else sender, command)
    if command in CLIENT_COMMANDS:
        return names.client_command(command, TEST_IDENTITY if sender is None else sender)
    assert sender is None, f"{command} names no sender"
    return names.command(command)


# --- the world ----------------------------------------------------------------------

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


# --- probes of a valid shape, refused (or a no-op) for the world's state ------------

def unknown_id() -> st.SearchStrategy[str]:
    """A well-formed id that nothing in the world has (world ids start with 'fz-')."""
    return p.pattern_text(p.ID_CHARS, 62).map(lambda s: "zz" + s)


def _probe(body: Any, *expect: str, category: str, sender: str | None = None,
           bare: bool = False) -> p.Probe:
    return p.Probe(p.render(body).encode(), frozenset(expect), category, sender=sender,
                   bare=bare)


def _as(agent_id: str, body: dict[str, Any], named: bool, *expect: str,
        category: str) -> p.Probe:
    """An agent's command on the agent's own subject, its agent_id spelled out or not."""
    full = {"agent_id": agent_id, **body} if named else body
    return _probe(full, *expect, category=category, sender=agent_id)


def _sent_by(probes: st.SearchStrategy[p.Probe],
             senders: st.SearchStrategy[str]) -> st.SearchStrategy[p.Probe]:
    return st.builds(lambda probe, sender: dataclasses.replace(probe, sender=sender),
                     probes, senders)


def forged_token(world: World) -> st.SearchStrategy[str]:
    """Well-formed tokens no task issued: random, near misses of real ones."""
    real = sorted(world.tokens)
    near = st.builds(lambda t, how: how(t), st.sampled_from(real), st.sampled_from([
        str.upper, lambda t: t[:-1], lambda t: t + "0", lambda t: t[1:] + t[0],
        lambda t: t[:8], lambda t: t * 2, lambda t: "-" + t, lambda t: t.replace("a", "b")]))
    return (p.pattern_text(p.ID_CHARS, 64) | near).filter(lambda t: t not in world.tokens)


AGENTS = (World.live, World.left, World.worker, World.victim, World.doomed, World.phoenix)
# Names only the orchestrator may use for itself (services/auth/admin.py).
RESERVED_NAMES = st.sampled_from(sorted(RESERVED))


def semantic_probes(world: World, command: str) -> st.SearchStrategy[p.Probe] | None:
    """Well-formed commands the world's state refuses, or accepts without a write."""
    spec = p.SPECS[command]
    body = p.obj(spec)
    live, left = World.live, World.left
    t = world.tasks
    named = st.booleans()  # an agent's command: its agent_id spelled out, or left out
    if command == n.DEREGISTER:
        wrong_incarnation = st.integers(2, 2**63 - 1) | st.just(10**30)
        return st.one_of(
            st.builds(lambda a, i, nm: _as(a, {"incarnation": i}, nm, p.NOT_FOUND,
                                           category="unknown-agent"),
                      unknown_id(), st.integers(1, 2**63 - 1), named),
            st.builds(lambda a, i, nm: _as(a, {"incarnation": i}, nm, p.CONFLICT,
                                           category="wrong-incarnation"),
                      st.sampled_from([live, left, World.worker]), wrong_incarnation, named),
            # The incarnation that already left: accepted again, nothing written.
            named.map(lambda nm: _as(left, {"incarnation": 1}, nm, p.OK, category="repeat")),
        )
    if command == n.SERVICES:
        same = st.builds(
            lambda items, nm: _as(live, {"services": [p.Pairs(tuple(items))]}, nm, p.OK,
                                  category="repeat"),
            st.permutations(list(LIVE_SERVICES[0].items())), named)
        return st.one_of(
            st.builds(lambda a, s, nm: _as(a, {"services": s}, nm, p.NOT_FOUND,
                                           category="unknown-agent"),
                      unknown_id(), p.services_valid, named),
            st.builds(lambda s, nm: _as(left, {"services": s}, nm, p.CONFLICT,
                                        category="left-agent"), p.services_valid, named),
            same,
        )
    if command == n.ASSIGNMENTS:
        return st.builds(lambda a, nm: _as(a, {}, nm, p.OK, category="read"),
                         unknown_id() | st.sampled_from([live, left, World.worker]), named)
    if command == n.CATALOG_QUERY:
        return body.map(lambda b: _probe(b, p.OK, category="read"))
    if command == n.TASK_SUBMIT:
        done = t["fz-done"]
        other_kind = p.pattern_text(p.CAPABILITY_CHARS, 30).filter(lambda k: k != KIND)
        differs = st.builds(lambda b, k: {**b, "task_id": done.task_id, "kind": k},
                            body, other_kind)
        # The same body again, differently written (defaults spelled out or not, 3600 for
        # 3600.0, members in another order): answered with the status, not repeated.
        def rewritten(explicit: bool) -> st.SearchStrategy[p.Pairs]:
            defaults = {"priority": 0, "max_attempts": 3} if explicit else {}
            members = {**done.body, **defaults, "timeout_s": 3600 if explicit else 3600.0}
            payload = st.permutations(list(done.body["payload"].items())).map(
                lambda items: p.Pairs(tuple(items)))
            return st.builds(
                lambda pay, order: p.Pairs(tuple(
                    (k, pay if k == "payload" else v) for k, v in order)),
                payload, st.permutations(list(members.items())))

        rewrites = st.booleans().flatmap(rewritten)
        return st.one_of(
            differs.map(lambda b: _probe(b, p.CONFLICT, category="different-body")),
            rewrites.map(lambda b: _probe(b, p.OK, category="repeat")),
        )
    if command in (n.TASK_ACCEPT, n.TASK_PROGRESS, n.TASK_COMPLETE, n.TASK_FAIL):
        extra = body.map(lambda b: {k: v for k, v in b.items()
                                    if k not in ("task_id", "token")})
        known = st.sampled_from(sorted({i.task_id for i in t.values()}))
        # Another task's real token is as forged as a random one for this task.
        foreign = st.sampled_from(sorted(t)).flatmap(
            lambda name: st.tuples(
                st.sampled_from(sorted({i.task_id for i in t.values()}
                                       - {t[name].task_id})),
                st.just(t[name].token or "none")))
        probes = [
            st.builds(lambda i, k, e: _probe({"task_id": i, "token": k, **e}, p.NOT_FOUND,
                                             category="unknown-task"),
                      unknown_id(), p.pattern_text(p.ID_CHARS, 64), extra),
            st.builds(lambda i, k, e: _probe({"task_id": i, "token": k, **e}, p.STALE,
                                             category="forged-token"),
                      known, forged_token(world), extra),
            st.builds(lambda ik, e: _probe({"task_id": ik[0], "token": ik[1], **e}, p.STALE,
                                           category="foreign-token"),
                      foreign.filter(lambda ik: ik[1] != "none"), extra),
        ]
        # Sent by any agent: a token not the current one is stale whoever sends it.
        sent = _sent_by(st.one_of(probes), st.sampled_from([p.SELF, World.worker, live]))
        if command != n.TASK_COMPLETE:
            return sent
        done = t["fz-done"]
        holder = done.agent or World.worker
        # The report that completed it, again: accepted, nothing written, from the agent
        # it was assigned to; from any other, its current token proves nothing.
        return st.one_of(sent, st.builds(
            lambda r: _probe({"task_id": done.task_id, "token": done.token, "result": r},
                             p.OK, category="repeat", sender=holder), p.small_json),
            st.builds(
            lambda r, who: _probe({"task_id": done.task_id, "token": done.token, "result": r},
                                  p.UNAUTHORIZED, category="not-the-holder", sender=who),
            p.small_json, st.sampled_from(sorted({p.SELF, World.worker, live} - {holder}))))
    if command == n.TASK_CANCEL:
        reason = st.fixed_dictionaries({}, optional={"reason": p.text_4096})
        return st.one_of(
            st.builds(lambda i, r: _probe({"task_id": i, **r}, p.NOT_FOUND,
                                          category="unknown-task"), unknown_id(), reason),
            st.builds(lambda i, r: _probe({"task_id": i, **r}, p.CONFLICT,
                                          category="finished-task"),
                      st.sampled_from(["fz-done", "fz-dead"]), reason),
            reason.map(lambda r: _probe({"task_id": "fz-cancelled", **r}, p.OK,
                                        category="repeat")),
        )
    if command in (n.ADMIN_DRAIN, n.ADMIN_UNDRAIN):
        return st.one_of(
            unknown_id().map(lambda a: _probe({"agent_id": a}, p.NOT_FOUND,
                                              category="unknown-agent")),
            # One that left, two declared dead.
            st.sampled_from([left, World.victim, World.doomed]).map(
                lambda a: _probe({"agent_id": a}, p.CONFLICT, category="gone-agent")),
        )
    if command == n.ADMIN_DEREGISTER:
        return st.one_of(
            unknown_id().map(lambda a: _probe({"agent_id": a}, p.NOT_FOUND,
                                              category="unknown-agent")),
            # Its current incarnation has left already: accepted, nothing written.
            st.just(_probe({"agent_id": left}, p.OK, category="repeat")),
        )
    if command == n.ADMIN_ENROLL:
        not_rotating = st.builds(lambda b, rotate: {**{k: v for k, v in b.items()
                                                       if k != "rotate"}, **rotate},
                                 body, st.sampled_from([{}, {"rotate": False}]))
        return st.one_of(
            st.builds(lambda b, r: _probe({**b, "agent_id": r}, p.INVALID,
                                          category="reserved-name", bare=True),
                      body, RESERVED_NAMES),
            # It has a key: enrolling it again needs rotate.
            not_rotating.map(lambda b: _probe({**b, "agent_id": PERSON}, p.CONFLICT,
                                              category="enrolled")),
        )
    if command == n.ADMIN_IDENTITY_CREATE:
        return st.one_of(
            st.builds(lambda b, r: _probe({**b, "name": r}, p.INVALID,
                                          category="reserved-name", bare=True),
                      body, RESERVED_NAMES),
            st.builds(lambda b, r: _probe({**b, "name": r}, p.CONFLICT, category="exists"),
                      body, st.sampled_from([PERSON, REVOKED])),
        )
    if command == n.ADMIN_REVOKE:
        return st.one_of(
            st.builds(lambda b, r: _probe({**b, "name": r}, p.NOT_FOUND,
                                          category="unknown-identity"),
                      body, unknown_id() | RESERVED_NAMES),
            # Revoked already: accepted, nothing written.
            body.map(lambda b: _probe({**b, "name": REVOKED}, p.OK, category="repeat")),
        )
    if command == n.ADMIN_TOKEN_CREATE:
        return st.one_of(
            st.builds(lambda b, r: _probe({**b, "name": r}, p.INVALID,
                                          category="reserved-name", bare=True),
                      body, RESERVED_NAMES),
            body.map(lambda b: _probe({**b, "name": REVOKED}, p.CONFLICT,
                                      category="revoked")),
        )
    # register: every well-formed registration is carried out, but for one of an id a
    # live process holds (conflict), which depends on heartbeat timing: the integration
    # tests cover that.
    return None


def probes_for(world: World, command: str) -> st.SearchStrategy[p.Probe]:
    """Hostile payloads of `command`: most refused for their form, some for their subject
    (a sender token that is not an id; a body naming another agent than the subject), the
    rest for the world's state."""
    spec = p.SPECS[command]
    branches = {"form": p.hostile(spec)}
    weights = ["form"] * 6
    if command in AGENT_COMMANDS + CLIENT_COMMANDS:
        branches["sender"] = p.bad_sender(spec)
        weights.append("sender")
    if command in p.NAMES_ITS_AGENT:
        senders = st.sampled_from([p.SELF, *AGENTS]) | unknown_id()
        branches["other-agent"] = p.other_agent(spec, senders, st.sampled_from(AGENTS))
        weights.append("other-agent")
    semantic = semantic_probes(world, command)
    if semantic is not None:
        branches["state"] = semantic
        weights += ["state"] * 2
    return st.sampled_from(weights).flatmap(lambda which: branches[which])


# --- sending and checking -------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    reply: dict[str, Any]
    headers: dict[str, str]
    request_id: str


async def send(world: World, command: str, data: bytes, sender: str | None = None,
               request_id: str | None = None) -> Outcome:
    """Send `data` on the subject of `command` sent by `sender` (see `subject_of`)."""
    request_id = request_id or next_request_id()
    subject = subject_of(world.names, command, sender)
    try:
        msg: Msg = await world.nc.request(subject, data, timeout=REPLY_TIMEOUT_S,
                                          headers={REQUEST_ID_HEADER: request_id})
    except nats.errors.TimeoutError:
        raise AssertionError(
            f"no reply on {subject!r} within {REPLY_TIMEOUT_S}s: {data[:300]!r}") from None
    SENT[command] += 1
    reply = orjson.loads(msg.data)
    assert isinstance(reply, dict), reply
    return Outcome(reply, dict(msg.headers or {}), request_id)


def check_reply(command: str, probe: p.Probe, outcome: Outcome) -> None:
    """A coded reply of the documented shape, one of the outcomes the probe allows."""
    reply, headers = outcome.reply, outcome.headers
    context = f"{command} {probe!r} -> {reply!r}"
    if reply.get("ok") is not True:
        ErrorReply.model_validate(reply)  # the documented refusal, strictly
        code = reply["error"]["code"]
        message = reply["error"]["message"]
        details = reply["error"]["details"]
        assert code in CODES, context
        assert code in probe.expect, f"unexpected code {code}: {context}"
        assert message, context
        assert headers.get("Nats-Service-Error-Code") == MICRO_CODES[code], (headers, context)
        assert headers.get("Nats-Service-Error") == message, (headers, context)
        if code == p.INVALID and not probe.bare:
            assert 1 <= len(details) <= 20, context
            if probe.not_json:
                assert [d["type"] for d in details] == ["json_invalid"], context
        else:
            assert details == [], context
        return
    assert p.OK in probe.expect, f"accepted: {context}"
    assert "Nats-Service-Error" not in headers, context
    OK_REPLY_MODELS[command].model_validate(reply)
    if command not in READ_ONLY:
        assert "position" not in reply, f"a no-op repeat reports a write: {context}"


async def events_after(world: World, position: int) -> list[Any]:
    return list(await world.orch.store.read(position, 10_000))


async def assert_nothing_written(world: World, before: int, context: str) -> None:
    """The events stream did not move; or, if the health monitor or the dispatcher wrote
    meanwhile (a stall on a loaded machine), nothing new was caused by a fuzzed request."""
    after = await world.orch.store.last_position()
    if after == before:
        return
    events = await events_after(world, before)
    ours = [e for e in events if (e.causation_id or "").startswith(RID_PREFIX)
            or (e.correlation_id or "").startswith(RID_PREFIX)]
    assert not ours, f"refused command wrote {[e.to_json() for e in ours]}: {context}"
    unexpected = [e for e in events if e.name not in BACKGROUND_EVENTS]
    assert not unexpected, f"unexpected events {[e.to_json() for e in unexpected]}: {context}"
    BACKGROUND_SEEN.update(e.name for e in events)


async def probe_once(world: World, command: str, probe: p.Probe) -> Outcome:
    before = await world.orch.store.last_position()
    outcome = await send(world, command, probe.data, probe.sender)
    CATEGORIES[probe.category] += 1
    check_reply(command, probe, outcome)
    await assert_nothing_written(world, before, f"{command} {probe!r}")
    return outcome


# --- hypothesis in a worker thread ---------------------------------------------------


def on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T],
            timeout: float = 60) -> T:
    """Run `coro` on the test's event loop from the hypothesis thread, and wait for it."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


async def run_hypothesis(test: Callable[[], None]) -> None:
    """Run a hypothesis-decorated sync test in a thread while the event loop serves."""
    await asyncio.to_thread(test)


async def still_serving(world: World) -> None:
    """After the storm: a valid registration is carried out, recorded as the agent's
    (the identity its subject names), and the read API is ready."""
    reply = await world.ok(n.REGISTER, {"capacity": 1}, sender="fz-after")
    assert reply["position"] > 0 and reply["incarnation"] >= 1
    assert reply["agent_id"] == "fz-after"
    [registered] = await world.orch.store.read(reply["position"] - 1, 1)
    assert (registered.aggregate_id, registered.identity) == ("fz-after", "fz-after")
    await world.orch.runner.position.wait_for(reply["position"], 10)
    assert world.orch.runner.ready

