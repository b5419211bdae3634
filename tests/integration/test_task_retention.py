"""A finished task leaves the task board after ORCH_FINISHED_TASK_RETENTION of log time;
its history stays readable from the log, and its id stays taken."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from services.app import Orchestrator
from tests.support import get_json, request, subject

RETENTION_S = 0.5


async def test_a_finished_task_leaves_the_board_and_keeps_its_history(settings, nc, names):
    orch = Orchestrator(replace(settings, finished_task_retention=RETENTION_S))
    await orch.start()
    base = f"http://127.0.0.1:{orch.http_port}"
    try:
        submit = {"task_id": "t1", "kind": "work", "requires": ["nobody-has-this"]}
        await request(nc, subject(names, "task.submit"), submit)
        await request(nc, subject(names, "task.cancel"), {"task_id": "t1"})
        status, _, body = await get_json(f"{base}/v1/tasks/t1")
        assert (status, body["status"]) == (200, "cancelled")

        # The board forgets by the log's clock: later events move it on.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        number = 0
        while "t1" in orch.board.tasks:
            assert loop.time() < deadline, "the finished task stayed on the board"
            number += 1
            reply = await request(nc, subject(names, "register", f"a{number}"),
                                  {"agent_id": f"a{number}"})
            assert await orch.runner.position.wait_past(reply["position"] - 1, 5)

        status, _, body = await get_json(f"{base}/v1/tasks/t1")
        assert (status, body["error"]["code"]) == (404, "not_found")
        status, _, body = await get_json(f"{base}/v1/tasks/t1/history")
        assert status == 200
        assert [e["type"] for e in body["events"]] == ["Submitted", "Cancelled"]
        again = await request(nc, subject(names, "task.submit"), submit)  # still its id
        assert (again["ok"], again["status"]) == (True, "cancelled")
    finally:
        await orch.stop()


async def test_past_the_count_bound_the_first_finished_leave_and_a_restart_agrees(
        settings, nc, names):
    """ORCH_FINISHED_TASK_LIMIT: the first finished leave first; an orchestrator started
    from the snapshot the first one left, or from the log alone, holds the same tasks."""
    bounded = replace(settings, finished_task_retention=0.0, finished_task_limit=2,
                      snapshot_every=1000)
    orch = Orchestrator(bounded)
    await orch.start()
    try:
        for number in range(4):
            await request(nc, subject(names, "task.submit"),
                          {"task_id": f"c{number}", "kind": "work", "requires": ["nobody"]})
        for number in (2, 0, 1):  # c2 finishes first
            reply = await request(nc, subject(names, "task.cancel"),
                                  {"task_id": f"c{number}"})
        assert await orch.runner.position.wait_past(reply["position"] - 1, 5)
        assert sorted(orch.board.tasks) == ["c0", "c1", "c3"]
        # The finished tasks' aggregates left the command cache; commands on them read
        # the log and are answered as before.
        assert {"c0", "c1", "c2"}.isdisjoint(orch.tasks.repository._cache)
        again = await request(nc, subject(names, "task.submit"),
                              {"task_id": "c2", "kind": "work", "requires": ["nobody"]})
        assert (again["ok"], again["status"]) == (True, "cancelled")
        base = f"http://127.0.0.1:{orch.http_port}"
        status, _, body = await get_json(f"{base}/v1/tasks/c2")
        assert (status, body["error"]["code"]) == (404, "not_found")
        status, _, body = await get_json(f"{base}/v1/tasks/c2/history")
        assert [e["type"] for e in body["events"]] == ["Submitted", "Cancelled"]
        held = {t: v.to_json() for t, v in orch.board.tasks.items()}
    finally:
        await orch.stop()  # the leader leaves a snapshot

    for snapshot_every in (1000, 0):  # from the snapshot, then from the log alone
        restarted = Orchestrator(replace(bounded, snapshot_every=snapshot_every))
        await restarted.start()
        try:
            assert (restarted.runner.started_from > 0) == bool(snapshot_every)
            assert {t: v.to_json() for t, v in restarted.board.tasks.items()} == held
            assert list(restarted.board.finished) == ["c0", "c1"]
        finally:
            await restarted.stop()

    # A lower bound on a restart from the snapshot: the first finished of those held go.
    tighter = Orchestrator(replace(bounded, finished_task_limit=1))
    await tighter.start()
    try:
        assert tighter.runner.started_from > 0
        assert sorted(tighter.board.tasks) == ["c1", "c3"]
    finally:
        await tighter.stop()
