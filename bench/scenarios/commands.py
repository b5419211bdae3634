"""Command latency: register, and submit-to-delivery at a steady 500 tasks/s, beside a
core NATS request/reply round trip."""

from __future__ import annotations

import asyncio
import time

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.fleet import Fleet
from bench.harness import IDENTITY, connect, nats_server, orchestrator, percentile
from bench.sizes import Size
from infra.names import REGISTER, TASK_SUBMIT

RATE = 500.0


async def run(size: Size) -> dict[str, float]:
    async with nats_server() as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="30", ORCH_DEAD_AFTER="60",
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        registering = []
        for i in range(size.command_samples):
            register = orch.names.agent_command(f"r{i}", REGISTER)
            started = time.perf_counter()
            await nc.request(register, orjson.dumps({"agent_id": f"r{i}"}), timeout=10)
            registering.append((time.perf_counter() - started) * 1000)

        fleet = Fleet(nc, orch.names, complete=True)
        await fleet.register([f"w{i}" for i in range(4)], capacity=1000)
        await fleet.serve_assignments()
        sent: dict[str, float] = {}
        submit = orch.names.client_command(TASK_SUBMIT, IDENTITY)
        start = time.monotonic()
        pending = []
        for i in range(size.command_samples):
            task_id = f"t{i}"
            sent[task_id] = time.monotonic()
            pending.append(asyncio.create_task(nc.request(
                submit, orjson.dumps({"task_id": task_id, "kind": "k"}), timeout=10)))
            await asyncio.sleep(max(0.0, start + (i + 1) / RATE - time.monotonic()))
        await asyncio.gather(*pending)
        deadline = time.monotonic() + 60
        while len(fleet.received) < size.command_samples and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        delivering = [(at - sent[task]) * 1000 for task, _, _, at in fleet.received]
        baseline = await core_rtt(nc, size.command_samples)
        await nc.close()
    return {
        "register_p50_ms": percentile(registering, 0.5),
        "register_p99_ms": percentile(registering, 0.99),
        "deliver_p50_ms": percentile(delivering, 0.5),
        "deliver_p99_ms": percentile(delivering, 0.99),
        "baseline_rtt_p99_ms": baseline,
    }


async def core_rtt(nc: Client, samples: int) -> float:
    """The baseline: a core NATS request to a responder that answers at once."""

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    subscription = await nc.subscribe("bench.echo", cb=echo)
    await nc.flush()
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        await nc.request("bench.echo", b"{}", timeout=5)
        times.append((time.perf_counter() - started) * 1000)
    await subscription.unsubscribe()
    return percentile(times, 0.99)
