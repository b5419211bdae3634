"""Full task lifecycles per second (submit, assign, accept, complete), durable and lazy,
beside JetStream publish-with-ack of as many events."""

from __future__ import annotations

import asyncio
import time

import orjson
from nats.aio.client import Client

from bench.fleet import Fleet
from bench.harness import IDENTITY, Orchestrator, connect, nats_server, orchestrator
from bench.sizes import Size
from infra.names import TASK_SUBMIT

EVENTS_PER_TASK = 4  # Submitted, Assigned, Accepted, Completed
WINDOW = 200  # submissions in flight at once


async def run(size: Size) -> dict[str, float]:
    durable, baseline = await lifecycles(size.tasks, "always", with_baseline=True)
    lazy, _ = await lifecycles(size.tasks, "default", with_baseline=False)
    return {
        "tasks": size.tasks,
        "durable_tasks_per_s": durable,
        "lazy_tasks_per_s": lazy,
        "baseline_publish_per_s": baseline,
        "baseline_tasks_per_s": baseline / EVENTS_PER_TASK,
        "ratio": durable / (baseline / EVENTS_PER_TASK) if baseline else 0.0,
    }


async def lifecycles(count: int, sync: str, with_baseline: bool) -> tuple[float, float]:
    async with nats_server(sync) as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="30", ORCH_DEAD_AFTER="60", ORCH_ACCEPT_TIMEOUT="60",
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        fleet = Fleet(nc, orch.names, complete=True)
        await fleet.register([f"w{i}" for i in range(8)], capacity=WINDOW)
        await fleet.serve_assignments()
        finished = asyncio.Event()
        done = 0

        def on_done(_: object) -> None:
            nonlocal done
            done += 1
            if done >= count:
                finished.set()

        fleet.on_assignment = on_done  # counted when delivered; completion follows below
        started = time.monotonic()
        subject = orch.names.client_command(TASK_SUBMIT, IDENTITY)
        for start in range(0, count, WINDOW):
            await asyncio.gather(*(
                nc.request(subject, orjson.dumps({"task_id": f"t{i}", "kind": "k"}), timeout=60)
                for i in range(start, min(start + WINDOW, count))))
        await asyncio.wait_for(finished.wait(), 600)
        await _all_completed(nc, orch, count)
        rate = count / (time.monotonic() - started)
        baseline = await publish_rate(nc, count * EVENTS_PER_TASK) if with_baseline else 0.0
        await nc.close()
    return rate, baseline


async def _all_completed(nc: Client, orch: Orchestrator, count: int) -> None:
    js = nc.jetstream()
    while True:
        info = await js.stream_info(orch.names.events_stream,
                                    subjects_filter=orch.names.event("task", "*", "Completed"))
        # state.messages counts the whole stream; the per-subject counts are the filter's.
        if sum((info.state.subjects or {}).values()) >= count:
            return
        await asyncio.sleep(0.01)


async def publish_rate(nc: Client, events: int) -> float:
    """The baseline: JetStream publish with ack of as many events, as many in flight."""
    js = nc.jetstream()
    await js.add_stream(name="BENCH_BASELINE", subjects=["bench.baseline.>"])
    body = b'{"kind":"k","payload":null,"requires":[],"priority":0}'
    started = time.monotonic()
    for start in range(0, events, WINDOW):
        await asyncio.gather(*(js.publish(f"bench.baseline.{i}", body)
                               for i in range(start, min(start + WINDOW, events))))
    return events / (time.monotonic() - started)
