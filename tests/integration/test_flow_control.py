"""Flow control on a real nats-server: a concurrency key's bound held at every log
position through agent deaths, moves and a leader killed; a rate within one token of its
bucket; a small submitter served between a large one's backlog; no head-of-line
blocking; selectors, and why naming them; admission refusals and the client's back-off."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from infra.log.event_store import EventStore
from infra.log.format.codec import create_mapper
from infra.names import Names
from projections.board.tasks import TaskBoard
from sdk.agent import AgentClient, TaskContext
from sdk.client import Client
from services.audit.what_if_limits import what_if_limits
from tests.processes import OrchestratorProcess
from tests.support import eventually, get_json, request, subject


class Holding:
    """Agents whose tasks run until the test lets each one finish."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.running: dict[str, asyncio.Event] = {}
        self.agents: dict[str, AgentClient] = {}

    async def work(self, ctx: TaskContext) -> Any:
        done = self.running[ctx.task_id] = asyncio.Event()
        await done.wait()
        return ctx.task_id

    async def start(self, agent_id: str, capacity: int = 4, **labels: str) -> AgentClient:
        agent = AgentClient(agent_id, capacity=capacity, nats_url=self.url, prefix=self.prefix,
                            handlers={"work": self.work}, labels=labels)
        await agent.start()
        self.agents[agent_id] = agent
        return agent

    def finish_one(self, rng: random.Random) -> bool:
        waiting = [t for t, done in self.running.items() if not done.is_set()]
        if not waiting:
            return False
        self.running.pop(rng.choice(waiting)).set()
        return True

    async def stop(self) -> None:
        for done in self.running.values():
            done.set()
        for agent in self.agents.values():
            await agent.stop(deregister=False)


async def set_limit(nc: Any, names: Names, orchestrator: Any = None,
                    **body: Any) -> dict[str, Any]:
    """Set a limit; with an in-process orchestrator, wait until it applies it (a limit
    holds from its place in the log on)."""
    reply = await request(nc, subject(names, "admin.limits.set"), body)
    assert reply["ok"], reply
    if orchestrator is not None:
        await eventually(lambda: orchestrator.limits.position >= reply["position"],
                         what="the limit applied")
    return reply


async def replayed(nc: Any, names: Names) -> list[Any]:
    store = EventStore(nc.jetstream(), names, create_mapper())
    return [event async for event in store.iterate(0)]


def open_of_key_at_every_position(events: list[Any], key: str) -> list[int]:
    board, counts = TaskBoard(), []
    for event in events:
        board.apply(event)
        counts.append(board.flow.open.get(key, 0))
    return counts


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool],
                what: str, timeout: float = 30) -> None:
    await eventually(check, timeout=timeout, what=what)


async def test_the_concurrency_bound_holds_through_deaths_moves_and_a_leader_killed(
        orchestrators: list[OrchestratorProcess], nats_server: Any, nc: Any,
        names: Names) -> None:
    rng = random.Random(32)
    for orch in orchestrators:
        orch.start()
    for orch in orchestrators:
        await eventually(orch.ready, timeout=30, what="ready")

    async def leader() -> OrchestratorProcess | None:
        found = [o for o in orchestrators if o.alive and await o.is_leader()]
        return found[0] if len(found) == 1 else None

    await set_limit(nc, names, scope="key", name="gpu", concurrency=3)

    async def in_force() -> bool:
        found = await leader()
        if found is None:
            return False
        _, _, body = await get_json(found.url("/v1/limits"))
        return any(row["name"] == "gpu" for row in body["limits"])

    await eventually(in_force, timeout=10, what="the limit in force on the leader")
    fleet = Holding(nats_server.url, names.prefix)
    try:
        for i in range(3):
            await fleet.start(f"w{i}")
        tasks = [f"g{i:02}" for i in range(16)]
        for task_id in tasks:
            await request(nc, subject(names, "task.submit"),
                          {"task_id": task_id, "kind": "work", "concurrency_key": "gpu"})
        await until(lambda: len(fleet.running) == 3, "three running")
        spare = 3
        for step in range(12):
            action = rng.random()
            if step == 4:  # the leader is killed mid-run
                first = await eventually(leader, timeout=10, what="a leader")
                first.kill9()
                await eventually(leader, timeout=15, what="the other took over")
            elif action < 0.25 and len(fleet.agents) > 1:  # an agent dies holding tasks
                victim = rng.choice(sorted(fleet.agents))
                await fleet.agents.pop(victim).stop(deregister=False)
                await fleet.start(f"w{spare}")
                spare += 1
            else:
                fleet.finish_one(rng)
            await asyncio.sleep(0)

        async def all_done() -> bool:
            fleet.finish_one(rng)
            events = await replayed(nc, names)
            return sum(e.name == "Completed" for e in events) == len(tasks)

        await until(all_done, "every task completed", timeout=60)
        events = await replayed(nc, names)
        counts = open_of_key_at_every_position(events, "gpu")
        assert max(counts) == 3  # reached, never passed, at any log position
        moved = [e for e in events if e.name in ("Reassigned", "Requeued")]
        assert moved, "an agent died holding tasks: they moved"
        # Replayed under the limits in force, through deaths, moves and two leaders'
        # decisions (rounds and submits placed at once, racing): every placement decided
        # again where, and in the order, the dispatchers decided it.
        replay = await what_if_limits(EventStore(nc.jetstream(), names, create_mapper()), 1,
                                      None)
        assert replay["placements"]["same"], replay["placements"]
        assert {e.data()["from_agent"] for e in moved} <= {f"w{i}" for i in range(spare)}
    finally:
        await fleet.stop()


async def test_a_rate_stays_within_one_token_of_its_bucket(orchestrator: Any, nc: Any,
                                                          names: Names,
                                                          nats_server: Any) -> None:
    await set_limit(nc, names, orchestrator, scope="key", name="api", rate="30/s", burst=5)
    agent = AgentClient("fast", capacity=100, nats_url=nats_server.url, prefix=names.prefix,
                        handlers={"work": lambda ctx: _done(ctx)})
    await agent.start()
    client = await Client.connect(nats_server.url, identity="ci", subject_prefix=names.prefix)
    try:
        handles = await client.submit_many(
            [{"kind": "work", "concurrency_key": "api"} for _ in range(60)])
        await asyncio.gather(*(h.result(timeout=30) for h in handles))
    finally:
        await client.close()
        await agent.stop()
    times = sorted(e.recorded_at.timestamp() for e in await replayed(nc, names)
                   if e.name == "Assigned")
    assert len(times) == 60
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= 5 + (times[j] - start) * 30 + 1, (i, j)
    assert times[-1] - times[0] >= (60 - 5 - 1) / 30  # it was held to the rate


async def _done(ctx: TaskContext) -> str:
    return ctx.task_id


async def test_a_small_submitter_finishes_between_a_large_ones_backlog(
        orchestrator: Any, nc: Any, names: Names, nats_server: Any) -> None:
    bulk = await Client.connect(nats_server.url, identity="bulk", subject_prefix=names.prefix)
    small = await Client.connect(nats_server.url, identity="small",
                                 subject_prefix=names.prefix)
    agent = AgentClient("one", capacity=2, nats_url=nats_server.url, prefix=names.prefix,
                        handlers={"work": _done})
    try:
        await bulk.submit_many([{"kind": "work", "task_id": f"b{i:04}"} for i in range(1000)])
        mine = await small.submit_many([{"kind": "work", "task_id": f"s{i}"}
                                        for i in range(10)])
        await agent.start()
        await asyncio.gather(*(h.result(timeout=60) for h in mine))
    finally:
        await agent.stop()
        await bulk.close()
        await small.close()
    placed = [e.aggregate_id for e in await replayed(nc, names) if e.name == "Assigned"]
    # The bound stated in docs/flow-control.md: turns alternate, so the small one's n-th
    # task is placed within 2n + 2 placements (the agent's two slots at the start).
    for n in range(10):
        assert placed.index(f"s{n}") <= 2 * (n + 1) + 2, placed[:30]


async def test_selectors_place_by_labels_and_why_counts_the_agents_excluded(
        orchestrator: Any, nc: Any, names: Names, nats_server: Any) -> None:
    fleet = Holding(nats_server.url, names.prefix)
    try:
        await fleet.start("us-1", zone="us")
        await fleet.start("us-2", zone="us")
        await request(nc, subject(names, "task.submit"),
                      {"task_id": "eu", "kind": "work", "selector": {"zone": "eu"}})
        await request(nc, subject(names, "task.submit"),
                      {"task_id": "near", "kind": "work", "prefer": {"zone": "eu"}})
        await until(lambda: "near" in fleet.running, "the preferring task placed anyway")
        _, _, why = await get_json(
            f"http://127.0.0.1:{orchestrator.http_port}/v1/tasks/eu/why")
        [excluded] = [r for r in why["waiting"]["reasons"]
                      if r["code"] == "selector_unmatched"]
        assert excluded["count"] == 2 and "zone=eu" in excluded["message"]
        await fleet.start("eu-1", zone="eu")
        await until(lambda: "eu" in fleet.running, "placed once an agent has the label")
        assert orchestrator.board.get("eu").agent_id == "eu-1"
    finally:
        await fleet.stop()


async def test_a_held_key_never_blocks_the_tasks_behind_it_and_why_names_it(
        orchestrator: Any, nc: Any, names: Names, nats_server: Any) -> None:
    await set_limit(nc, names, orchestrator, scope="key", name="scarce", concurrency=1)
    fleet = Holding(nats_server.url, names.prefix)
    try:
        await fleet.start("w1", capacity=8)
        for i in range(3):
            await request(nc, subject(names, "task.submit"),
                          {"task_id": f"k{i}", "kind": "work", "priority": 9,
                           "concurrency_key": "scarce"})
        await request(nc, subject(names, "task.submit"), {"task_id": "other", "kind": "work"})
        await until(lambda: {"k0", "other"} <= set(fleet.running), "placed past the key")
        assert orchestrator.board.get("k1").status == "pending"
        _, _, why = await get_json(
            f"http://127.0.0.1:{orchestrator.http_port}/v1/tasks/k1/why")
        assert why["waiting"]["limit"]["code"] == "concurrency_limit"
        assert why["waiting"]["limit"]["key"] == "scarce"
        assert why["waiting"]["summary"].startswith("waiting for its key's limit")
    finally:
        await fleet.stop()


async def test_admission_refuses_writes_nothing_and_the_client_backs_off(
        orchestrator: Any, nc: Any, names: Names, nats_server: Any) -> None:
    await set_limit(nc, names, orchestrator, scope="submitter", name="tests",
                    max_unfinished=1)
    await request(nc, subject(names, "task.submit"), {"task_id": "a", "kind": "work"})
    await until(lambda: orchestrator.board.get("a") is not None, "a on the board")
    before = (await replayed(nc, names))[-1].position
    refused = await request(nc, subject(names, "task.submit"), {"task_id": "b", "kind": "work"})
    assert refused["ok"] is False and refused["error"]["code"] == "overloaded"
    assert refused["error"]["retry_after_s"] > 0
    assert (await replayed(nc, names))[-1].position == before  # nothing written
    again = await request(nc, subject(names, "task.submit"), {"task_id": "a", "kind": "work"})
    assert again["ok"]  # a retry of a task it has is still answered

    # The client, refused, waits as told and submits again once there is room.
    await set_limit(nc, names, orchestrator, scope="submitter", name="ci", max_unfinished=1)
    client = await Client.connect(nats_server.url, identity="ci", subject_prefix=names.prefix)
    fleet = Holding(nats_server.url, names.prefix)
    try:
        await fleet.start("w1")
        first = await client.submit("work", task_id="c1")
        await until(lambda: "c1" in fleet.running, "c1 running")
        refused_before = _refused(orchestrator)
        second = asyncio.create_task(client.submit("work", task_id="c2"))
        await until(lambda: _refused(orchestrator) > refused_before, "the second refused")
        assert not second.done()
        fleet.running["c1"].set()
        await first.result(timeout=10)
        handle = await asyncio.wait_for(second, timeout=15)
        await until(lambda: "c2" in fleet.running, "c2 running after the back-off")
        fleet.running["c2"].set()
        assert await handle.result(timeout=10) == "c2"
    finally:
        await client.close()
        await fleet.stop()


def on_board(orchestrator: Any, task_id: str) -> Callable[[], bool]:
    return lambda: orchestrator.board.get(task_id) is not None


def running(fleet: Holding, task_id: str) -> Callable[[], bool]:
    return lambda: task_id in fleet.running


def _refused(orchestrator: Any) -> float:
    return float(orchestrator.metrics.flow.refused.labels("submitter")._value.get())


async def test_a_bad_limit_is_refused_with_a_code_and_writes_nothing(
        orchestrator: Any, nc: Any, names: Names) -> None:
    before = (await replayed(nc, names) or [None])[-1]
    for body in ({"scope": "key", "name": "k", "rate": "lots"},
                 {"scope": "key", "name": "k", "weight": 2.0},
                 {"scope": "team", "name": "k"},
                 {"scope": "key", "name": "has.dot", "concurrency": 1}):
        reply = await request(nc, subject(names, "admin.limits.set"), body)
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_request", body
    after = (await replayed(nc, names) or [None])[-1]
    assert (after.position if after else 0) == (before.position if before else 0)


async def test_limits_and_what_if_limits_through_the_cli_and_the_read_api(
        orchestrator: Any, nc: Any, names: Names, nats_server: Any) -> None:
    """`orchestrator limits set|list`, and a window replayed under a wider limit: shorter
    waits for the key than it had; the same placements under the limit it had."""
    from tests.integration.test_cli import cli

    api = f"http://127.0.0.1:{orchestrator.http_port}"
    flags = ("--nats-url", nats_server.url, "--subject-prefix", names.prefix)
    code, out = await cli("limits", "set", "gpu", "--concurrency", "1", *flags)
    assert code == 0 and "limit key gpu: concurrency=1" in out, out
    await eventually(lambda: orchestrator.limits.key_limit("gpu") is not None,
                     what="the limit applied")
    start = (await replayed(nc, names))[-1].position + 1
    fleet = Holding(nats_server.url, names.prefix)
    try:
        await fleet.start("w1", capacity=4)
        for task_id in ("q0", "q1", "q2"):
            await request(nc, subject(names, "task.submit"),
                          {"task_id": task_id, "kind": "work", "concurrency_key": "gpu"})
            await until(on_board(orchestrator, task_id), "on the board")
        for task_id in ("q0", "q1", "q2"):
            await until(running(fleet, task_id), f"{task_id} running")
            fleet.running[task_id].set()
        await until(lambda: orchestrator.board.get("q2").status == "completed", "all done")
    finally:
        await fleet.stop()
    code, out = await cli("limits", "list", "--api-url", api)
    assert code == 0 and "gpu" in out and "concurrency=1" in out, out

    _, _, found = await get_json(f"{api}/v1/what-if/limits?from={start}")
    assert found["placements"]["same"], found["placements"]
    _, _, wider = await get_json(f"{api}/v1/what-if/limits?from={start}"
                                 "&set=gpu:concurrency=3")
    gpu = wider["keys"]["gpu"]
    assert gpu["what_if"]["longest_wait_s"] < gpu["actual"]["longest_wait_s"]
    status, _, refused = await get_json(f"{api}/v1/what-if/limits?set=gpu:speed=9")
    assert status == 400 and "speed" in refused["error"]["message"]
    code, out = await cli("what-if", "limits", "--from-position", str(start), "--set",
                          "gpu:concurrency=3", *flags)
    assert code == 0 and "what_if" in out and "gpu" in out, out
