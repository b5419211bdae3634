"""Read API throughput and latency under wrk, beside an aiohttp hello-world."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys

import orjson

from bench.fleet import Fleet
from bench.harness import connect, nats_server, orchestrator
from bench.scenarios.heartbeats import offer
from bench.sizes import Size
from infra.bus.embedded import free_port
from infra.names import REGISTER

CONNECTIONS = 32
HEARTBEATING_AGENTS = 1000
HEARTBEAT_RATE = 10_000  # a second of each agent's beats at a 0.1 s interval
HELLO = """
from aiohttp import web
async def hello(request):
    return web.json_response({"ok": True})
app = web.Application()
app.router.add_get("/hello", hello)
web.run_app(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), print=None,
            access_log=None)
"""


async def run(size: Size) -> dict[str, float | str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed (make bench installs it from Debian)"}
    async with nats_server() as server, orchestrator(server) as orch:
        await orch.start()
        nc = await connect(server.url)
        await nc.request(orch.names.agent_command("a1", REGISTER),
                         orjson.dumps({"agent_id": "a1", "capabilities": ["cpu"]}), timeout=10)
        served = await load(wrk, orch.url("/v1/agents/a1"), size.api_seconds)
        # The same reads while the loop also takes in a fleet's heartbeats: the API shares
        # the orchestrator's event loop with intake.
        fleet = Fleet(nc, orch.names)
        await fleet.register([f"h{i}" for i in range(HEARTBEATING_AGENTS)])
        beating = asyncio.create_task(offer(fleet, HEARTBEAT_RATE, size.api_seconds + 2))
        busy = await load(wrk, orch.url("/v1/agents/a1"), size.api_seconds)
        await beating
        await nc.close()
    port = free_port()
    hello = subprocess.Popen([sys.executable, "-c", HELLO, str(port)])
    try:
        await _listening(port)
        baseline = await load(wrk, f"http://127.0.0.1:{port}/hello", size.api_seconds)
    finally:
        hello.terminate()
        hello.wait(10)
    return {
        "req_per_s": served[0],
        "p99_ms": served[1],
        "baseline_req_per_s": baseline[0],
        "baseline_p99_ms": baseline[1],
        "ratio": served[0] / baseline[0] if baseline[0] else 0.0,
        "p99_vs_baseline": served[1] / baseline[1] if baseline[1] else 0.0,
        "req_per_s_under_heartbeats": busy[0],
        "p99_ms_under_heartbeats": busy[1],
    }


async def load(wrk: str, url: str, seconds: int) -> tuple[float, float]:
    """wrk's requests per second and 99th percentile latency in ms."""
    process = await asyncio.create_subprocess_exec(
        wrk, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await process.communicate())[0].decode()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def _listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise TimeoutError("hello-world server did not start")
