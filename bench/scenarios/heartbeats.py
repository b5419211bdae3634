"""Heartbeats applied per second and their lag, beside a raw consumer of the same stream."""

from __future__ import annotations

import asyncio
import time

import orjson
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from bench.fleet import Fleet
from bench.harness import (
    Orchestrator,
    connect,
    histogram_quantile,
    metric,
    nats_server,
    orchestrator,
    raw_consumer_rate,
)
from bench.profile import cpu_seconds
from bench.sizes import Size
from infra.bus.connection import flush_subscriptions

LAG = "orch_heartbeat_lag_seconds"
APPLIED = ("orch_heartbeats_total", 'outcome="applied"')


async def run(size: Size) -> dict[str, float]:
    async with nats_server() as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="30", ORCH_DEAD_AFTER="60",
        ORCH_HEARTBEAT_INTERVAL="1",
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        fleet = Fleet(nc, orch.names)
        await fleet.register([f"h{i}" for i in range(size.heartbeat_agents)])
        before = await orch.metrics()
        assert orch.process is not None
        cpu_before = cpu_seconds(orch.process.pid)
        sent = await offer(fleet, size.heartbeat_rate, size.heartbeat_seconds)
        cpu_used = cpu_seconds(orch.process.pid) - cpu_before
        after = await orch.metrics()
        applied = metric(after, *APPLIED) - metric(before, *APPLIED)
        lag_p99 = histogram_quantile(delta(after, before), LAG, 0.99)
        saturation, steps = await find_saturation(orch, fleet, size)
        raw_stream, raw_messages = await baseline_stream(nc, orch, size)
        raw_cpu_before = time.process_time()
        baseline = await raw_consumer_rate(nc, raw_stream)
        raw_cpu_us = (time.process_time() - raw_cpu_before) / max(1, raw_messages) * 1e6
        await nc.close()
    applied_per_s = applied / size.heartbeat_seconds
    return {
        "offered_per_s": sent / size.heartbeat_seconds,
        "applied_per_s": applied_per_s,
        "lag_p99_ms": lag_p99 * 1000,
        "baseline_per_s": baseline,
        "ratio": applied_per_s / baseline if baseline else 0.0,
        "saturation_per_s": saturation,
        "saturation_ratio": saturation / baseline if baseline else 0.0,
        "saturation_steps": steps,
        # The work per heartbeat, which the shared cores do not blur as much: the
        # orchestrator's CPU per heartbeat applied at the offered rate, and the raw
        # consumer's (this process's) per message read.
        "cpu_us_per_heartbeat": cpu_used / max(1.0, applied) * 1e6,
        "baseline_cpu_us_per_message": raw_cpu_us,
    }


# Heartbeats the raw consumer reads: as many as the full-size run's first phase offers,
# so that its rate is not a start-up's (the heartbeat stream itself keeps one per agent).
BASELINE_MESSAGES = 200_000


async def baseline_stream(nc: Client, orch: Orchestrator, size: Size) -> tuple[str, int]:
    """A stream of the same heartbeats (a memory stream of their own, no per-agent
    bound), for the raw consumer; its name and how many it holds."""
    js = nc.jetstream()
    stream = f"{orch.names.heartbeats_stream}_RAW"
    subject = f"{orch.names.prefix}.rawhb"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"],
                                     storage=StorageType.MEMORY))
    count = min(BASELINE_MESSAGES, size.heartbeat_rate * int(size.heartbeat_seconds))
    for seq in range(count):
        await nc.publish(f"{subject}.h{seq % size.heartbeat_agents}",
                         orjson.dumps({"incarnation": 1, "seq": seq}))
    await flush_subscriptions(nc)
    deadline = time.monotonic() + 60.0
    while True:  # core publishes: a few may be lost to an overloaded server
        held = int((await js.stream_info(stream)).state.messages)
        if held >= count or time.monotonic() > deadline:
            return stream, held
        await asyncio.sleep(0.05)


SATURATION_LAG_S = 0.25  # lag p99 allowed at a sustained rate
GROWTH = 1.5  # each step offers this much more than the last


async def find_saturation(orch: Orchestrator, fleet: Fleet, size: Size) -> tuple[float, int]:
    """The highest offered rate at which every heartbeat is applied with lag p99 within
    SATURATION_LAG_S: rising steps until one fails, then one bisection between the last
    that held and the first that did not. Returns the rate and the steps measured."""
    seconds = max(0.5, size.heartbeat_seconds / 6)
    # The ceiling only bounds the run's length: far above any raw consumer's rate here
    # (8 times the rate, 160,000/s at full size, capped the measurement once intake
    # reached it).
    rate, ceiling = size.heartbeat_rate / 2, size.heartbeat_rate * size.saturation_ceiling
    held, failed, steps = 0.0, 0.0, 0
    while rate <= ceiling:
        steps += 1
        if await holds(orch, fleet, rate, seconds):
            held, rate = rate, rate * GROWTH
        else:
            failed = rate
            break
    if held and failed:
        steps += 1
        middle = (held + failed) / 2
        if await holds(orch, fleet, middle, seconds):
            held = middle
    return held, steps


async def holds(orch: Orchestrator, fleet: Fleet, rate: float, seconds: float) -> bool:
    """Offer `rate` for `seconds`: was every beat applied, with lag p99 in bounds?"""
    before = await orch.metrics()
    sent = await offer(fleet, int(rate), seconds)
    deadline = time.monotonic() + 10.0
    while True:  # drained: applied stops short of sent only if beats were lost or late
        after = await orch.metrics()
        applied = metric(after, *APPLIED) - metric(before, *APPLIED)
        if applied >= sent or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    lag_p99 = histogram_quantile(delta(after, before), LAG, 0.99)
    return applied >= sent and lag_p99 <= SATURATION_LAG_S


async def offer(fleet: Fleet, rate: int, seconds: float) -> int:
    """Publish `rate` heartbeats a second, round-robin over the fleet, for `seconds`."""
    agents = list(fleet.incarnations.items())
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    sent = 0
    started = time.monotonic()
    index = 0
    while time.monotonic() - started < seconds:
        for _ in range(per_tick):
            agent_id, incarnation = agents[index % len(agents)]
            index += 1
            sent += 1
            await fleet.nc.publish(fleet.names.heartbeat(agent_id), orjson.dumps(
                {"incarnation": incarnation, "seq": sent}))
        next_tick = started + (sent / per_tick) * tick
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    await flush_subscriptions(fleet.nc)  # and the publishes before them
    await asyncio.sleep(0.5)  # let the last ones be applied before reading the counters
    return sent


def delta(after: str, before: str) -> str:
    """The histogram's buckets counted during the run only."""
    import re

    counts = {le: float(c) for le, c in re.findall(rf'{LAG}_bucket{{le="([^"]+)"}} (\S+)',
                                                  before)}
    return "\n".join(
        f'{LAG}_bucket{{le="{le}"}} {float(c) - counts.get(le, 0.0)}'
        for le, c in re.findall(rf'{LAG}_bucket{{le="([^"]+)"}} (\S+)', after))
