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
