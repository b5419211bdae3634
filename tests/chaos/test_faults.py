"""Long fault tests (`make chaos`): crashes, NATS restarts and outages, pauses, replicas
and a JetStream cluster, each under a running workload."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.bus.embedded import cluster_of
from tests.chaos.workload import Workload, check_log
from tests.processes import OrchestratorProcess
from tests.support import eventually, get_json

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]


def orchestrators(url: str, prefix: str, tmp_path: Path, count: int,
                  **env: str) -> list[OrchestratorProcess]:
    procs = []
    for i in range(count):
        proc = OrchestratorProcess(url, prefix, tmp_path / f"orch{i}.log")
        proc.env.update(env)
        procs.append(proc)
    return procs


async def served_board(proc: OrchestratorProcess, position: int) -> dict[str, str]:
    _, _, body = await get_json(proc.url(f"/v1/tasks?limit=1000&index={position - 1}&wait=30"))
    tasks = {t["task_id"]: t["status"] for t in body["tasks"]}
    after = body["next_after"]
    while after is not None:
        _, _, page = await get_json(proc.url(f"/v1/tasks?limit=1000&after={after}"))
        tasks.update({t["task_id"]: t["status"] for t in page["tasks"]})
        after = page["next_after"]
    return tasks


async def leaders(procs: list[OrchestratorProcess]) -> list[OrchestratorProcess]:
    return [p for p in procs if p.alive and await p.is_leader()]


async def test_ten_kill_9s_during_a_1000_task_run(nats_server, prefix, tmp_path):
    [orch] = orchestrators(nats_server.url, prefix, tmp_path, 1)
    orch.start()
    await eventually(orch.is_leader, timeout=60)
    work = Workload(nats_server.url, prefix, seed=7)
    await work.start(agents=5)
    stop = asyncio.Event()
    churn = asyncio.create_task(work.churn(stop))
    submit = asyncio.create_task(work.submit(1000, rate=150))
    # Random moments, taken as positions in the run: after so many acknowledged submits.
    moments = sorted(random.Random(3).sample(range(20, 950), 10))
    try:
        for moment in moments:
            await eventually(_reached(work, moment), timeout=120, interval=0.01)
            orch.kill9()
            orch.start()
            await eventually(orch.ready, timeout=60, what="restarted")
        await submit
        stop.set()
        await churn
        await eventually(lambda: _done(work), timeout=300, interval=0.5, what="all completed")
        events = await work.events()
        replay = check_log(events, work)
        served = await served_board(orch, events[-1].position)
        assert served == {t: v.status for t, v in replay.tasks.items()}
    finally:
        stop.set()
        orch.stop()
        await work.stop()


def _reached(work: Workload, count: int) -> Callable[[], bool]:
    return lambda: len(work.acknowledged) >= count


async def _done(work: Workload) -> bool:
    return len(work.submitted) >= 1000 and await work.completed() >= len(work.submitted)


async def test_nats_restart_and_a_20_second_outage_mid_run(own_server, prefix, tmp_path):
    [orch] = orchestrators(own_server.url, prefix, tmp_path, 1)
    orch.start()
    await eventually(orch.is_leader, timeout=60)
    work = Workload(own_server.url, prefix, seed=11)
    await work.start(agents=4)
    submit = asyncio.create_task(work.submit(400, rate=40))
    try:
        await eventually(lambda: len(work.acknowledged) > 50, timeout=60)
        await own_server.astop()  # a restart
        await own_server.astart()
        await eventually(lambda: len(work.acknowledged) > 150, timeout=60)
        await own_server.astop()  # and a 20 s outage
        down = time.monotonic()
        await eventually(lambda: time.monotonic() - down >= 20, timeout=30, interval=0.2)
        count = len(work.acknowledged)
        await own_server.astart()
        back = time.monotonic()
        await eventually(lambda: len(work.acknowledged) > count + 5, timeout=30,
                         what="commands answered again")
        resumed = time.monotonic() - back
        await submit
        await eventually(lambda: _all(work), timeout=300, interval=0.5)
        events = await work.events()
        check_log(events, work)
        assert resumed < 5.0
        assert [e for e in events if e.name == "DeclaredDead"] == []
    finally:
        orch.stop()
        await work.stop()


async def _all(work: Workload) -> bool:
    return await work.completed() >= len(work.submitted)


async def test_a_10_second_sigstop_declares_nobody_dead(nats_server, prefix, tmp_path):
    [orch] = orchestrators(nats_server.url, prefix, tmp_path, 1)
    orch.start()
    await eventually(orch.is_leader, timeout=60)
    work = Workload(nats_server.url, prefix, seed=5)
    await work.start(agents=4)
    try:
        await eventually(lambda: all(a.heartbeats_sent > 3 for a in work.agents))
        orch.pause()
        stopped = time.monotonic()
        await eventually(lambda: time.monotonic() - stopped >= 10, timeout=20, interval=0.2)
        orch.resume()
        resumed = time.monotonic()
        await eventually(lambda: time.monotonic() - resumed >= 3, timeout=10, interval=0.2)
        events = await work.events()
        assert [e for e in events if e.name == "DeclaredDead"] == []
    finally:
        orch.resume()
        orch.stop()
        await work.stop()


@pytest.mark.parametrize("replicas", [2, 3])
async def test_leader_killed_repeatedly_among_replicas(nats_server, prefix, tmp_path,
                                                       replicas):
    procs = orchestrators(nats_server.url, prefix, tmp_path, replicas)
    for proc in procs:
        proc.start()
    work = Workload(nats_server.url, prefix, seed=replicas)
    try:
        await eventually(lambda: _one_leader(procs), timeout=60)
        await work.start(agents=4)
        submit = asyncio.create_task(work.submit(300, rate=60))
        for _ in range(3):
            await eventually(lambda: len(work.acknowledged) > 0, timeout=30)
            [leader] = await leaders(procs)
            leader.kill9()
            killed = time.monotonic()
            await eventually(lambda: _one_leader(procs), timeout=15, interval=0.05)
            assert time.monotonic() - killed < 1.0 + 3.0  # lease TTL and slack
            leader.start()  # it comes back as a follower
        await submit
        await eventually(lambda: _all(work), timeout=300, interval=0.5)
        check_log(await work.events(), work)
    finally:
        for proc in procs:
            proc.stop()
        await work.stop()


async def _one_leader(procs: list[OrchestratorProcess]) -> bool:
    return len(await leaders(procs)) == 1


# What the orchestrator may add to the cluster's own recovery when a node is killed.
OUR_DISRUPTION_S = 2.0


@pytest.mark.parametrize("victim", ["events_leader", "follower"])
async def test_a_cluster_node_killed_under_load(prefix, tmp_path, victim):
    """A node is killed under load: no acknowledged event is lost, and submits are answered
    again soon. Killing the events stream's leader stops writes until the survivors elect
    another; nats-server waits 4 to 9 s (raft.go, not configurable) before it campaigns.
    So that case is held to the measured election plus our share, and the follower case
    to the promised 5 s."""
    nodes = cluster_of(tmp_path / "cluster", 3)
    for node in nodes:
        node.start()
    urls = ",".join(node.url for node in nodes)
    [orch] = orchestrators(urls, prefix, tmp_path, 1, ORCH_STREAM_REPLICAS="3")
    work = Workload(urls, prefix, seed=13)
    try:
        orch.start()
        await eventually(orch.is_leader, timeout=120, what="leader on the cluster")
        await work.start(agents=4)
        submit = asyncio.create_task(work.submit(300, rate=50))
        await eventually(lambda: len(work.acknowledged) > 80, timeout=60)
        leader = await work.events_leader()
        assert leader is not None
        doomed = next(node for node in nodes if (node.server_name == leader) ==
                      (victim == "events_leader"))
        doomed.kill()  # under load
        killed = time.monotonic()
        await eventually(lambda: _led_by_another(work, doomed.server_name), timeout=60,
                         interval=0.05, what="the events stream led by a live node")
        election = time.monotonic() - killed if victim == "events_leader" else 0.0
        await submit
        await eventually(lambda: _all(work), timeout=300, interval=0.5)
        check_log(await work.events(), work)
        disruption = max(work.reply_gaps)  # the longest wait for an answer
        print(f"victim={victim} election={election:.2f}s disruption={disruption:.2f}s")
        assert disruption < max(5.0, election + OUR_DISRUPTION_S)
    finally:
        orch.stop()
        await work.stop()
        for node in nodes:
            node.stop()


async def _led_by_another(work: Workload, dead: str) -> bool:
    leader = await work.events_leader()
    return leader is not None and leader != dead
