"""Forged and replayed fencing tokens on task.accept, progress, complete and fail.

What docs/protocol.md ("Fencing tokens") promises:

- a token the task never issued (forged, or another task's) is refused with
  `stale_token` (`not_found` for a task never submitted) and writes nothing;
- a token the task did issue, but which is no longer current or whose task is no longer
  open, is refused with `stale_token` and the documented message, and the refusal is
  recorded as one `StaleResultRefused` event (`token`, `action`, `reason`: the message,
  `current_attempt`) whose identity is the agent that sent it; the reply carries no
  position;
- three repeats are accepted without a write instead: an accept of a task already
  running with its current token, a complete of a completed task and a fail of a
  dead-lettered one with the token that finished it.

Reports go out on an agent's own subject (`<prefix>.agent.<id>.task.accept`...): the
token decides, whichever agent sends it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from domain.base import CARRIED_FORWARD
from infra.names import (
    TASK_ACCEPT,
    TASK_COMPLETE,
    TASK_FAIL,
    TASK_PROGRESS,
    TASK_SUBMIT,
    Names,
)
from services.app import Orchestrator
from tests.fuzz.checks import (
    BACKGROUND_EVENTS,
    CATEGORIES,
    RID_PREFIX,
    check_reply,
    events_after,
    on_loop,
    probe_once,
    run_hypothesis,
    send,
    still_serving,
)
from tests.fuzz.payloads import probe as p
from tests.fuzz.payloads.commands import SPECS
from tests.fuzz.payloads.spec import obj
from tests.fuzz.probes import forged_token, unknown_id
from tests.fuzz.world import World, build_world

FORGED = int(os.environ.get("FUZZ_TOKEN_EXAMPLES", "600"))
REPLAYED = int(os.environ.get("FUZZ_REPLAY_EXAMPLES", "150"))
REPORTS = (TASK_ACCEPT, TASK_PROGRESS, TASK_COMPLETE, TASK_FAIL)
ACTION = {TASK_ACCEPT: "accept", TASK_PROGRESS: "progress", TASK_COMPLETE: "complete",
          TASK_FAIL: "fail"}

SETTINGS = dict(deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


@pytest.fixture
async def moved_world(orchestrator: Orchestrator, nc: Client,
                      names: Names) -> AsyncIterator[World]:
    """The fuzz world plus fz-moved, running on its second attempt."""
    built = await build_world(orchestrator, nc, names, moved_task=True)
    yield built
    await built.stop()


def report_fields(command: str) -> st.SearchStrategy[dict[str, Any]]:
    """The valid fields of a report besides task_id and token."""
    body = obj(SPECS[command])
    return body.map(lambda b: {k: v for k, v in b.items() if k not in ("task_id", "token")})


def report(command: str, task_id: str, token: str, extra: dict[str, Any]) -> bytes:
    return p.render({"task_id": task_id, "token": token, **extra}).encode()


async def test_forged_and_foreign_tokens_are_refused_and_write_nothing(
        moved_world: World) -> None:
    world = moved_world
    task_ids = sorted({t.task_id for t in world.tasks.values()})
    # Tokens this world issued, each paired with a task that never issued it.
    issued = {t.token: t.task_id for t in world.tasks.values() if t.token}
    foreign = st.sampled_from(sorted(issued)).flatmap(lambda token: st.tuples(
        st.sampled_from([i for i in task_ids if i != issued[token]]), st.just(token)))
    forged = st.tuples(st.sampled_from(task_ids), forged_token(world))
    unknown = st.tuples(unknown_id(), st.sampled_from(sorted(issued)) | forged_token(world))

    # The agent the token was offered to, another one, one that is not registered.
    senders = st.sampled_from([World.worker, World.live, World.victim, p.SELF])

    @settings(max_examples=FORGED, **SETTINGS)  # type: ignore[arg-type]
    @given(command=st.sampled_from(REPORTS), target=st.one_of(foreign, forged, unknown),
           sender=senders, data=st.data())
    def fuzz(command: str, target: tuple[str, str], sender: str, data: st.DataObject) -> None:
        task_id, token = target
        extra = data.draw(report_fields(command), label="fields")
        expect = p.NOT_FOUND if task_id.startswith("zz") else p.STALE
        probe = p.Probe(report(command, task_id, token, extra), frozenset({expect}),
                        "forged-token", sender=sender)
        on_loop(world.loop, probe_once(world, command, probe))

    await run_hypothesis(fuzz)
    await still_serving(world)


def replays(world: World) -> st.SearchStrategy[tuple[str, str, str]]:
    """(info name, command, expected reason) for reports with tokens of earlier attempts,
    or of tasks no longer open."""
    closed = {"fz-cancelled": "the task is cancelled", "fz-done": "the task is completed",
              "fz-dead": "the task is dead_lettered"}
    cases: list[tuple[str, str, str]] = []
    for command in REPORTS:
        cases.append(("fz-moved-first", command,
                      "the token is not the current assignment's"))
        for name, reason in closed.items():
            # Documented no-op repeats are not refusals: complete of a completed task and
            # fail of a dead-lettered one, each with the token that finished it.
            if (name, command) in (("fz-done", TASK_COMPLETE), ("fz-dead", TASK_FAIL)):
                continue
            cases.append((name, command, reason))
    return st.sampled_from(cases)


async def test_replayed_tokens_of_earlier_attempts_are_refused_and_recorded(
        moved_world: World) -> None:
    world = moved_world
    # Submitting a finished or moved task again changes nothing: its old tokens stay dead.
    for name in ("fz-cancelled", "fz-moved"):
        info = world.tasks[name]
        again = await world.call(TASK_SUBMIT, info.body)
        assert again == {"ok": True, "task_id": info.task_id, "status": info.status}

    @settings(max_examples=REPLAYED, **SETTINGS)  # type: ignore[arg-type]
    @given(case=replays(world), data=st.data())
    def fuzz(case: tuple[str, str, str], data: st.DataObject) -> None:
        name, command, reason = case
        extra = data.draw(report_fields(command), label="fields")
        on_loop(world.loop, replay_once(world, name, command, reason, extra))

    await run_hypothesis(fuzz)
    # Every refusal left the tasks as they were.
    for name, info in world.tasks.items():
        view = world.orch.board.get(info.task_id)
        assert view is not None and view.status == info.status, (name, view)
    await still_serving(world)


async def replay_once(world: World, name: str, command: str, reason: str,
                      extra: dict[str, Any]) -> None:
    info = world.tasks[name]
    assert info.token is not None and info.agent is not None
    before = await world.orch.store.last_position()
    data = report(command, info.task_id, info.token, extra)
    # Sent by the agent the token was offered to.
    probe = p.Probe(data, frozenset({p.STALE}), "replayed-token", sender=info.agent)
    outcome = await send(world, command, data, info.agent)
    CATEGORIES[probe.category] += 1
    check_reply(command, probe, outcome)
    message = f"task {info.task_id}: {reason}"
    assert outcome.reply["error"]["message"] == message, outcome.reply

    # A CarriedForward after it is a restatement of the task (infra.log.repository
    # carries a long history forward), not a decision.
    events = [e for e in await events_after(world, before)
              if not (e.name in BACKGROUND_EVENTS
                      and not (e.causation_id or "").startswith(RID_PREFIX))
              and e.name != CARRIED_FORWARD]
    assert [(e.kind, e.aggregate_id, e.name) for e in events] == [
        ("task", info.task_id, "StaleResultRefused")], [e.to_json() for e in events]
    recorded = events[0]
    assert recorded.causation_id == outcome.request_id
    assert recorded.identity == info.agent
    data_ = recorded.data()
    assert {k: data_[k] for k in ("token", "action", "reason", "current_attempt")} == {
        "token": info.token, "action": ACTION[command], "reason": message,
        "current_attempt": info.attempt}


async def test_documented_repeats_are_accepted_without_a_write(world: World) -> None:
    """Accept of a running task with its token; complete of a completed one and fail of
    a dead-lettered one with the token that finished it: accepted, no event, no position."""
    running, done, dead = world.tasks["fz-running"], world.tasks["fz-done"], world.tasks["fz-dead"]
    for command, info, extra in ((TASK_ACCEPT, running, {}),
                                 (TASK_COMPLETE, done, {"result": {"other": True}}),
                                 (TASK_FAIL, dead, {"error": "again", "retryable": True})):
        assert info.token is not None
        probe = p.Probe(report(command, info.task_id, info.token, extra),
                        frozenset({p.OK}), "repeat", sender=info.agent)
        outcome = await probe_once(world, command, probe)
        assert outcome.reply == {"ok": True, "task_id": info.task_id, "status": info.status}


async def test_a_current_token_is_refused_on_every_other_task(world: World) -> None:
    """The worker's running token on every other task: refused, nothing written; on its
    own task it still works afterwards (nothing was disturbed)."""
    running = world.tasks["fz-running"]
    assert running.token is not None
    for other in sorted({t.task_id for t in world.tasks.values()} - {running.task_id}):
        for command in REPORTS:
            extra = {"progress": 0.5} if command == TASK_PROGRESS else (
                {"error": "x"} if command == TASK_FAIL else {})
            probe = p.Probe(report(command, other, running.token, extra),
                            frozenset({p.STALE}), "foreign-token", sender=running.agent)
            await probe_once(world, command, probe)
    reply = await world.ok(TASK_PROGRESS, {"task_id": running.task_id,
                                           "token": running.token, "progress": 0.25},
                           running.agent)
    # Accepted (the log keeps a running task's progress only now and then).
    assert reply["status"] == "running"
