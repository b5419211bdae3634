"""The client SDK (sdk/client.py) end to end: submit to result at a steady 100 and 1,000
tasks a second, submit_many against submits one at a time, and what progress reports
add to the log, beside a core NATS request/reply round trip and a JetStream publish ack
(alone, and paced beside the tasks at 100 a second).

Everything runs as a deployment's programs would, in the benchmark process: a Client
submits and awaits results (pushed to its inbox), and SDK agents (AgentClient) run the
handlers: `empty` returns at once, `progress` reports ten times (0.1 .. 1.0) first.
The orchestrator runs with the default subject prefix (`orch`), so the log's bytes are a
deployment's, on the embedded default store (`sync_interval: always`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from bench.harness import IDENTITY, connect, nats_server, orchestrator, percentile
from bench.profile import cpu_seconds
from bench.sizes import Size
from infra.bus.connection import flush_subscriptions
from infra.settings import Settings
from sdk.agent import AgentClient, TaskContext
from sdk.client import Client, TaskHandle

AGENTS, CAPACITY = 4, 100
PROGRESS_REPORTS = 10
WARM_UP = 20  # sequential lifecycles first: connections, caches, the first appends
RESULT_TIMEOUT_S = 120.0


async def empty(ctx: TaskContext) -> Any:
    return None


async def progressing(ctx: TaskContext) -> Any:
    for i in range(1, PROGRESS_REPORTS + 1):
        await ctx.progress(i / PROGRESS_REPORTS)
    return None


async def run(size: Size) -> dict[str, float]:
    at_100 = max(30, size.tasks // 2)  # tiny 30, quick 500 (5 s), full 2,500 (25 s)
    at_1000 = max(60, size.tasks * 2)  # tiny 80, quick 2,000 (2 s), full 10,000 (10 s)
    many = max(40, size.tasks)
    logged = max(20, size.tasks // 5)
    samples = max(100, size.command_samples)
    async with nats_server() as server, orchestrator(server, Settings().subject_prefix) as orch:
        await orch.start()
        agents = [AgentClient(f"c{i}", capacity=CAPACITY, nats_url=server.url,
                              prefix=orch.prefix,
                              handlers={"empty": empty, "progress": progressing})
                  for i in range(AGENTS)]
        for agent in agents:
            await agent.start()
        client = await Client.connect(server.url, identity=IDENTITY,
                                      subject_prefix=orch.prefix)
        nc = await connect(server.url)
        try:
            for _ in range(WARM_UP):
                await (await client.submit("empty")).result(RESULT_TIMEOUT_S)
            rtt = await request_rtts(nc, server.url, samples)
            acks = await publish_acks(nc, samples)
            assert orch.process is not None
            pids = {"orchestrator": orch.process.pid, "nats_server": server.pid,
                    "load_generator": os.getpid()}  # the client and the agents
            # Raw probes paced as the tasks are, in the same window: what the machine
            # gave a bare request and a bare synced publish while the tasks ran; and
            # how long each process waited for a CPU meanwhile.
            waited = {name: run_queue_wait(pid) for name, pid in pids.items()}
            began = time.monotonic()
            (slow, _), (probe_rtts, probe_acks) = await asyncio.gather(
                paced(client, 100.0, at_100), probes(nc, server.url, 100.0, at_100))
            wall = time.monotonic() - began
            waits = {f"cpu_wait_ms_per_s_{name}_at_100":
                     (run_queue_wait(pid) - waited[name]) * 1000 / wall
                     for name, pid in pids.items()}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            began = time.monotonic()
            fast, offered = await paced(client, 1000.0, at_1000)
            wall = time.monotonic() - began
            cores = {f"cores_{name}_at_1000": (cpu_seconds(pid) - before[name]) / wall
                     for name, pid in pids.items()}
            sequential, batched = await submit_rates(client, many)
            stream = orch.names.events_stream
            plain = await per_lifecycle(nc, client, stream, "empty", logged)
            reported = await per_lifecycle(nc, client, stream, "progress", logged)
        finally:
            await client.close()
            for agent in agents:
                await agent.stop()
            await nc.close()
    return {
        "tasks_at_100": at_100,
        "result_p50_ms_at_100": percentile(slow, 0.5),
        "result_p99_ms_at_100": percentile(slow, 0.99),
        # The same window's raw probes (see `probes`): a p99 far above the raw ones
        # measured alone says the machine, not the path, made the tasks' p99.
        "probe_request_p99_ms_at_100": percentile(probe_rtts, 0.99),
        "probe_publish_ack_p99_ms_at_100": percentile(probe_acks, 0.99),
        **waits,  # ms a second each process's threads waited for a CPU (Linux schedstat)
        "tasks_at_1000": at_1000,
        "result_p50_ms_at_1000": percentile(fast, 0.5),
        "result_p99_ms_at_1000": percentile(fast, 0.99),
        "submitted_per_s_at_1000": offered,  # the pace kept, as the load generator did
        **cores,  # CPU (cores) each process used over the 1,000/s phase
        "raw_request_p50_ms": percentile(rtt, 0.5),
        "raw_request_p99_ms": percentile(rtt, 0.99),
        "raw_publish_ack_p50_ms": percentile(acks, 0.5),
        "raw_publish_ack_p99_ms": percentile(acks, 0.99),
        "tasks_submitted": many,
        "submit_sequential_per_s": sequential,
        "submit_many_per_s": batched,
        "submit_many_ratio": batched / sequential if sequential else 0.0,
        "tasks_logged": logged,
        "events_per_lifecycle_no_progress": plain[0],
        "log_bytes_per_lifecycle_no_progress": plain[1],
        "events_per_lifecycle_with_progress": reported[0],
        "log_bytes_per_lifecycle_with_progress": reported[1],
        # What ten progress reports add to a lifecycle's events (target 0).
        "progress_events_per_lifecycle": reported[0] - plain[0],
    }


async def paced(client: Client, rate: float, count: int) -> tuple[list[float], float]:
    """`count` empty tasks submitted at a steady `rate` (each on its own, not waiting for
    the ones before): each one's time (ms) from just before its submit to its result, and
    the rate the submits were started at (below `rate` if this process fell behind)."""
    times: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        handle = await client.submit("empty")
        await handle.result(RESULT_TIMEOUT_S)
        times.append((time.perf_counter() - started) * 1000)

    pending = []
    start = time.monotonic()
    for i in range(count):
        pending.append(asyncio.create_task(one()))
        await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    offered = count / (time.monotonic() - start)
    await asyncio.gather(*pending)
    return times, offered


def run_queue_wait(pid: int) -> float:
    """Seconds a process's threads have waited, runnable, for a CPU so far (Linux
    /proc/<pid>/task/*/schedstat, its second field; 0 where the kernel keeps none)."""
    waited = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            waited += int(stat.read_text().split()[1])
    return waited / 1e9


async def probes(nc: Nats, url: str, rate: float, count: int) -> tuple[list[float], list[float]]:
    """Beside the paced tasks, at their pace: core NATS requests to a responder on a
    connection of its own, and JetStream publishes with ack to a stream of their own
    (each synced), each started on time without waiting for the ones before: the
    round trips (ms) of each."""
    responder = await connect(url)

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    await responder.subscribe("bench.probe.echo", cb=echo)
    await flush_subscriptions(responder)
    js = nc.jetstream()
    await js.add_stream(name="BENCH_CLIENT_PROBES", subjects=["bench.probe.acks.>"])
    rtts: list[float] = []
    acks: list[float] = []

    async def request() -> None:
        started = time.perf_counter()
        await nc.request("bench.probe.echo", b'{"kind":"empty"}', timeout=5)
        rtts.append((time.perf_counter() - started) * 1000)

    async def publish(i: int) -> None:
        started = time.perf_counter()
        await js.publish(f"bench.probe.acks.{i}", b'{"task_id":"t1","kind":"empty"}')
        acks.append((time.perf_counter() - started) * 1000)

    pending = []
    start = time.monotonic()
    try:
        for i in range(count):
            pending += [asyncio.create_task(request()), asyncio.create_task(publish(i))]
            await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
        await asyncio.gather(*pending)
    finally:
        await responder.close()
    return rtts, acks


async def submit_rates(client: Client, count: int) -> tuple[float, float]:
    """Tasks submitted a second (until the last submit is answered), one `await submit`
    at a time, then as many by one submit_many; each batch's results are awaited before
    the next phase, so neither is measured beside the other's work."""
    started = time.monotonic()
    handles = [await client.submit("empty") for _ in range(count)]
    sequential = count / (time.monotonic() - started)
    await _all_results(client, handles)
    started = time.monotonic()
    handles = await client.submit_many([{"kind": "empty"} for _ in range(count)])
    batched = count / (time.monotonic() - started)
    await _all_results(client, handles)
    return sequential, batched


async def per_lifecycle(nc: Nats, client: Client, stream: str, kind: str,
                        count: int) -> tuple[float, float]:
    """Events and bytes (JetStream's own count, stream_info before and after) the events
    stream gained per task, for `count` tasks of `kind` run to their end."""
    before = await _settled(nc, stream)
    handles = await client.submit_many([{"kind": kind} for _ in range(count)])
    await _all_results(client, handles)
    after = await _settled(nc, stream)
    return (after[0] - before[0]) / count, (after[1] - before[1]) / count


async def _settled(nc: Nats, stream: str) -> tuple[int, int]:
    """(messages, bytes) of the stream once three reads 50 ms apart agree: anything the
    orchestrator writes after a result was sent is counted."""
    js = nc.jetstream()
    seen: list[tuple[int, int]] = []
    while len(seen) < 3 or len(set(seen[-3:])) > 1:
        state = (await js.stream_info(stream)).state
        seen.append((state.messages, state.bytes))
        await asyncio.sleep(0.05)
    return seen[-1]


async def _all_results(client: Client, handles: list[TaskHandle]) -> None:
    async for outcome in client.results(handles, timeout=RESULT_TIMEOUT_S):
        outcome.value()  # raises unless it completed


async def request_rtts(nc: Nats, url: str, samples: int) -> list[float]:
    """The baseline: core NATS requests, one at a time, to a responder on a connection of
    its own that answers at once (ms each)."""
    responder = await connect(url)

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    await responder.subscribe("bench.echo", cb=echo)
    await flush_subscriptions(responder)  # the server has the SUB before the first request
    times = []
    try:
        for _ in range(samples):
            started = time.perf_counter()
            await nc.request("bench.echo", b'{"kind":"empty"}', timeout=5)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        await responder.close()
    return times


async def publish_acks(nc: Nats, samples: int) -> list[float]:
    """The store's floor: JetStream publishes with ack, one at a time, each stored and
    synced (`sync_interval: always`) before the next (ms each)."""
    js = nc.jetstream()
    await js.add_stream(name="BENCH_CLIENT_ACKS", subjects=["bench.acks.>"])
    times = []
    for i in range(samples):
        started = time.perf_counter()
        await js.publish(f"bench.acks.{i}", b'{"task_id":"t1","kind":"empty"}')
        times.append((time.perf_counter() - started) * 1000)
    return times
