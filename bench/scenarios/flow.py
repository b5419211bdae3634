"""Flow control (docs/flow-control.md): what concurrency keys and rate limits cost a task
lifecycle, CPU per placement decision with a large queue most of whose keys are at their
limit, the orchestrator's memory after a burst far past the admission bound, and how
long a small submitter waits beside a large one's backlog.

Each figure beside its baseline of the same run: lifecycles with no keys and no limits;
the same placement walk with no limit set; RSS before the burst (and a bound computed
from what a waiting task was measured to cost in it); the small submitter alone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from nats.aio.client import Client

from bench.fleet import Fleet
from bench.flow_placement import placement_cpu
from bench.harness import Orchestrator, connect, metric, nats_server, orchestrator
from bench.scenarios.memory import _caught_up, _settled_rss
from bench.scenarios.tasks import _all_completed
from bench.sizes import Size
from infra.names import ADMIN_LIMITS_SET, TASK_SUBMIT

WINDOW = 600  # submissions in flight at once (as in the tasks scenario)
WORKERS = 8
# Limits that never bind: 1,000 tasks of a key at once is past the window of
# submissions, and a rate of 100,000/s past what one orchestrator places.
LOOSE = {"concurrency": 1000, "rate": "100000/s", "burst": 1000}
# The in-process placement measure: the share of keys at their concurrency limit.
AT_LIMIT = 0.9
PLACEMENT_SUBMITTERS = 1
# The burst: the RSS bound is the RSS before the burst plus the tasks the bound still
# admits at the bytes a waiting task was measured to cost, times this (the allocator's
# slack, and garbage of the refusals not yet given back).
SAFETY = 1.5
BURST_WINDOW = 500
# The fairness pool: agents and each one's capacity.
POOL_AGENTS, POOL_CAPACITY = 4, 2


async def run(size: Size) -> dict[str, float]:
    lifecycles = await _with_and_without_limits(size)
    placement = placement_cpu(size.flow_waiting, size.flow_keys, PLACEMENT_SUBMITTERS,
                              AT_LIMIT, size.flow_decisions)
    unlimited = placement_cpu(size.flow_waiting, size.flow_keys, PLACEMENT_SUBMITTERS,
                              AT_LIMIT, size.flow_decisions, limited=False)
    burst = await _burst(size.flow_burst, size.flow_bound)
    shared = await _fairness(size.flow_large, size.flow_small)
    alone = await _fairness(0, size.flow_small)
    return {
        **lifecycles,
        "placement_waiting_tasks": size.flow_waiting,
        "placement_keys": size.flow_keys,
        "placement_keys_at_limit": int(size.flow_keys * AT_LIMIT),
        "placement_cpu_ms_p50": placement["p50"],
        "placement_cpu_ms_p99": placement["p99"],
        "placement_cpu_ms_max": placement["max"],
        "placement_lanes_set_aside_per_decision": placement["lanes_set_aside_p50"],
        "placement_cpu_ms_p99_without_limits": unlimited["p99"],
        **burst,
        "fairness_large_backlog": size.flow_large,
        "fairness_small_tasks": size.flow_small,
        "fairness_small_submitter_wait_s": shared["wait_s"],
        "fairness_small_alone_wait_s": alone["wait_s"],
        "fairness_small_last_placement": shared["last_placement"],
        # docs/flow-control.md: turns alternate, so the small one's n-th task is placed
        # within 2n placements plus the pool's slots filled at the start.
        "fairness_small_last_placement_bound": 2 * size.flow_small + POOL_AGENTS * POOL_CAPACITY,
    }


# --- lifecycles with and without limits ------------------------------------------------

async def _with_and_without_limits(size: Size) -> dict[str, float]:
    """Runs without keys and with `flow_keys` keys under loose limits alternate (the
    machine's drift falls on both); each rate is over all its runs' lifecycles."""
    spent = {"none": 0.0, "limits": 0.0}
    for _ in range(size.flow_pairs):
        for variant, keys in (("none", 0), ("limits", size.flow_keys)):
            spent[variant] += size.flow_tasks / await _lifecycles(size.flow_tasks, keys)
    count = size.flow_tasks * size.flow_pairs
    without, with_limits = count / spent["none"], count / spent["limits"]
    return {
        "lifecycles": count,
        "limit_keys": size.flow_keys,
        "lifecycles_per_s_with_limits": with_limits,
        "lifecycles_per_s_without_limits": without,
        "lifecycles_ratio_with_limits": with_limits / without,
    }


async def _lifecycles(count: int, keys: int) -> float:
    """Durable lifecycles per second (submit, assign, accept, complete) by a fake fleet;
    with `keys`, task i carries key i mod keys and every key has LOOSE limits."""
    async with nats_server("always") as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="30", ORCH_DEAD_AFTER="60", ORCH_ACCEPT_TIMEOUT="60",
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        if keys:
            await _set_limits(nc, orch, keys)
        fleet = Fleet(nc, orch.names, complete=True)
        await fleet.register([f"w{i}" for i in range(WORKERS)], capacity=WINDOW)
        await fleet.serve_assignments()
        subject = orch.names.client_command(TASK_SUBMIT, "bench")
        window = asyncio.Semaphore(WINDOW)

        async def submit(i: int) -> None:
            body: dict[str, Any] = {"task_id": f"t{i}", "kind": "k"}
            if keys:
                body["concurrency_key"] = f"key-{i % keys}"
            async with window:
                reply = orjson.loads((await nc.request(subject, orjson.dumps(body),
                                                       timeout=60)).data)
            if not reply.get("ok"):
                raise RuntimeError(f"submit refused: {reply}")

        started = time.monotonic()
        await asyncio.gather(*(submit(i) for i in range(count)))
        await _all_completed(nc, orch, count)
        rate = count / (time.monotonic() - started)
        await fleet.settled()
        await fleet.stop()
        await nc.close()
    return rate


async def _set_limits(nc: Client, orch: Orchestrator, keys: int) -> None:
    """LOOSE limits on keys key-0 ... as an operator sets them, applied before any task."""
    subject = orch.names.client_command(ADMIN_LIMITS_SET, "bench")
    for start in range(0, keys, 200):
        replies = await asyncio.gather(*(
            nc.request(subject, orjson.dumps({"scope": "key", "name": f"key-{k}", **LOOSE}),
                       timeout=30)
            for k in range(start, min(start + 200, keys))))
        for reply in replies:
            if not orjson.loads(reply.data).get("ok"):
                raise RuntimeError(f"limit refused: {reply.data!r}")
    await _caught_up(orch)


# --- a burst past the admission bound ------------------------------------------------

async def _burst(submitted: int, bound: int) -> dict[str, float]:
    """No agents; the total bound of unfinished tasks set to `bound`. A paced part
    measures what a waiting task costs (half the bound, after a tenth as a warm-up), then
    the rest of `submitted` comes as a burst and is mostly refused."""
    async with nats_server("default") as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="600", ORCH_DEAD_AFTER="1200",
        ORCH_MAX_UNFINISHED_TASKS=str(bound), ORCH_MAX_UNFINISHED_PER_SUBMITTER=str(bound),
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        warm_up, half = max(1, bound // 10), bound // 2
        started_rss = await _settled_rss(orch)
        counts = await _submit(nc, orch, 0, warm_up)
        await _caught_up(orch)
        warm_rss = await _settled_rss(orch)
        counts = [a + b for a, b in zip(counts, await _submit(nc, orch, warm_up, half),
                                        strict=True)]
        await _caught_up(orch)
        before = await _settled_rss(orch)
        per_task = (before - warm_rss) / max(1, half - warm_up)
        peak = [before]

        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], orch.rss_bytes())
                await asyncio.sleep(0.05)

        watching = asyncio.create_task(watch())
        burst_started = time.monotonic()
        try:
            burst = await _submit(nc, orch, half, submitted)
        finally:
            watching.cancel()
        burst_s = time.monotonic() - burst_started
        await _caught_up(orch)
        after = await _settled_rss(orch)
        text = await orch.metrics()
        counts = [a + b for a, b in zip(counts, burst, strict=True)]
        await nc.close()
    if counts[0] != bound:
        raise RuntimeError(f"{counts[0]} tasks admitted, not the bound's {bound}")
    return {
        "burst_submitted": submitted,
        "burst_admission_bound": bound,
        "burst_admitted": counts[0],
        "burst_refused": counts[1],
        "burst_refused_counted": sum(metric(text, "orch_admission_refused_total",
                                            f'bound="{b}"') for b in ("total", "submitter")),
        "burst_submits_per_s": (submitted - half) / burst_s,
        "burst_rss_started_bytes": started_rss,
        "burst_rss_before_bytes": before,
        "burst_bytes_per_waiting_task": per_task,
        "burst_rss_peak_bytes": peak[0],
        "burst_rss_bytes": after,
        "burst_rss_bound_bytes": before + (bound - half) * per_task * SAFETY,
        # The growth the tasks admitted in the burst do not explain, per refusal: what a
        # refused submit leaves behind (noise around 0 when it leaves nothing).
        "burst_residual_bytes_per_refusal": (after - before - (bound - half) * per_task)
        / max(1, counts[1]),
    }


async def _submit(nc: Client, orch: Orchestrator, first: int, end: int) -> list[int]:
    """Submit tasks u<first> ... u<end-1> as fast as they are answered, BURST_WINDOW in
    flight; [admitted, refused as overloaded]."""
    subject = orch.names.client_command(TASK_SUBMIT, "bench")
    window = asyncio.Semaphore(BURST_WINDOW)
    counts = [0, 0]

    async def submit(i: int) -> None:
        async with window:
            reply = orjson.loads((await nc.request(
                subject, orjson.dumps({"task_id": f"u{i}", "kind": "k"}), timeout=60)).data)
        if reply.get("ok"):
            counts[0] += 1
        elif reply.get("error", {}).get("code") == "overloaded":
            counts[1] += 1
        else:
            raise RuntimeError(f"submit failed: {reply}")

    for start in range(first, end, 10 * BURST_WINDOW):  # not a million coroutines at once
        await asyncio.gather(*(submit(i) for i in range(start, min(start + 10 * BURST_WINDOW,
                                                                    end))))
    return counts


# --- fairness -------------------------------------------------------------------------

async def _fairness(large: int, small: int) -> dict[str, float]:
    """`large` tasks of submitter bulk wait, then `small` of submitter small; then one
    pool of agents registers. Seconds from then until small's last task is completed,
    and its place among all placements."""
    async with nats_server("always") as server, orchestrator(
        server, ORCH_SUSPECT_AFTER="30", ORCH_DEAD_AFTER="60", ORCH_ACCEPT_TIMEOUT="60",
    ) as orch:
        await orch.start()
        nc = await connect(server.url)
        for identity, prefix, count in (("bulk", "b", large), ("small", "s", small)):
            subject = orch.names.client_command(TASK_SUBMIT, identity)
            for start in range(0, count, WINDOW):
                await asyncio.gather(*(
                    nc.request(subject, orjson.dumps({"task_id": f"{prefix}{i}", "kind": "k"}),
                               timeout=60)
                    for i in range(start, min(start + WINDOW, count))))
        await _caught_up(orch)
        fleet = Timed(nc, orch)
        await fleet.serve_assignments()
        started = time.monotonic()
        await fleet.register([f"p{i}" for i in range(POOL_AGENTS)], capacity=POOL_CAPACITY)
        await asyncio.wait_for(fleet.small_done(small), 300)
        wait = fleet.finished_at - started
        placed = [task_id for task_id, *_ in fleet.received]
        await fleet.stop()
        await nc.close()
    return {"wait_s": wait,
            "last_placement": max(placed.index(f"s{i}") for i in range(small)) + 1}


class Timed(Fleet):
    """The fake fleet, noting when the small submitter's tasks are completed."""

    def __init__(self, nc: Client, orch: Orchestrator) -> None:
        super().__init__(nc, orch.names, complete=True)
        self.small_completed = 0
        self.finished_at = 0.0
        self._changed = asyncio.Event()

    async def _work(self, agent_id: str, offer: dict[str, Any]) -> None:
        await super()._work(agent_id, offer)
        if offer["task_id"].startswith("s"):
            self.small_completed += 1
            self.finished_at = time.monotonic()
            self._changed.set()

    async def small_done(self, small: int) -> None:
        while self.small_completed < small:
            self._changed.clear()
            await self._changed.wait()
