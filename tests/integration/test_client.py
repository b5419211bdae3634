"""The client SDK (sdk/client.py) against a real nats-server and orchestrator: results
awaited for each way a task ends, taken in the order they finish, submitted many at
once, and caught up after the client was cut off while its tasks finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sdk.agent import AgentClient, CommandError, TaskContext, TaskFailed
from sdk.client import Client, TaskCancelled, TaskDeadLettered
from tests.stall_proxy import StallProxy
from tests.support import eventually

Gates = dict[str, asyncio.Event]


@pytest.fixture
async def worker(orchestrator, nats_server, prefix) -> AsyncIterator[tuple[AgentClient, Gates]]:
    """An agent with capacity 8: `echo` answers its payload, `gated` waits for the test
    to open its task's gate, `broken` fails for good."""
    gates: Gates = {}

    async def echo(ctx: TaskContext) -> Any:
        return ctx.payload

    async def gated(ctx: TaskContext) -> Any:
        await gates.setdefault(ctx.task_id, asyncio.Event()).wait()
        return {"done": ctx.task_id}

    async def broken(ctx: TaskContext) -> Any:
        raise TaskFailed("the input is unreadable", retryable=False)

    agent = AgentClient("w1", nats_url=nats_server.url, prefix=prefix, capacity=8,
                        handlers={"echo": echo, "gated": gated, "broken": broken})
    await agent.start()
    yield agent, gates
    await agent.stop()


@pytest.fixture
async def connect(nats_server, prefix) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    made: list[Client] = []

    async def make(url: str | None = None, identity: str = "ci") -> Client:
        client = await Client.connect(url or nats_server.url, identity=identity,
                                      subject_prefix=prefix)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def gate(gates: Gates, task_id: str) -> asyncio.Event:
    return gates.setdefault(task_id, asyncio.Event())


async def test_a_completed_tasks_result_is_returned(orchestrator, worker, connect):
    client = await connect()
    handle = await client.submit("echo", {"n": 1}, task_id="t1")
    assert await handle.result(timeout=15) == {"n": 1}
    assert (await client.get("t1")).status == "completed"


async def test_a_dead_lettered_task_raises_with_its_error(orchestrator, worker, connect):
    client = await connect()
    handle = await client.submit("broken", task_id="t1")
    with pytest.raises(TaskDeadLettered) as raised:
        await handle.result(timeout=15)
    assert raised.value.outcome.error == "the input is unreadable"


async def test_a_cancelled_task_raises_with_the_reason(orchestrator, worker, connect):
    client = await connect()
    handle = await client.submit("gated", task_id="t1")
    await eventually(lambda: (t := orchestrator.board.get("t1")) and t.status == "running",
                     what="t1 running")
    assert await client.cancel("t1", "not needed any more") == "cancelled"
    with pytest.raises(TaskCancelled) as raised:
        await handle.result(timeout=15)
    assert raised.value.outcome.error == "not needed any more"


async def test_results_come_in_the_order_tasks_finish(orchestrator, worker, connect):
    _, gates = worker
    client = await connect()
    handles = [await client.submit("gated", task_id=f"t{i}") for i in (1, 2, 3)]
    await eventually(lambda: all((t := orchestrator.board.get(f"t{i}")) and t.status ==
                                 "running" for i in (1, 2, 3)), what="all three running")
    order = []
    def completed(task_id: str) -> Callable[[], bool]:
        return lambda: bool(orchestrator.board.get(task_id).status == "completed")

    for task_id in ("t3", "t1", "t2"):
        gate(gates, task_id).set()
        await eventually(completed(task_id), what=f"{task_id} completed")
    async for outcome in client.results(handles, timeout=15):
        order.append(outcome.task_id)
    assert order == ["t3", "t1", "t2"]


async def test_many_submitted_at_once_all_finish(orchestrator, worker, connect):
    client = await connect()
    handles = await client.submit_many(
        [{"kind": "echo", "payload": i, "task_id": f"t{i}"} for i in range(40)])
    seen = [outcome.value() async for outcome in client.results(handles, timeout=30)]
    assert sorted(seen) == list(range(40))


async def test_a_client_cut_off_while_its_tasks_finish_gets_each_result_once(
        orchestrator, worker, connect, nats_server, tmp_path):
    _, gates = worker
    proxy = StallProxy(nats_server.port, tmp_path / "proxy.log")
    proxy.start()
    try:
        client = await connect(proxy.url)
        handles = [await client.submit("gated", task_id=f"t{i}") for i in range(5)]
        await eventually(lambda: all((t := orchestrator.board.get(f"t{i}")) and t.status ==
                                     "running" for i in range(5)), what="all running")
        proxy.stop()  # the client's connection is gone
        await eventually(lambda: not client.nc.is_connected, what="the client cut off")
        for i in range(5):
            gate(gates, f"t{i}").set()
        await eventually(lambda: all(orchestrator.board.get(f"t{i}").status == "completed"
                                     for i in range(5)), what="all finished meanwhile")
        assert not any(handle.done() for handle in handles)  # nothing could reach it
        proxy.start()  # back: it reconnects and asks for what it missed
        outcomes = [o async for o in client.results(handles, timeout=30)]
        assert sorted(o.task_id for o in outcomes) == [f"t{i}" for i in range(5)]
        assert [o.result for o in outcomes] == [{"done": o.task_id} for o in outcomes]
    finally:
        proxy.stop()


async def test_a_handle_on_a_task_finished_before_it_was_asked_for(orchestrator, worker,
                                                                  connect):
    first = await connect()
    assert await (await first.submit("echo", "x", task_id="t1")).result(timeout=15) == "x"
    later = await connect()  # another process of the same identity
    assert await later.handle("t1").result(timeout=15) == "x"


async def test_a_refused_submit_raises_its_code(orchestrator, connect):
    client = await connect()
    await client.submit("echo", {"n": 1}, task_id="t1")
    with pytest.raises(CommandError) as raised:
        await client.submit("echo", {"n": 2}, task_id="t1")  # same id, another body
    assert raised.value.code == "conflict"
    with pytest.raises(CommandError) as unknown:
        await client.get("nope")
    assert unknown.value.code == "not_found"


async def test_partial_output_arrives_in_order_and_is_not_in_the_log(
        orchestrator, nats_server, prefix, connect):
    release = asyncio.Event()

    async def write(ctx: TaskContext) -> Any:
        for word in ("the ", "quick ", "brown ", "fox"):
            await ctx.stream(word)
        await ctx.progress(0.5)
        await release.wait()
        return "done"

    agent = AgentClient("writer", nats_url=nats_server.url, prefix=prefix,
                        handlers={"write": write})
    await agent.start()
    try:
        client = await connect()
        handle = await client.submit("write", task_id="t1")
        chunks: list[bytes] = []

        async def read() -> None:
            async for chunk in handle.stream():
                chunks.append(chunk)

        reading = asyncio.create_task(read())
        await eventually(lambda: handle.progress == 0.5 and len(chunks) == 4,
                         what="the partial output and the progress, while it runs")
        assert b"".join(chunks) == b"the quick brown fox"
        release.set()
        assert await handle.result(timeout=15) == "done"
        await asyncio.wait_for(reading, 15)  # the stream ends with the task
        history = await orchestrator.store.history("task", "t1")
        assert [e.name for e in history] == ["Submitted", "Assigned", "Accepted",
                                             "Completed"]
        relayed = orchestrator.metrics.registry.get_sample_value(
            "orch_task_feed_messages_total", {"kind": "chunk", "outcome": "relayed"})
        assert relayed == 4
    finally:
        await agent.stop()
