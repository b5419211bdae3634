"""Sending a probe and checking what comes of it: a coded reply of the documented shape,
one of the outcomes the probe allows, and nothing written (`probe_once`); what the
session sent, reported at the end of the run (tests/fuzz/conftest.py); and hypothesis run
in a worker thread.

Hypothesis runs in a worker thread (`run_hypothesis`) and hands each probe to the event
loop, which keeps serving the orchestrator, the heartbeats and the NATS clients between
examples; the test itself stays async and can check the orchestrator afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import nats.errors
import orjson
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
from tests.fuzz.endpoints import subject_of
from tests.fuzz.payloads import probe as p
from tests.fuzz.world import World

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
