"""What-if over a long history: the durable liveness record's bytes per agent-day for a
steady fleet, and the time to sweep a 5 x 5 grid over 7 days of it; beside the raw
baseline of keeping every heartbeat, measured on a slice in the same run and scaled."""

from __future__ import annotations

import asyncio
import random
import time

import orjson
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from bench.harness import connect, nats_server
from bench.sizes import Size
from domain.agents.what_if import Silence
from infra.log.streams import provision
from infra.names import Names
from services.audit.liveness import read_record
from services.audit.what_if import Recording, sweep
from services.health.liveness_record import RESOLUTION_INTERVALS

DAYS = 7
# A steady fleet: a few heartbeats late enough to be kept each agent-day (GC pauses,
# network blips), about 3 s each at a 1 s interval.
SILENCES_PER_AGENT_DAY = 4
INTERVAL_S = 1.0
GRID = [1.0, 2.0, 3.0, 5.0, 8.0]  # suspect_after x dead_after, 5 x 5
RAW_SLICE_BEATS = {"full": 20_000, "quick": 20_000, "tiny": 1_000}
AGENTS = {"full": 1000, "quick": 300, "tiny": 20}


async def run(size: Size) -> dict[str, float]:
    agents = AGENTS.get(size.name, 1000)
    names = Names("hist")
    async with nats_server() as server:
        nc = await connect(server.url)
        js = nc.jetstream()
        await provision(js, names, heartbeat_history=100)
        start = time.time() - DAYS * 86400
        written = await _write_history(nc, names, agents, start)
        info = await js.stream_info(names.liveness_stream)
        deadline = time.monotonic() + 60
        while info.state.messages < written + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # stored a moment after the server took them
            info = await js.stream_info(names.liveness_stream)
        began = time.perf_counter()
        record = await read_record(js, names, start + DAYS * 86400)
        found = Recording(
            {a: [Silence(s.start, s.end, s.incarnation) for s in found]
             for a, found in record.silences.items()},
            {}, record, [], start + DAYS * 86400)
        body = sweep(found, GRID, GRID, [1], INTERVAL_S)
        sweep_s = time.perf_counter() - began
        raw_bytes, raw_per_beat_s = await _raw_slice(
            js, names, RAW_SLICE_BEATS.get(size.name, 20_000))
        await nc.close()
    agent_days = agents * DAYS
    beats = agent_days * 86400 / INTERVAL_S
    return {
        "agents": agents,
        "days": DAYS,
        "silences_written": written,
        "record_bytes_per_agent_day": info.state.bytes / agent_days,
        "sweep_s": sweep_s,
        "points": len(body["points"]),
        "raw_bytes_per_agent_day": raw_bytes * 86400 / INTERVAL_S,
        "raw_sweep_s_scaled": raw_per_beat_s * beats,
    }


async def _write_history(nc, names: Names, agents: int, start: float) -> int:  # type: ignore[no-untyped-def]
    """Days of a fleet's silences as the recorder writes them, and one watch over all."""
    rng = random.Random(13)
    count = 0
    for index in range(agents):
        subject = names.liveness_silence(f"a{index}")
        for _ in range(SILENCES_PER_AGENT_DAY * DAYS):
            at = start + rng.uniform(0, DAYS * 86400)
            length = RESOLUTION_INTERVALS * INTERVAL_S + rng.expovariate(1.0)
            await nc.publish(subject, orjson.dumps(
                {"i": 1, "f": round(at, 3), "t": round(at + length, 3)}))
            count += 1
        if index % 50 == 0:
            await nc.flush()
    await nc.publish(names.liveness_watch("bench"), orjson.dumps(
        {"f": start, "t": start + DAYS * 86400, "r": RESOLUTION_INTERVALS * INTERVAL_S}),
        headers={"Nats-Rollup": "sub"})
    await nc.flush()
    return count


async def _raw_slice(js, names: Names, beats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Every heartbeat kept, on file: bytes per beat, and the time per beat to read them
    back and find the silences (what a raw what-if would do)."""
    stream = names.heartbeats_stream + "_RAW"
    await js.add_stream(StreamConfig(name=stream, subjects=["raw.hb.>"],
                                     storage=StorageType.FILE))
    now = time.time()
    for seq in range(beats):
        await js.publish(f"raw.hb.a{seq % 100}", orjson.dumps(
            {"incarnation": 1, "seq": seq, "load": 0.5, "running": []}))
    info = await js.stream_info(stream)
    sub = await js.pull_subscribe("raw.hb.>", stream=stream,
                                  config=ConsumerConfig(ack_policy=AckPolicy.NONE))
    began = time.perf_counter()
    last: dict[str, float] = {}
    gaps = 0
    remaining = beats
    while remaining > 0:
        for msg in await sub.fetch(min(remaining, 1000), timeout=10):
            at = msg.metadata.timestamp.timestamp()
            gaps += at - last.get(msg.subject, now) > RESOLUTION_INTERVALS * INTERVAL_S
            last[msg.subject] = at
            remaining -= 1
    elapsed = time.perf_counter() - began
    return info.state.bytes / beats, elapsed / beats
