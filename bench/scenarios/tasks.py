"""Full task lifecycles per second (submit, assign, accept, complete), durable and lazy,
beside JetStream publish-with-ack of as many events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from pathlib import Path

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from bench.fleet import Fleet
from bench.harness import IDENTITY, Orchestrator, connect, nats_server, orchestrator
from bench.profile import PROFILE_RATE_HZ, cpu_seconds, sampled
from bench.sizes import Size
from infra.names import TASK_SUBMIT
from infra.settings import Settings

EVENTS_PER_TASK = 4  # Submitted, Assigned, Accepted, Completed
WINDOW = 600  # submissions in flight at once


async def run(size: Size) -> dict[str, float]:
    log: dict[str, float] = {}
    durable, baseline = await lifecycles(size.tasks, "always", with_baseline=True, log=log)
    lazy, _ = await lifecycles(size.tasks, "default", with_baseline=False)
    batched = await batched_baseline(size.tasks * EVENTS_PER_TASK)
    return {
        "tasks": size.tasks,
        "durable_tasks_per_s": durable,
        "lazy_tasks_per_s": lazy,
        "baseline_publish_per_s": baseline,
        "baseline_tasks_per_s": baseline / EVENTS_PER_TASK,
        "ratio": durable / (baseline / EVENTS_PER_TASK) if baseline else 0.0,
        "baseline_batched_events_per_s": batched,
        "events_per_lifecycle": EVENTS_PER_TASK,
        # Lifecycles' events per second against what the store takes in atomic batches.
        "ratio_batched": durable * EVENTS_PER_TASK / batched if batched else 0.0,
        **log,
    }


async def lifecycles(count: int, sync: str, with_baseline: bool,
                     profile_to: Path | None = None,
                     cpu: dict[str, float] | None = None,
                     log: dict[str, float] | None = None) -> tuple[float, float]:
    """Lifecycles per second and, when asked, the publish baseline; with `profile_to`,
    py-spy samples the orchestrator for the measured window (bench/profile.py), and `cpu`
    is filled with each process's CPU seconds in that window, `log` with what the log
    stores per lifecycle."""
    # The default prefix (`orch`): the server is this orchestrator's alone, and the log's
    # bytes are then those of a deployment with the defaults (subjects hold the prefix).
    async with nats_server(sync) as server, orchestrator(
        server, Settings().subject_prefix, ORCH_SUSPECT_AFTER="30", ORCH_DEAD_AFTER="60",
        ORCH_ACCEPT_TIMEOUT="60",
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
        assert orch.process is not None
        sampling = (sampled(orch.process.pid, profile_to, PROFILE_RATE_HZ)
                    if profile_to is not None else contextlib.nullcontext())
        pids = {"orchestrator": orch.process.pid, "nats_server": server.pid,
                "load_generator": os.getpid()}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        with sampling:
            started = time.monotonic()
            subject = orch.names.client_command(TASK_SUBMIT, IDENTITY)
            # A sliding window: a new submit as each reply comes, so the orchestrator is
            # never left idle at the tail of a wave (waves of WINDOW paced it below its
            # capacity: 0.76 of a core in the profiled run).
            window = asyncio.Semaphore(WINDOW)

            async def submit(i: int) -> None:
                async with window:
                    await nc.request(subject, orjson.dumps({"task_id": f"t{i}", "kind": "k"}),
                                     timeout=60)

            await asyncio.gather(*(submit(i) for i in range(count)))
            await asyncio.wait_for(finished.wait(), 600)
            await _all_completed(nc, orch, count)
            rate = count / (time.monotonic() - started)
        if log is not None:
            log.update(await _log_size(nc, orch, count))
            log["disk_bytes_per_lifecycle"] = (
                _disk_bytes(server.data_dir, orch.names.events_stream) / count)
        if cpu is not None:
            cpu.update({name: cpu_seconds(pid) - before[name] for name, pid in pids.items()})
            cpu["wall"] = count / rate
        baseline = await publish_rate(nc, count * EVENTS_PER_TASK) if with_baseline else 0.0
        await fleet.stop()
        await nc.close()
    return rate, baseline


async def _log_size(nc: Client, orch: Orchestrator, count: int) -> dict[str, float]:
    """Bytes the events stream holds per task lifecycle: the task events' own, each
    counted as JetStream's file store accounts a message (`fileStoreMsgSizeRaw`: a
    30-byte record frame, the subject, the header block and its 4-byte length, the
    body), before any compression of the store; the fleet's registrations and any other
    event are left out. Each task event is read back from the stream (a pull consumer on
    the task subjects) and its header block counted as the server keeps it: `NATS/1.0`
    and a `Key: Value` line per header (`_stored_size`; tests/integration/
    test_log_forms.py checks the sum over a whole stream against the server's count).
    With the default subject prefix, `orch`, as `lifecycles` runs the orchestrator (a
    deployment's bytes): the subject and the optimistic-concurrency header hold it, so
    each character more costs 2 bytes an event."""
    task_bytes, task_events = await stored_bytes(nc, orch.names.events_stream,
                                                 orch.names.kind_events("task"))
    return {"log_bytes_per_lifecycle": task_bytes / count,
            "log_bytes_per_event": task_bytes / max(1, task_events)}


_RECORD_FRAME = 30  # nats-server filestore: a 22-byte record header and an 8-byte hash
# A header block: its 4-byte length in the record, `NATS/1.0` and the blank line ending it.
_HEADER_FRAME = 4 + len(b"NATS/1.0\r\n\r\n")


def _stored_size(msg: Msg) -> int:
    headers = msg.headers or {}
    header_block = (_HEADER_FRAME + sum(len(k.encode()) + len(v.encode()) + 4
                                        for k, v in headers.items())) if headers else 0
    return _RECORD_FRAME + len(msg.subject.encode()) + header_block + len(msg.data)


async def stored_bytes(nc: Client, stream: str, subject: str) -> tuple[int, int]:
    """(bytes, messages) of the stream's messages under `subject`, as JetStream counts
    them."""
    js = nc.jetstream()
    info = await js.stream_info(stream, subjects_filter=subject)
    wanted = sum((info.state.subjects or {}).values())
    sub = await js.pull_subscribe(subject, stream=stream, config=ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, mem_storage=True,
        inactive_threshold=30.0))
    total = seen = 0
    try:
        while seen < wanted:
            for msg in await sub.fetch(min(1000, wanted - seen), timeout=30):
                total += _stored_size(msg)
                seen += 1
    finally:
        await sub.unsubscribe()
    return total, seen


def _disk_bytes(data_dir: Path, stream: str) -> int:
    """The events stream's files on disk (compressed blocks, and the open one not yet),
    registrations included."""
    return sum(f.stat().st_size for d in data_dir.rglob(stream) if d.is_dir()
               for f in d.rglob("*") if f.is_file())


async def _all_completed(nc: Client, orch: Orchestrator, count: int) -> None:
    js = nc.jetstream()
    while True:
        info = await js.stream_info(orch.names.events_stream,
                                    subjects_filter=orch.names.event("task", "*", "Completed"))
        # state.messages counts the whole stream; the per-subject counts are the filter's.
        if sum((info.state.subjects or {}).values()) >= count:
            return
        await asyncio.sleep(0.01)


# A lifecycle's events as the orchestrator stores them (docs/protocol.md, Events).
LIFECYCLE_BODIES = (
    b'["5NMUXnLPU","k","8yco9S0Bf0mKH8BJw3mmH29T6WFCAMUS5CXxKkZw--Y"]',
    b'["5NMUXnLR5","w0","~uVSksWhgMHo",[["w0",0,10],"w1"]]',
    b'["5NMUXnLyD","~uVSksWhgMHo"]',
    b'["5NMUXnMG4","~uVSksWhgMHo","w0"]',
)
BATCH = 256  # the orchestrator's group commit writes at most this many at once
BATCHES_IN_FLIGHT = 4


async def batched_baseline(events: int) -> float:
    """The raw store's limit: the same events published in atomic batches, pipelined
    (several batches in flight), each event with its own Nats-Msg-Id, on a server under
    `sync_interval: always`; events stored per second."""
    async with nats_server("always") as server:
        nc = await connect(server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="BENCH_BATCHED", subjects=["bench.batched.>"],
                                         allow_atomic=True))
        inbox = nc.new_inbox()
        answers: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_answer(msg: Msg) -> None:
            answers.put_nowait(msg.data)

        await nc.subscribe(f"{inbox}.*", cb=on_answer)
        slots = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        stored = 0

        async def collect(count: int) -> None:
            nonlocal stored
            for _ in range(count):
                answer = orjson.loads(await answers.get())
                if "error" in answer:
                    raise RuntimeError(f"batch refused: {answer['error']}")
                stored += int(answer.get("count", 0))
                slots.release()

        batches = (events + BATCH - 1) // BATCH
        collector = asyncio.create_task(collect(batches))
        started = time.monotonic()
        for number in range(batches):
            await slots.acquire()
            first = number * BATCH
            size = min(BATCH, events - first)
            for offset in range(size):
                i = first + offset
                headers = {"Nats-Msg-Id": str(uuid.uuid4()), "Nats-Batch-Id": f"b{number}",
                           "Nats-Batch-Sequence": str(offset + 1)}
                reply = ""
                if offset == size - 1:
                    headers["Nats-Batch-Commit"] = "1"
                    reply = f"{inbox}.{number}"
                await nc.publish(f"bench.batched.t{i // EVENTS_PER_TASK}",
                                 LIFECYCLE_BODIES[i % EVENTS_PER_TASK], reply=reply,
                                 headers=headers)
        await asyncio.wait_for(collector, 600)
        rate = stored / (time.monotonic() - started)
        await nc.close()
    return rate


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
