"""Command latency: register, and submit-to-delivery at a steady 500 tasks/s, beside a
core NATS request/reply round trip."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.fleet import Fleet
from bench.harness import IDENTITY, connect, nats_server, orchestrator, percentile
from bench.sizes import Size
from infra.names import REGISTER, TASK_SUBMIT

RATE = 500.0


async def run(size: Size) -> dict[str, float]:
    # The registered agents never heartbeat: deadlines past the run keep the monitor from
    # suspecting and declaring them dead (thousands of decisions) while latency is measured.
    async with nats_server() as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="600", ORCH_DEAD_AFTER="1200",
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        registering = []
        for i in range(size.command_samples):
            register = orch.names.agent_command(f"r{i}", REGISTER)
            started = time.perf_counter()
            await nc.request(register, orjson.dumps({"agent_id": f"r{i}"}), timeout=10)
            registering.append((time.perf_counter() - started) * 1000)

        # The agents on a connection of their own, as other processes would be: the
        # submitter's requests and the agents' traffic do not queue behind each other.
        agents_nc = await connect(server.url)
        fleet = Fleet(agents_nc, orch.names, complete=True)
        await fleet.register([f"w{i}" for i in range(4)], capacity=1000)
        await fleet.serve_assignments()
        submit = orch.names.client_command(TASK_SUBMIT, IDENTITY)
        delivering = await paced(nc, fleet, submit, "at500-", RATE, size.command_samples)
        await fleet.settled()
        # The durable capacity of this run, then the latency at fractions of it: where the
        # curve bends is where queueing starts.
        capacity = await burst_rate(nc, fleet, submit, "burst-", size.command_samples)
        curve: dict[str, float] = {"capacity_tasks_per_s": capacity}
        for percent in (25, 50, 75):
            # The previous phase's tasks finish first: a burst's accepts and completions
            # still being handled would be measured as this rate's queueing.
            await fleet.settled()
            rate = capacity * percent / 100
            times = await paced(nc, fleet, submit, f"at{percent}-", rate,
                                min(size.command_samples, max(20, int(rate * 4))))
            curve[f"deliver_p50_ms_at_{percent}pct"] = percentile(times, 0.5)
            curve[f"deliver_p99_ms_at_{percent}pct"] = percentile(times, 0.99)
            curve[f"rate_at_{percent}pct"] = rate
        baseline = await core_rtt(nc, size.command_samples)
        publish_p99 = await durable_publish_p99(nc, size.command_samples)
        loaded_p99 = await paced_publish_p99(nc, RATE * APPENDS_PER_TASK, size.command_samples)
        await fleet.stop()
        await agents_nc.close()
        await nc.close()
    return {
        "register_p50_ms": percentile(registering, 0.5),
        "register_p99_ms": percentile(registering, 0.99),
        "deliver_p50_ms": percentile(delivering, 0.5),
        "deliver_p99_ms": percentile(delivering, 0.99),
        "baseline_rtt_p99_ms": baseline,
        # A registration is one durable append: its floor is the store's own latency.
        "baseline_publish_p99_ms": publish_p99,
        # The store's own answer time at the appends 500 tasks/s make (a task's submit
        # and placement, its accept, its completion: three synced appends), paced alike.
        "baseline_publish_p99_ms_at_500": loaded_p99,
        **curve,
    }


async def paced(nc: Client, fleet: Fleet, submit: str, prefix: str, rate: float,
                samples: int) -> list[float]:
    """Submit `samples` tasks at a steady `rate`; each one's submit-to-delivery time (ms)."""
    sent: dict[str, float] = {}
    arrived = _Arrivals(fleet, sent)
    start = time.monotonic()
    pending = []
    for i in range(samples):
        task_id = f"{prefix}{i}"
        sent[task_id] = time.monotonic()
        pending.append(asyncio.create_task(nc.request(
            submit, orjson.dumps({"task_id": task_id, "kind": "k"}), timeout=30)))
        await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    await asyncio.gather(*pending)
    await arrived.all()
    return [(at - sent[task]) * 1000 for task, at in arrived.at.items()]


async def burst_rate(nc: Client, fleet: Fleet, submit: str, prefix: str, samples: int) -> float:
    """Deliveries per second with submissions kept 200 in flight (a new one as each is
    answered), as this run measures it."""
    sent = {f"{prefix}{i}": 0.0 for i in range(samples)}
    arrived = _Arrivals(fleet, sent)
    window = asyncio.Semaphore(200)

    async def one(i: int) -> None:
        async with window:
            await nc.request(submit, orjson.dumps({"task_id": f"{prefix}{i}", "kind": "k"}),
                             timeout=60)

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(samples)))
    await arrived.all()
    return samples / (time.monotonic() - started)


class _Arrivals:
    """When each of the `sent` tasks was first delivered, counted as they arrive (a scan
    of every delivery so far, polled, cost the load generator more than the rest)."""

    def __init__(self, fleet: Fleet, sent: dict[str, float]) -> None:
        self.sent = sent
        self.at: dict[str, float] = {}
        self._done = asyncio.Event()
        fleet.on_assignment = self._on_assignment

    def _on_assignment(self, offer: dict[str, Any]) -> None:
        task_id = offer["task_id"]
        if task_id in self.sent and task_id not in self.at:
            self.at[task_id] = time.monotonic()
            if len(self.at) == len(self.sent):
                self._done.set()

    async def all(self, timeout: float = 120.0) -> None:
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{len(self.sent) - len(self.at)} of {len(self.sent)} tasks "
                               f"were not delivered in {timeout:.0f} s") from None


APPENDS_PER_TASK = 3


async def paced_publish_p99(nc: Client, rate: float, samples: int) -> float:
    """JetStream publish-with-ack at a steady `rate`, many in flight: each ack's time."""
    js = nc.jetstream()
    await js.add_stream(name="BENCH_PACED", subjects=["bench.paced.>"])
    times: list[float] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        await js.publish(f"bench.paced.{i}", b'{"task_id":"t1","kind":"k"}')
        times.append((time.perf_counter() - started) * 1000)

    count = samples * APPENDS_PER_TASK
    pending = []
    start = time.monotonic()
    for i in range(count):
        pending.append(asyncio.create_task(one(i)))
        await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    await asyncio.gather(*pending)
    return percentile(times, 0.99)


async def durable_publish_p99(nc: Client, samples: int) -> float:
    """The baseline for register: one JetStream publish with ack at a time, each stored
    and synced (the server runs `sync_interval: always`) before the next."""
    js = nc.jetstream()
    await js.add_stream(name="BENCH_SEQUENTIAL", subjects=["bench.sequential.>"])
    times = []
    for i in range(samples):
        started = time.perf_counter()
        await js.publish(f"bench.sequential.{i}", b'{"agent_id":"r1","capacity":1}')
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 0.99)


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
