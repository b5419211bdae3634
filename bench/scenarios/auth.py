"""Security's cost: connecting with enrollment and reconnecting through the auth
callout, beside a plain connect to a server without auth; and command latency with
auth on beside auth off, in the same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import nats
import orjson

from bench.harness import percentile
from bench.sizes import Size
from infra.auth.credentials import read_secret
from infra.auth.keys import Role, new_seed
from infra.bus.embedded import free_port
from infra.names import TASK_SUBMIT
from infra.settings import Settings
from services.app import Orchestrator

ROUNDS = 6  # submits alternate between auth on and off, so drift hits both alike


async def run(size: Size) -> dict[str, float]:
    samples = max(20, size.command_samples // 10)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="orch-bench-auth-") as tmp:
        secure = await _start(Path(tmp) / "on", "on")
        plain = await _start(Path(tmp) / "off", "off")
        try:
            results.update(await _connects(secure, samples))
            results["baseline_connect_p99_ms"] = percentile(
                [await _timed_connect(plain.nats_url) for _ in range(samples)], 0.99)
            callout = secure.access_control.callout
            assert callout is not None
            results["callout_p99_ms"] = percentile([d * 1000 for d in callout.durations], 0.99)
            on: list[float] = []
            off: list[float] = []
            per_round = max(1, size.command_samples // ROUNDS)
            for round_number in range(ROUNDS):
                on += await _submits(secure, per_round, f"r{round_number}")
                off += await _submits(plain, per_round, f"r{round_number}")
        finally:
            await secure.stop()
            await plain.stop()
    results["submit_p99_ms_auth_on"] = percentile(on, 0.99)
    results["submit_p99_ms_auth_off"] = percentile(off, 0.99)
    results["submit_p50_ms_auth_on"] = percentile(on, 0.5)
    results["submit_p50_ms_auth_off"] = percentile(off, 0.5)
    return results


async def _start(data_dir: Path, auth: str) -> Orchestrator:
    orch = Orchestrator(Settings(
        data_dir=data_dir, embedded_nats_port=free_port(), http_port=0, auth=auth,
        nats_sync="always", lease_ttl=1.0, suspect_after=30.0, dead_after=60.0))
    await orch.start()
    return orch


async def _timed_connect(url: str, **options: object) -> float:
    started = time.perf_counter()
    nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, **options)
    elapsed = (time.perf_counter() - started) * 1000
    await nc.close()
    return elapsed


async def _connects(orch: Orchestrator, samples: int) -> dict[str, float]:
    operator = read_secret(orch.access_control.keys.operator)
    op = await nats.connect(orch.nats_url, nkeys_seed_str=operator, name="operator",
                            inbox_prefix="_INBOX.operator")
    enrolling, reconnecting = [], []
    for i in range(samples):
        agent_id = f"bench-{i}"
        reply = orjson.loads((await op.request(
            orch.names.client_command("admin.enroll", "operator"),
            orjson.dumps({"agent_id": agent_id}), timeout=10)).data)
        seed = new_seed(Role.USER)
        options = {"nkeys_seed_str": seed, "name": agent_id,
                   "inbox_prefix": f"_INBOX.{agent_id}"}
        enrolling.append(await _timed_connect(orch.nats_url, token=reply["token"], **options))
        reconnecting.append(await _timed_connect(orch.nats_url, **options))
    await op.close()
    return {"connect_p99_ms": percentile(enrolling, 0.99),
            "connect_p50_ms": percentile(enrolling, 0.5),
            "reconnect_p99_ms": percentile(reconnecting, 0.99)}


async def _submits(orch: Orchestrator, samples: int, tag: str) -> list[float]:
    """Milliseconds of each submit's round trip, one at a time, as the local operator
    (auth on: through its issued permissions) or a client without credentials (off)."""
    keys = orch.access_control.keys
    seed = read_secret(keys.operator) if orch.settings.auth_on else None
    nc = await nats.connect(orch.nats_url, nkeys_seed_str=seed, name="operator",
                            inbox_prefix="_INBOX.operator")
    subject = orch.names.client_command(TASK_SUBMIT, "operator")
    timings = []
    for i in range(samples):
        started = time.perf_counter()
        await nc.request(subject, orjson.dumps({"task_id": f"{tag}-{i}", "kind": "k"}),
                         timeout=10)
        timings.append((time.perf_counter() - started) * 1000)
    await nc.close()
    return timings
